//! Q-BERT's sensitivity: each block's top Hessian eigenvalue on several batches, their mean and standard
//! deviation, ranked by mean + std (Q-BERT saw a large variance across batches), with Hutchinson's trace
//! (HAWQ-v2) beside it. The report is JSON, a Markdown table and a bar chart (PNG and SVG).

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::block::Block;
use crate::error::{HessianError, Result};
use crate::hvp::{FiniteDifferenceHvp, HessianVectorProduct};
use crate::params::parameters;
use crate::power::{hutchinson_trace, top_eigenpairs, PowerIterationConfig};

student_arch::config_defaults! {
    /// Settings of [`sensitivity`].
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct SensitivityConfig {
        /// Power iteration.
        pub power: PowerIterationConfig = PowerIterationConfig::default(),
        /// Rademacher samples of the Hutchinson trace per block and batch; 0 skips the trace.
        pub trace_samples: usize = 4,
        /// Relative step of the finite-difference products (see [`FiniteDifferenceHvp`]).
        pub eps_rel: f64 = 1e-4,
        /// The ranking statistic: Q-BERT's Ω = |mean| + std, or the signed mean + std.
        pub ranking: Ranking = Ranking::AbsMeanPlusStd,
    }
}

/// How blocks are ranked from their top eigenvalues over the batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ranking {
    /// Q-BERT's Ω = |mean(λ)| + std(λ): a block whose curvature is large in either sign is sensitive.
    AbsMeanPlusStd,
    /// mean(λ) + std(λ), signed (an indefinite block with a negative mean ranks low).
    MeanPlusStd,
}

impl Ranking {
    /// The ranking key of a block with top-eigenvalue `mean` and `std`.
    pub fn score(self, mean: f64, std: f64) -> f64 {
        match self {
            Self::AbsMeanPlusStd => mean.abs() + std,
            Self::MeanPlusStd => mean + std,
        }
    }

    /// The statistic's name in reports.
    pub fn label(self) -> &'static str {
        match self {
            Self::AbsMeanPlusStd => "|mean| + std",
            Self::MeanPlusStd => "mean + std",
        }
    }
}

impl std::str::FromStr for Ranking {
    type Err = HessianError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "abs-mean-std" | "abs_mean_plus_std" | "qbert" => Ok(Self::AbsMeanPlusStd),
            "mean-std" | "mean_plus_std" | "signed" => Ok(Self::MeanPlusStd),
            other => Err(HessianError::Config {
                field: "ranking",
                message: format!(
                    "{other:?}: expected abs-mean-std (Q-BERT's |mean| + std) or mean-std (signed)"
                ),
            }),
        }
    }
}

/// Mean and population standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// The mean and std of the eigenvalues whose power iteration converged: an estimate that did not (say a batch
/// whose top pair is ± nearly equal, where the iteration oscillates) is left out of the statistics rather than
/// averaged in as if it were the top eigenvalue; the report marks the block with its count of settled batches.
/// When no batch converged, every estimate is used (and the block is marked 0 of n).
pub fn settled_mean_std(values: &[f64], converged: &[bool]) -> (f64, f64) {
    let settled: Vec<f64> = values
        .iter()
        .zip(converged)
        .filter(|(_, c)| **c)
        .map(|(v, _)| *v)
        .collect();
    if settled.is_empty() {
        mean_std(values)
    } else {
        mean_std(&settled)
    }
}

/// One block's figures over the batches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockSensitivity {
    /// The block.
    pub name: String,
    /// Its dimension.
    pub dim: usize,
    /// The top eigenvalue on each batch.
    pub top_eigenvalues: Vec<f64>,
    /// All `top_k` eigenvalues on each batch (`[batch][k]`).
    pub eigenvalues: Vec<Vec<f64>>,
    /// Whether each batch's top eigenvalue converged (when not, the value is the last estimate).
    pub converged: Vec<bool>,
    /// Products spent on each batch's top eigenvalue.
    pub iterations: Vec<usize>,
    /// Mean of the top eigenvalues over batches.
    pub mean: f64,
    /// Population standard deviation of the top eigenvalues over batches.
    pub std: f64,
    /// The ranking key: `|mean| + std` (Q-BERT's Ω) or `mean + std`, as the report's `config.ranking` says.
    pub score: f64,
    /// Hutchinson trace on each batch (empty when skipped).
    pub traces: Vec<f64>,
    /// Mean trace over batches.
    pub trace_mean: Option<f64>,
    /// Standard deviation of the trace over batches.
    pub trace_std: Option<f64>,
}

/// The sensitivity of every block, in rank order (most sensitive first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SensitivityReport {
    /// How the Hessian-vector products were computed.
    pub method: String,
    /// Batches used.
    pub batches: usize,
    /// The settings.
    pub config: SensitivityConfig,
    /// Blocks, most sensitive first.
    pub blocks: Vec<BlockSensitivity>,
    /// Gradient passes spent in all.
    pub gradient_passes: usize,
    /// Wall seconds.
    pub seconds: f64,
    /// The sha256 of the weights file the blocks were measured on, when the caller knows it (a report is only
    /// valid for that model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha256: Option<String>,
}

impl SensitivityReport {
    /// Puts the blocks in rank order: largest score (the configured statistic of the top eigenvalue) first.
    pub fn rank(&mut self) {
        self.blocks.sort_by(|a, b| b.score.total_cmp(&a.score));
    }

    /// The blocks' names in rank order.
    pub fn ranking(&self) -> Vec<&str> {
        self.blocks.iter().map(|b| b.name.as_str()).collect()
    }

    /// The report as a Markdown table.
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "# Hessian sensitivity\n\n{} batches; products by {}; power iteration up to {} steps (tolerance {}, \
             residual {}); {} Hutchinson samples per batch. Ranked by {} of the top eigenvalue.\n\n",
            self.batches,
            self.method,
            self.config.power.max_iterations,
            self.config.power.tolerance,
            self.config.power.residual_tolerance,
            self.config.trace_samples,
            self.config.ranking.label()
        );
        s += &format!(
            "| rank | block | params | λ_max mean | λ_max std | {} | trace mean | trace std | converged |\n",
            self.config.ranking.label()
        );
        s += "|---|---|---|---|---|---|---|---|---|\n";
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.4e}")).unwrap_or_else(|| "-".into());
        for (rank, b) in self.blocks.iter().enumerate() {
            s += &format!(
                "| {} | {} | {} | {:.4e} | {:.4e} | {:.4e} | {} | {} | {}/{} |\n",
                rank + 1,
                b.name,
                b.dim,
                b.mean,
                b.std,
                b.score,
                opt(b.trace_mean),
                opt(b.trace_std),
                b.converged.iter().filter(|c| **c).count(),
                b.converged.len()
            );
        }
        if self.blocks.iter().any(|b| b.converged.iter().any(|c| !c)) {
            s += "\nSome estimates did not converge within the iteration limit (the converged column counts the \
                  batches that did). They are left out of their block's mean and std (a block with none keeps them \
                  all); raise `max_iterations` or the tolerance to settle them.\n";
        }
        s
    }

    /// The value axis of the charts: every mean ± std, and zero.
    fn chart_range(&self) -> (f64, f64) {
        let lo = self
            .blocks
            .iter()
            .map(|b| (b.mean - b.std).min(0.0))
            .fold(0.0, f64::min);
        let hi = self
            .blocks
            .iter()
            .map(|b| (b.mean + b.std).max(0.0))
            .fold(0.0, f64::max);
        (lo, hi)
    }

    /// A bar chart as SVG (opens in any browser): one bar per block in rank order, the height its mean top
    /// eigenvalue, a whisker of ± std, labelled with the block's name and mean + std. Negative means go below
    /// the axis.
    pub fn to_svg(&self) -> String {
        let (bar, gap, left, top, height) = (28.0, 12.0, 70.0, 40.0, 300.0);
        let n = self.blocks.len().max(1) as f64;
        let width = left + n * (bar + gap) + 20.0;
        let (lo, hi) = self.chart_range();
        let span = (hi - lo).max(f64::MIN_POSITIVE);
        let y = |v: f64| top + height * (hi - v) / span;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{left}\" y=\"20\" font-size=\"14\">Top Hessian eigenvalue per block (mean ± std over {} batches), most sensitive first</text>\n\
             <line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{hi:.3e}</text>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">0</text>\n",
            top + height + 120.0,
            self.batches,
            y(0.0),
            width - 10.0,
            y(0.0),
            left - 6.0,
            y(hi) + 4.0,
            left - 6.0,
            y(0.0) + 4.0,
        );
        for (i, b) in self.blocks.iter().enumerate() {
            let x = left + gap / 2.0 + i as f64 * (bar + gap);
            let (y0, y1) = (y(0.0), y(b.mean));
            svg += &format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar}\" height=\"{:.1}\" fill=\"steelblue\"><title>{}: mean {:.4e}, std {:.4e}</title></rect>\n\
                 <line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\n\
                 <text transform=\"translate({:.1},{:.1}) rotate(60)\">{}</text>\n",
                y0.min(y1),
                (y0 - y1).abs(),
                b.name,
                b.mean,
                b.std,
                x + bar / 2.0,
                y(b.mean - b.std),
                x + bar / 2.0,
                y(b.mean + b.std),
                x + 4.0,
                top + height + 12.0,
                b.name,
            );
        }
        svg + "</svg>\n"
    }

    /// A horizontal bar chart as PNG (`charts::bar_chart`): one bar per block in rank order, its length the mean
    /// top eigenvalue, a whisker of ± std, labelled with the block's name and the mean ± std. Negative means go
    /// left of the axis.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let bars: Vec<charts::Bar> = self
            .blocks
            .iter()
            .map(|b| charts::Bar {
                label: b.name.clone(),
                value: b.mean,
                whisker: Some((b.mean - b.std, b.mean + b.std)),
                note: format!("{:.3e} ± {:.2e}", b.mean, b.std),
            })
            .collect();
        let title = format!(
            "Top Hessian eigenvalue per block: mean ± std over {} batches ({})",
            self.batches,
            self.config.ranking.label()
        );
        Ok(charts::bar_chart(&title, "top eigenvalue", &bars)?)
    }

    /// Writes the JSON to `json_path`, and beside it the Markdown (`.md`) and the bar chart (`.png`, and `.svg`
    /// for browsers), each atomically.
    pub fn write(&self, json_path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).expect("report serialises");
        student_arch::io::write_atomic(json_path, json.as_bytes())?;
        student_arch::io::write_atomic(
            &json_path.with_extension("md"),
            self.to_markdown().as_bytes(),
        )?;
        student_arch::io::write_atomic(&json_path.with_extension("svg"), self.to_svg().as_bytes())?;
        student_arch::io::write_atomic(&json_path.with_extension("png"), &self.to_png()?)?;
        Ok(())
    }
}

/// Each block's top eigenvalue (and trace) on each batch, with `loss(model, batch)` the scalar loss; `model`
/// on an autodiff device in evaluation mode. Blocks come back ranked by mean + std. `progress` shows a bar.
pub fn sensitivity<M, B, F, E>(
    model: &M,
    batches: &[B],
    blocks: &[Block],
    loss: F,
    config: &SensitivityConfig,
    progress: bool,
) -> Result<SensitivityReport>
where
    M: Module,
    F: Fn(&M, &B) -> std::result::Result<Tensor<1>, E>,
    E: std::fmt::Display,
{
    config.power.validate()?;
    if batches.is_empty() {
        return Err(HessianError::Config {
            field: "batches",
            message: "at least one batch is needed".into(),
        });
    }
    if blocks.is_empty() {
        return Err(HessianError::Config {
            field: "blocks",
            message: "no blocks to study".into(),
        });
    }
    let started = Instant::now();
    let params = parameters(model);
    let resolved = blocks
        .iter()
        .map(|b| b.resolve(&params))
        .collect::<Result<Vec<_>>>()?;
    let bar = if progress {
        indicatif::ProgressBar::new((blocks.len() * batches.len()) as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "sensitivity [{bar:30}] {pos}/{len} {elapsed_precise}<{eta_precise} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let mut passes = 0;
    let mut out = Vec::with_capacity(blocks.len());
    for block in resolved {
        let mut result = BlockSensitivity {
            name: block.name.clone(),
            dim: block.dim(),
            top_eigenvalues: vec![],
            eigenvalues: vec![],
            converged: vec![],
            iterations: vec![],
            mean: 0.0,
            std: 0.0,
            score: 0.0,
            traces: vec![],
            trace_mean: None,
            trace_std: None,
        };
        for (i, batch) in batches.iter().enumerate() {
            bar.set_message(format!("{} batch {}", block.name, i + 1));
            let mut hvp = FiniteDifferenceHvp::new(
                model.clone(),
                block.clone(),
                |m: &M| loss(m, batch),
                config.eps_rel,
            )?;
            let pairs = top_eigenpairs(&mut hvp, &config.power)?;
            result.top_eigenvalues.push(pairs[0].value);
            result.converged.push(pairs[0].converged);
            result.iterations.push(pairs[0].iterations);
            result
                .eigenvalues
                .push(pairs.iter().map(|p| p.value).collect());
            if config.trace_samples > 0 {
                let t = hutchinson_trace(
                    &mut hvp,
                    config.trace_samples,
                    config.power.seed.wrapping_add(i as u64),
                )?;
                result.traces.push(t.mean);
            }
            passes += hvp.passes();
            bar.inc(1);
        }
        (result.mean, result.std) = settled_mean_std(&result.top_eigenvalues, &result.converged);
        result.score = config.ranking.score(result.mean, result.std);
        if !result.traces.is_empty() {
            let (m, s) = mean_std(&result.traces);
            result.trace_mean = Some(m);
            result.trace_std = Some(s);
        }
        out.push(result);
    }
    bar.finish_and_clear();
    let mut report = SensitivityReport {
        method: "central difference of gradients".into(),
        batches: batches.len(),
        config: config.clone(),
        blocks: out,
        gradient_passes: passes,
        seconds: started.elapsed().as_secs_f64(),
        model_sha256: None,
    };
    report.rank();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_that_did_not_converge_stay_out_of_the_statistics() {
        // Three batches; the second oscillated between a ± pair and stopped at -3.48 (the exact top is -4.95).
        let (m, s) = settled_mean_std(&[2.0, -3.48, 4.0], &[true, false, true]);
        assert_eq!((m, s), (3.0, 1.0));
        let (m, _) = settled_mean_std(&[2.0, 4.0], &[false, false]);
        assert_eq!(m, 3.0, "no settled batch: every estimate is used");
    }

    #[test]
    fn qbert_ranks_by_the_magnitude_of_the_mean_and_the_signed_option_does_not() {
        // An indefinite block with a large negative mean is sensitive to Q-BERT (|−3| + 1 > |0.5| + 0.5).
        assert_eq!(Ranking::AbsMeanPlusStd.score(-3.0, 1.0), 4.0);
        assert_eq!(Ranking::MeanPlusStd.score(-3.0, 1.0), -2.0);
        assert!(Ranking::AbsMeanPlusStd.score(-3.0, 1.0) > Ranking::AbsMeanPlusStd.score(0.5, 0.5));
        assert!(Ranking::MeanPlusStd.score(-3.0, 1.0) < Ranking::MeanPlusStd.score(0.5, 0.5));
        assert_eq!("qbert".parse::<Ranking>().unwrap(), Ranking::AbsMeanPlusStd);
        assert!("bogus"
            .parse::<Ranking>()
            .unwrap_err()
            .to_string()
            .contains("abs-mean-std"));
        assert_eq!(
            SensitivityConfig::default().ranking,
            Ranking::AbsMeanPlusStd
        );
    }

    fn block(name: &str, values: &[f64]) -> BlockSensitivity {
        let (mean, std) = mean_std(values);
        BlockSensitivity {
            name: name.into(),
            dim: 10,
            top_eigenvalues: values.to_vec(),
            eigenvalues: values.iter().map(|v| vec![*v]).collect(),
            converged: vec![true; values.len()],
            iterations: vec![5; values.len()],
            mean,
            std,
            score: mean + std,
            traces: vec![],
            trace_mean: None,
            trace_std: None,
        }
    }

    #[test]
    fn png_chart_bars_follow_the_means() {
        let report = SensitivityReport {
            method: "test".into(),
            batches: 2,
            config: SensitivityConfig::default(),
            blocks: vec![
                block("layer.0", &[40.0, 60.0]),
                block("layer.1", &[20.0, 30.0]),
            ],
            gradient_passes: 0,
            seconds: 0.0,
            model_sha256: None,
        };
        let image = charts::png::decode::decode(&report.to_png().unwrap());
        // The bars' rows: bar-coloured pixels per image row, one length per bar (whiskers are black).
        let lengths: Vec<usize> = (0..image.height())
            .map(|y| {
                (0..image.width())
                    .filter(|x| image.pixel(*x, y) == Some(charts::BAR))
                    .count()
            })
            .filter(|c| *c > 0)
            .collect();
        // Each bar's full length is its longest row (a whisker hides part of some rows).
        let a = *lengths.iter().max().unwrap() as f64;
        let b = lengths
            .iter()
            .map(|c| *c as f64)
            .filter(|c| *c < 0.75 * a)
            .fold(0.0, f64::max);
        assert!(a > 100.0, "first bar has {a} pixels");
        assert!(
            (b / a - 25.0 / 50.0).abs() < 0.03,
            "bars {a} and {b} pixels for means 50 and 25"
        );
    }
}
