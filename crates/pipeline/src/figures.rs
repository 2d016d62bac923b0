//! The reports' PNG charts, drawn with the `charts` crate: a loss curve per training stage (from
//! `metrics.jsonl`), the compress report's size against accuracy, and the quantize report's bits per matrix.
//! A chart that cannot be drawn (no steps logged, a non-finite loss) is left out with a warning that names it;
//! it never fails the run whose report it illustrates.

use std::path::Path;

use student_arch::io::write_atomic;

/// A chart written into a report's directory: its caption and file name.
pub(crate) struct Figure {
    pub caption: String,
    pub file: String,
}

/// Writes `png` as `dir/file`, or warns and gives `None`.
fn save(dir: &Path, file: &str, caption: String, png: charts::Result<Vec<u8>>) -> Option<Figure> {
    let written = png
        .map_err(|e| e.to_string())
        .and_then(|bytes| write_atomic(&dir.join(file), &bytes).map_err(|e| e.to_string()));
    match written {
        Ok(()) => Some(Figure {
            caption,
            file: file.to_string(),
        }),
        Err(e) => {
            eprintln!("warning: chart {} left out: {e}", dir.join(file).display());
            None
        }
    }
}

/// Markdown that shows the figures (nothing when there are none).
pub(crate) fn markdown(figures: &[Figure]) -> String {
    if figures.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n## Charts\n\n");
    for f in figures {
        s += &format!("![{}]({})\n\n", f.caption, f.file);
    }
    s
}

/// A stage name as a file-name part: letters, digits, `-` and `_`.
fn slug(stage: &str) -> String {
    stage
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `points` averaged over a trailing window of `w` steps.
fn moving_average(points: &[(f64, f64)], w: usize) -> Vec<(f64, f64)> {
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= w {
                sum -= points[i - w].1;
            }
            (x, sum / (i + 1).min(w) as f64)
        })
        .collect()
}

/// One `loss_<stage>.png` per stage of `dir/metrics.jsonl`: every logged loss term (not the learning rate)
/// against the step, as a moving average over about a fiftieth of the stage.
pub(crate) fn loss_curves(dir: &Path) -> Vec<Figure> {
    let path = dir.join("metrics.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    // stage → term → points, in the order the stages and terms first appear.
    type Terms = Vec<(String, Vec<(f64, f64)>)>;
    let mut stages: Vec<(String, Terms)> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(serde_json::Value::Object(row)) = serde_json::from_str::<serde_json::Value>(line)
        else {
            eprintln!(
                "warning: {}: a line that is not a JSON object is left out of the charts",
                path.display()
            );
            continue;
        };
        let (Some(stage), Some(step)) = (
            row.get("stage").and_then(|v| v.as_str()),
            row.get("step").and_then(|v| v.as_f64()),
        ) else {
            continue;
        };
        if !stages.iter().any(|(s, _)| s == stage) {
            stages.push((stage.to_string(), Vec::new()));
        }
        let terms = &mut stages
            .iter_mut()
            .find(|(s, _)| s == stage)
            .expect("just added")
            .1;
        for (name, value) in &row {
            let Some(v) = value.as_f64() else { continue };
            if matches!(name.as_str(), "step" | "lr") {
                continue;
            }
            match terms.iter_mut().find(|(t, _)| t == name) {
                Some((_, points)) => points.push((step, v)),
                None => terms.push((name.clone(), vec![(step, v)])),
            }
        }
    }
    stages
        .into_iter()
        .filter_map(|(stage, mut terms)| {
            // The total first, so it takes the first colour.
            terms.sort_by_key(|(t, _)| t != "total");
            let steps = terms.iter().map(|(_, p)| p.len()).max().unwrap_or(0);
            let w = (steps / 50).max(1);
            let series: Vec<charts::Series> = terms
                .iter()
                .map(|(name, points)| charts::Series {
                    name: name.clone(),
                    points: moving_average(points, w),
                })
                .collect();
            let caption = format!("{stage}: loss terms per step (moving average of {w} steps)");
            let png = charts::line_chart(&caption, "step", "loss", &series);
            save(dir, &format!("loss_{}.png", slug(&stage)), caption, png)
        })
        .collect()
}

/// One stage of the compress chart.
pub(crate) struct StagePoint<'a> {
    pub stage: &'a str,
    pub bytes: u64,
    pub smaller_than_teacher: f64,
    pub accuracy: f64,
}

/// `compress_chart.png`: each stage's file size against its test accuracy.
pub(crate) fn compress_chart(
    dataset: &str,
    stages: &[StagePoint<'_>],
    dir: &Path,
) -> Option<Figure> {
    let points: Vec<charts::Point> = stages
        .iter()
        .map(|r| charts::Point {
            label: format!("{} ({:.1}×)", r.stage, r.smaller_than_teacher),
            x: r.bytes as f64 / 1e6,
            y: r.accuracy,
        })
        .collect();
    let caption = format!("{dataset}: size against test accuracy per stage");
    let png = charts::point_chart(&caption, "file size (MB)", "test accuracy", &points);
    save(dir, "compress_chart.png", caption, png)
}

/// `quant_bits.png`: the bits of every quantized matrix (`(tensor name, bits)`), in the file's order.
pub(crate) fn bits_chart(
    matrix_bits: &[(String, u32)],
    avg_layer_bits: f64,
    dir: &Path,
) -> Option<Figure> {
    let bars: Vec<charts::Bar> = matrix_bits
        .iter()
        .map(|(name, bits)| charts::Bar {
            label: name
                .trim_start_matches("encoder.")
                .trim_end_matches(".weight")
                .to_string(),
            value: *bits as f64,
            whisker: None,
            note: format!("{bits} bits"),
        })
        .collect();
    let caption = format!("Bits per matrix (average {avg_layer_bits:.2} over the encoder layers)");
    let png = charts::bar_chart(&caption, "bits", &bars);
    save(dir, "quant_bits.png", caption, png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_curves_per_stage_and_bad_lines_left_out() {
        let dir = std::env::temp_dir().join(format!("figures-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut lines = String::new();
        for step in 1..=120 {
            lines += &format!(
                "{{\"stage\":\"prediction\",\"step\":{step},\"lr\":0.001,\"total\":{},\"soft_ce\":{}}}\n",
                1.0 / step as f64,
                0.5 / step as f64
            );
        }
        lines += "not json\n{\"stage\":\"teacher-finetune\",\"step\":1,\"total\":0.7}\n";
        std::fs::write(dir.join("metrics.jsonl"), lines).unwrap();
        let figures = loss_curves(&dir);
        let files: Vec<&str> = figures.iter().map(|f| f.file.as_str()).collect();
        assert_eq!(files, ["loss_prediction.png", "loss_teacher-finetune.png"]);
        assert!(
            figures[0].caption.contains("moving average of 2 steps"),
            "{}",
            figures[0].caption
        );
        let png = std::fs::read(dir.join("loss_prediction.png")).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        assert!(markdown(&figures).contains("![prediction: loss terms per step"));
        // A non-finite loss: that stage's chart is left out, the others are written.
        std::fs::write(
            dir.join("metrics.jsonl"),
            "{\"stage\":\"x\",\"step\":1,\"total\":1e999}\n",
        )
        .unwrap();
        assert!(loss_curves(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn moving_average_of_a_trailing_window() {
        let p = [(1.0, 1.0), (2.0, 3.0), (3.0, 5.0), (4.0, 7.0)];
        assert_eq!(
            moving_average(&p, 2),
            [(1.0, 1.0), (2.0, 2.0), (3.0, 4.0), (4.0, 6.0)]
        );
    }
}
