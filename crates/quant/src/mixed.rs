//! Mixed precision: bits per unit (an encoder layer, or one weight matrix) from a sensitivity report and a
//! size budget.
//!
//! - [`qbert_rule`]: Q-BERT's rule. Units are visited from the most sensitive (largest mean + std of the top
//!   Hessian eigenvalue) down, each raised one bit option at a time while the budget allows, so a more
//!   sensitive unit never gets fewer bits than a less sensitive one of the same size.
//! - [`allocate_budgeted`]: minimises `Σ λ_i · ‖ΔW_i(b_i)‖²` (sensitivity times the measured quantization error)
//!   under the budget, greedily by the largest decrease per byte (a Lagrangian walk over the options).
//! - [`shuffled`]: the same bits in a seeded random order across equal-sized units: a random assignment of
//!   exactly the same size, for comparison.
//!
//! The sensitivity report is read as data: JSON with `blocks: [{name, mean, std, score}]`, names `layer.N`
//! (per layer) or `layer.N.{query,key,value,attention_output,ffn_in,ffn_out}` (per matrix), as
//! `cargo xtask sensitivity --block layer|matrix` writes them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{QuantError, Result};
use student_arch::BertConfig;

use crate::format::{check_bits, QuantizedTensor};
use crate::model::{matrix_name, spec_for, NamedTensors, QuantPlan, LAYER_MATRICES};

/// How bits are chosen under a budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Allocator {
    /// Q-BERT's rule ([`qbert_rule`]): the two adjacent precisions that bracket the budget, the higher to the
    /// most sensitive units in rank order.
    Qbert,
    /// This project's earlier rule ([`rank_greedy_rule`]): the most sensitive unit raised as far as the options
    /// go before the next one moves.
    #[serde(rename = "rank-greedy")]
    RankGreedy,
    /// Minimise Σ λ·‖ΔW‖² under the budget ([`allocate_budgeted`]).
    Budgeted,
}

impl Allocator {
    /// The chosen option per unit (indices into `costs.bits`) under `budget` bytes.
    pub fn allocate(self, units: &[Unit], costs: &UnitCosts, budget: f64) -> Result<Vec<usize>> {
        match self {
            Self::Qbert => qbert_rule(units, costs, budget),
            Self::RankGreedy => rank_greedy_rule(units, costs, budget),
            Self::Budgeted => allocate_budgeted(units, costs, budget),
        }
    }

    /// The name of the assignment in a report.
    pub fn label(self) -> &'static str {
        match self {
            Self::Qbert => "hessian (Q-BERT rule)",
            Self::RankGreedy => "hessian (rank-greedy)",
            Self::Budgeted => "hessian (budgeted)",
        }
    }
}

impl std::str::FromStr for Allocator {
    type Err = QuantError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "qbert" => Ok(Self::Qbert),
            "rank-greedy" => Ok(Self::RankGreedy),
            "budgeted" => Ok(Self::Budgeted),
            other => Err(QuantError::Config {
                field: "allocator",
                message: format!("{other:?}: expected qbert, rank-greedy or budgeted"),
            }),
        }
    }
}

/// Sensitivity-report matrix names and the Hugging Face matrices they stand for.
pub const MATRIX_NAMES: [(&str, &str); 6] = [
    ("query", "attention.self.query"),
    ("key", "attention.self.key"),
    ("value", "attention.self.value"),
    ("attention_output", "attention.output.dense"),
    ("ffn_in", "intermediate.dense"),
    ("ffn_out", "output.dense"),
];

/// A unit that gets one bit width: its name in the report and the weight tensors it covers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    /// `layer.N` or `layer.N.<matrix>`.
    pub name: String,
    /// Hugging Face tensor names.
    pub tensors: Vec<String>,
    /// The ranking key: the report's own statistic (Q-BERT's |mean| + std of the top eigenvalue by default).
    pub score: f64,
    /// Mean of the top eigenvalue.
    pub mean: f64,
}

#[derive(Deserialize)]
struct ReportBlock {
    name: String,
    mean: f64,
    #[serde(default)]
    std: f64,
    /// The report's ranking key (its `config.ranking` statistic); absent in hand-written reports.
    #[serde(default)]
    score: Option<f64>,
}

#[derive(Deserialize)]
struct Report {
    blocks: Vec<ReportBlock>,
}

/// The tensors a report block stands for, or `None` for a name we cannot map.
pub fn block_tensors(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix("layer.")?;
    let (layer, matrix) = match rest.split_once('.') {
        Some((l, m)) => (l, Some(m)),
        None => (rest, None),
    };
    let layer: usize = layer.parse().ok()?;
    match matrix {
        None => Some(
            LAYER_MATRICES
                .iter()
                .map(|(m, _)| matrix_name(layer, m))
                .collect(),
        ),
        Some(m) => MATRIX_NAMES
            .iter()
            .find(|(short, _)| *short == m)
            .map(|(_, hf)| vec![matrix_name(layer, hf)]),
    }
}

/// Reads a sensitivity report (JSON text) into units for a model of `layers` layers. Every layer's matrices
/// must be covered exactly once.
pub fn units_from_report(path: &Path, text: &str, layers: usize) -> Result<Vec<Unit>> {
    let bad = |message: String| QuantError::Sensitivity {
        path: path.to_path_buf(),
        message,
    };
    let report: Report =
        serde_json::from_str(text).map_err(|e| bad(format!("not a sensitivity report: {e}")))?;
    let mut units = vec![];
    let mut covered: BTreeMap<String, String> = BTreeMap::new();
    for b in report.blocks {
        let tensors = block_tensors(&b.name).ok_or_else(|| {
            bad(format!(
                "block `{}` is not a layer (`layer.N`) or a matrix (`layer.N.query`, ...); bits are assigned per \
                 layer or per matrix, so run `cargo xtask sensitivity --block layer` or `--block matrix`",
                b.name
            ))
        })?;
        if !b.mean.is_finite() || !b.std.is_finite() {
            return Err(bad(format!(
                "block `{}` has a non-finite mean or std",
                b.name
            )));
        }
        for t in &tensors {
            if let Some(other) = covered.insert(t.clone(), b.name.clone()) {
                return Err(bad(format!("`{t}` is in both `{other}` and `{}`", b.name)));
            }
        }
        units.push(Unit {
            name: b.name,
            tensors,
            // The statistic the report ranked by (Q-BERT's |mean| + std by default), else Q-BERT's.
            score: b
                .score
                .filter(|s| s.is_finite())
                .unwrap_or(b.mean.abs() + b.std),
            mean: b.mean,
        });
    }
    for l in 0..layers {
        for (m, _) in LAYER_MATRICES {
            let t = matrix_name(l, m);
            if !covered.contains_key(&t) {
                return Err(bad(format!(
                    "no block covers `{t}`: the report is for another model, or was run with --blocks; \
                     measure every layer of this model"
                )));
            }
        }
    }
    if let Some((t, b)) = covered.iter().find(|(t, _)| {
        t.strip_prefix("encoder.layer.")
            .and_then(|r| r.split('.').next())
            .and_then(|l| l.parse::<usize>().ok())
            .is_some_and(|l| l >= layers)
    }) {
        return Err(bad(format!(
            "block `{b}` names `{t}`, but the model has {layers} layers"
        )));
    }
    Ok(units)
}

/// The cost and error of each unit at each bit option.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnitCosts {
    /// Bit options, ascending.
    pub bits: Vec<u32>,
    /// `[unit][option]`: what the unit costs against the budget at that option (bytes, or bits × params).
    pub cost: Vec<Vec<f64>>,
    /// `[unit][option]`: `‖ΔW‖²` of the unit's matrices at that option.
    pub error: Vec<Vec<f64>>,
}

impl UnitCosts {
    fn check(&self, units: usize, budget: f64) -> Result<()> {
        if self.bits.is_empty() || self.cost.len() != units || self.error.len() != units {
            return Err(QuantError::Config {
                field: "bits",
                message: format!(
                    "costs for {} units and {} options, expected {units} units",
                    self.cost.len(),
                    self.bits.len()
                ),
            });
        }
        for b in &self.bits {
            check_bits(*b, "the bit options")?;
        }
        if self.bits.windows(2).any(|w| w[0] >= w[1]) {
            return Err(QuantError::Config {
                field: "bits",
                message: format!("options {:?} must be ascending and distinct", self.bits),
            });
        }
        let floor: f64 = self.cost.iter().map(|c| c[0]).sum();
        if budget < floor * (1.0 - 1e-12) {
            return Err(QuantError::Config {
                field: "budget",
                message: format!(
                    "{budget:.0} is below the smallest possible size {floor:.0} (every unit at {} bits); raise the budget",
                    self.bits[0]
                ),
            });
        }
        Ok(())
    }

    /// The total cost of an assignment (option index per unit).
    pub fn total(&self, options: &[usize]) -> f64 {
        options
            .iter()
            .enumerate()
            .map(|(u, o)| self.cost[u][*o])
            .sum()
    }
}

/// Q-BERT's rule (Shen et al., 2020, §3.2): units ranked by `score` (|mean| + std of the top eigenvalue), and of
/// two adjacent precisions, the higher given to the most sensitive units. The pair is the one that brackets the
/// budget: every unit at the lower fits, every unit at the higher does not; units are then raised to the higher
/// in rank order while the budget allows (a unit that does not fit is passed over for a smaller one after it).
/// When every unit fits at the highest option, all get it.
pub fn qbert_rule(units: &[Unit], costs: &UnitCosts, budget: f64) -> Result<Vec<usize>> {
    costs.check(units.len(), budget)?;
    let fits = |spent: f64| spent <= budget * (1.0 + 1e-12);
    let n_options = costs.bits.len();
    let low = (0..n_options)
        .rev()
        .find(|&o| fits(costs.total(&vec![o; units.len()])))
        .unwrap_or(0);
    let mut options = vec![low; units.len()];
    if low + 1 == n_options {
        return Ok(options);
    }
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by(|a, b| units[*b].score.total_cmp(&units[*a].score));
    let mut spent = costs.total(&options);
    for u in order {
        let extra = costs.cost[u][low + 1] - costs.cost[u][low];
        if fits(spent + extra) {
            options[u] = low + 1;
            spent += extra;
        }
    }
    Ok(options)
}

/// The rank-greedy rule (this project's earlier "qbert"): option index per unit, the most sensitive unit raised
/// one option at a time as far as the budget and the options allow before any less sensitive unit moves.
pub fn rank_greedy_rule(units: &[Unit], costs: &UnitCosts, budget: f64) -> Result<Vec<usize>> {
    costs.check(units.len(), budget)?;
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by(|a, b| units[*b].score.total_cmp(&units[*a].score));
    let mut options = vec![0usize; units.len()];
    let mut spent = costs.total(&options);
    loop {
        let mut raised = false;
        for &u in &order {
            let o = options[u];
            if o + 1 < costs.bits.len() {
                let extra = costs.cost[u][o + 1] - costs.cost[u][o];
                if spent + extra <= budget * (1.0 + 1e-12) {
                    options[u] += 1;
                    spent += extra;
                    raised = true;
                    break; // start again from the most sensitive unit
                }
            }
        }
        if !raised {
            return Ok(options);
        }
    }
}

/// Minimises `Σ λ_u · error_u(b_u)` within `budget`, with `λ_u` the unit's score (floored at a tiny positive
/// value: a flat or negative-curvature unit still prefers less error). Greedy: repeatedly take the upgrade of
/// any unit (to any higher option) with the largest decrease per unit of cost that fits.
pub fn allocate_budgeted(units: &[Unit], costs: &UnitCosts, budget: f64) -> Result<Vec<usize>> {
    costs.check(units.len(), budget)?;
    let lambda: Vec<f64> = units.iter().map(|u| u.score.max(1e-9)).collect();
    let mut options = vec![0usize; units.len()];
    let mut spent = costs.total(&options);
    loop {
        let mut best: Option<(f64, usize, usize)> = None;
        for u in 0..units.len() {
            for next in options[u] + 1..costs.bits.len() {
                let extra = costs.cost[u][next] - costs.cost[u][options[u]];
                if spent + extra > budget * (1.0 + 1e-12) || extra <= 0.0 {
                    continue;
                }
                let gain = lambda[u] * (costs.error[u][options[u]] - costs.error[u][next]);
                let rate = gain / extra;
                if best.is_none_or(|(r, _, _)| rate > r) {
                    best = Some((rate, u, next));
                }
            }
        }
        match best {
            Some((rate, u, next)) if rate > 0.0 => {
                spent += costs.cost[u][next] - costs.cost[u][options[u]];
                options[u] = next;
            }
            _ => return Ok(options),
        }
    }
}

/// The same options in a seeded random order: a random assignment of the same size when the units are the
/// same size (layers of one model). Units of different sizes are only shuffled among units of equal cost.
pub fn shuffled(options: &[usize], costs: &UnitCosts, seed: u64) -> Vec<usize> {
    let mut rng = student_arch::model::SeededRng::new(seed);
    let mut out = options.to_vec();
    // Shuffle within classes of equal cost profile, so the total stays the same.
    let mut classes: BTreeMap<Vec<u64>, Vec<usize>> = BTreeMap::new();
    for (u, c) in costs.cost.iter().enumerate() {
        classes
            .entry(c.iter().map(|v| v.to_bits()).collect())
            .or_default()
            .push(u);
    }
    for members in classes.values() {
        let mut values: Vec<usize> = members.iter().map(|u| options[*u]).collect();
        for i in (1..values.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            values.swap(i, j);
        }
        for (u, v) in members.iter().zip(values) {
            out[*u] = v;
        }
    }
    out
}

/// What a unit costs against the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CostKind {
    /// Bytes in the file (codes, scales and zero points).
    Bytes,
    /// Code bits: parameters × bits (for an average-bits budget).
    CodeBits,
}

/// Quantizes every unit's tensors at every option of `bits` (with the layout of `base`) and records the cost
/// and `‖ΔW‖²`.
pub fn unit_costs(
    units: &[Unit],
    tensors: &NamedTensors,
    config: &BertConfig,
    base: &QuantPlan,
    bits: &[u32],
    kind: CostKind,
) -> Result<UnitCosts> {
    let mut cost = vec![];
    let mut error = vec![];
    for unit in units {
        let (mut c_row, mut e_row) = (vec![], vec![]);
        for &b in bits {
            check_bits(b, "the bit options")?;
            let mut plan = base.clone();
            plan.layer_bits = vec![b; config.num_hidden_layers];
            plan.overrides.clear();
            let (mut c, mut e) = (0.0, 0.0);
            for name in &unit.tensors {
                let (shape, values) = tensors.get(name).ok_or_else(|| QuantError::Shape {
                    op: "unit_costs",
                    message: format!("the model has no `{name}` (unit `{}`)", unit.name),
                })?;
                let (spec, head) =
                    spec_for(name, shape, &plan, config).ok_or_else(|| QuantError::Shape {
                        op: "unit_costs",
                        message: format!("`{name}` is not a quantizable matrix"),
                    })?;
                let q = QuantizedTensor::quantize(name, values, [shape[0], shape[1]], spec, head)?;
                e += q
                    .dequantize()
                    .iter()
                    .zip(values)
                    .map(|(a, b)| ((a - b) as f64).powi(2))
                    .sum::<f64>();
                c += match kind {
                    CostKind::Bytes => q.bytes() as f64,
                    CostKind::CodeBits => (values.len() as u64 * b as u64) as f64,
                };
            }
            c_row.push(c);
            e_row.push(e);
        }
        cost.push(c_row);
        error.push(e_row);
    }
    Ok(UnitCosts {
        bits: bits.to_vec(),
        cost,
        error,
    })
}

/// The plan that gives each unit its chosen option (as per-tensor overrides over `base`).
pub fn plan_for(
    units: &[Unit],
    costs: &UnitCosts,
    options: &[usize],
    base: &QuantPlan,
) -> QuantPlan {
    let mut plan = base.clone();
    plan.overrides.clear();
    for (unit, o) in units.iter().zip(options) {
        for t in &unit.tensors {
            plan.overrides.insert(t.clone(), costs.bits[*o]);
        }
    }
    // Where a whole layer has one width, say so in layer_bits too (the overrides then repeat it).
    for (l, bits) in plan.layer_bits.iter_mut().enumerate() {
        let widths: std::collections::BTreeSet<u32> = LAYER_MATRICES
            .iter()
            .filter_map(|(m, _)| plan.overrides.get(&matrix_name(l, m)).copied())
            .collect();
        if widths.len() == 1 {
            *bits = *widths.iter().next().expect("one width");
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(scores: &[f64]) -> Vec<Unit> {
        scores
            .iter()
            .enumerate()
            .map(|(i, s)| Unit {
                name: format!("layer.{i}"),
                tensors: vec![],
                score: *s,
                mean: *s,
            })
            .collect()
    }

    /// Equal-sized units; cost = bits × 100 params; error ∝ 4^(−bits) (each bit quarters the MSE).
    fn costs(n: usize) -> UnitCosts {
        let bits = vec![2, 3, 4, 8];
        UnitCosts {
            cost: vec![bits.iter().map(|b| *b as f64 * 100.0).collect(); n],
            error: vec![bits.iter().map(|b| 4f64.powi(-(*b as i32))).collect(); n],
            bits,
        }
    }

    #[test]
    fn qbert_rule_uses_two_adjacent_precisions_by_rank() {
        let u = units(&[1.0, 50.0, 10.0]);
        let c = costs(3);
        let bits = |o: Vec<usize>| -> Vec<u32> { o.iter().map(|i| c.bits[*i]).collect() };
        // Hand-worked, options 2/3/4/8 bits at 100 bytes a bit:
        // 1000 bytes: all at 3 bits (900) fit, all at 4 (1200) do not; the most sensitive unit gets 4 (1000).
        assert_eq!(bits(qbert_rule(&u, &c, 1000.0).unwrap()), vec![3, 4, 3]);
        // 1100: units 1 and 2 get 4 bits, unit 0 keeps 3.
        assert_eq!(bits(qbert_rule(&u, &c, 1100.0).unwrap()), vec![3, 4, 4]);
        // 1200: all at 4 bits fit, 8 bits for any one does not (1600): 4, 4, 4 — never 8 for one and 2 for others.
        assert_eq!(bits(qbert_rule(&u, &c, 1200.0).unwrap()), vec![4, 4, 4]);
        // 2400 fits everything at 8 bits.
        assert_eq!(bits(qbert_rule(&u, &c, 2400.0).unwrap()), vec![8, 8, 8]);
        // 650: all at 2 bits (600); no upgrade to 3 (+100) fits.
        assert_eq!(bits(qbert_rule(&u, &c, 650.0).unwrap()), vec![2, 2, 2]);
    }

    #[test]
    fn rank_greedy_rule_raises_the_most_sensitive_unit_first() {
        let u = units(&[1.0, 50.0, 10.0]);
        let c = costs(3);
        // Budget of 4 bits on average: 1200.
        let o = rank_greedy_rule(&u, &c, 1200.0).unwrap();
        let bits: Vec<u32> = o.iter().map(|i| c.bits[*i]).collect();
        assert!(c.total(&o) <= 1200.0);
        assert!(bits[1] >= bits[2] && bits[2] >= bits[0], "{bits:?}");
        // Hand-worked: from [2,2,2] (600): unit 1 → 3, 4, 8 (1200); nothing else fits.
        assert_eq!(bits, vec![2, 8, 2]);
    }

    #[test]
    fn budgeted_allocation_is_optimal_on_a_small_problem() {
        let u = units(&[1.0, 50.0, 10.0]);
        let c = costs(3);
        for budget in [700.0, 900.0, 1000.0, 1200.0, 1500.0] {
            let o = allocate_budgeted(&u, &c, budget).unwrap();
            assert!(c.total(&o) <= budget);
            let objective = |o: &[usize]| -> f64 {
                o.iter()
                    .enumerate()
                    .map(|(i, k)| u[i].score * c.error[i][*k])
                    .sum()
            };
            // Exhaustive search over all 4^3 assignments.
            let mut best = f64::INFINITY;
            for a in 0..4 {
                for b in 0..4 {
                    for d in 0..4 {
                        let x = [a, b, d];
                        if c.total(&x) <= budget {
                            best = best.min(objective(&x));
                        }
                    }
                }
            }
            assert!(
                objective(&o) <= best * 1.5 + 1e-15,
                "budget {budget}: {o:?} {} vs best {best}",
                objective(&o)
            );
        }
    }

    #[test]
    fn impossible_budgets_and_reports_are_errors() {
        let u = units(&[1.0, 2.0]);
        let err = qbert_rule(&u, &costs(2), 100.0).unwrap_err();
        assert!(
            err.to_string()
                .contains("below the smallest possible size 400"),
            "{err}"
        );
        let p = Path::new("s.json");
        let err = units_from_report(
            p,
            r#"{"blocks": [{"name": "layer.0.head.3", "mean": 1.0}]}"#,
            1,
        )
        .unwrap_err();
        assert!(err.to_string().contains("--block layer"), "{err}");
        let err = units_from_report(p, r#"{"blocks": [{"name": "layer.0", "mean": 1.0}]}"#, 2)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("encoder.layer.1.attention.self.query.weight"),
            "{err}"
        );
        let err = units_from_report(p, "{", 1).unwrap_err();
        assert!(
            err.to_string().contains("not a sensitivity report"),
            "{err}"
        );
        let ok = units_from_report(
            p,
            r#"{"blocks": [{"name": "layer.0", "mean": 1.0, "std": 0.5}, {"name": "layer.1.query", "mean": 2.0},
                {"name": "layer.1.key", "mean": 2.0}, {"name": "layer.1.value", "mean": 2.0},
                {"name": "layer.1.attention_output", "mean": 2.0}, {"name": "layer.1.ffn_in", "mean": 2.0},
                {"name": "layer.1.ffn_out", "mean": 2.0}]}"#,
            2,
        )
        .unwrap();
        assert_eq!(ok.len(), 7);
        assert_eq!(ok[0].score, 1.5);
        assert_eq!(ok[0].tensors.len(), 6);
        assert_eq!(
            ok[6].tensors,
            vec!["encoder.layer.1.output.dense.weight".to_string()]
        );
    }

    #[test]
    fn shuffled_keeps_the_size() {
        let c = costs(5);
        let o = vec![0, 3, 1, 2, 0];
        let s = shuffled(&o, &c, 7);
        assert_eq!(c.total(&s), c.total(&o));
        let mut a = o.clone();
        let mut b = s.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
}
