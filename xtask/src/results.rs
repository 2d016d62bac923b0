//! `cargo xtask results`: every table of README.md and docs/*.md that stands between
//! `<!-- record: NAME [NAME …] -->` and `<!-- /record -->` is rendered from the committed records
//! `docs/records/NAME.json` (one name: that run's table; several: a comparison of their runs side by side).
//! With `--check` nothing is written and every table that differs from its rendering is named, which is how
//! `cargo xtask ci` keeps hand-typed figures out of the docs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::{flags_suite, workspace_root};

const OPEN: &str = "<!-- record:";
const CLOSE: &str = "<!-- /record -->";

impl flags_suite::Results {
    pub fn run(self) -> Result<()> {
        let root = workspace_root();
        let mut drifted = Vec::new();
        let mut tables = 0;
        for doc in documents(&root)? {
            let text = std::fs::read_to_string(&doc)
                .with_context(|| format!("reading {}", doc.display()))?;
            let (rendered, n) = render_document(&text, &root.join("docs").join("records"))
                .with_context(|| format!("rendering the record tables of {}", doc.display()))?;
            tables += n;
            if rendered != text {
                if self.check {
                    drifted.push(doc.display().to_string());
                } else {
                    let tmp = doc.with_extension("md.tmp-results");
                    std::fs::write(&tmp, &rendered)
                        .with_context(|| format!("writing {}", tmp.display()))?;
                    std::fs::rename(&tmp, &doc)
                        .with_context(|| format!("renaming into {}", doc.display()))?;
                    eprintln!("results: rewrote {}", doc.display());
                }
            }
        }
        if !drifted.is_empty() {
            bail!(
                "{} differ(s) from the tables rendered from docs/records: {}; run `cargo xtask results` and commit",
                drifted.len(),
                drifted.join(", ")
            );
        }
        eprintln!("results: {tables} table(s) rendered from docs/records, all current");
        Ok(())
    }
}

/// README.md and every Markdown file directly under docs/.
fn documents(root: &Path) -> Result<Vec<PathBuf>> {
    let mut docs = vec![root.join("README.md")];
    let dir = root.join("docs");
    let mut more: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    Ok(docs)
}

/// `text` with every record block re-rendered, and the number of blocks.
pub fn render_document(text: &str, records: &Path) -> Result<(String, usize)> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut n = 0;
    while let Some(start) = marker_at_line_start(rest) {
        let line_end = rest[start..]
            .find("-->")
            .map(|i| start + i + 3)
            .context("a `<!-- record:` marker is not closed by `-->` on its line")?;
        let names: Vec<&str> = rest[start + OPEN.len()..line_end - 3]
            .split_whitespace()
            .collect();
        if names.is_empty() {
            bail!("a `<!-- record: -->` marker names no record");
        }
        let close = rest[line_end..]
            .find(CLOSE)
            .map(|i| line_end + i)
            .with_context(|| format!("the block of record {names:?} has no `{CLOSE}`"))?;
        out += &rest[..line_end];
        out += "\n";
        out += &render(&names, records)?;
        out += CLOSE;
        rest = &rest[close + CLOSE.len()..];
        n += 1;
    }
    out += rest;
    Ok((out, n))
}

/// Where the first `<!-- record:` that begins a line starts (one inside a sentence or a code span is text).
fn marker_at_line_start(text: &str) -> Option<usize> {
    if text.starts_with(OPEN) {
        return Some(0);
    }
    text.find(&format!("\n{OPEN}")).map(|i| i + 1)
}

/// The record `docs/records/NAME.json` read as `T` (`what` names the kind in errors).
fn load<T: serde::de::DeserializeOwned>(records: &Path, name: &str, what: &str) -> Result<T> {
    let path = records.join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the record {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a {what} record", path.display()))
}

/// Every record of `names` read as `T`, with its name.
fn load_all<T: serde::de::DeserializeOwned>(
    records: &Path,
    names: &[&str],
    what: &str,
) -> Result<Vec<(String, T)>> {
    names
        .iter()
        .map(|n| Ok((n.to_string(), load(records, n, what)?)))
        .collect()
}

/// The Markdown of the records `names` (ends with a newline), by the kind their names begin with: `bench-` (one
/// bench run), `compress-`, `quantize-` and `onnx-` (one table over several), `build-` (first builds), `distill-` (distillation runs), `ablate-` (ablation tables), else suite records alone or side
/// by side.
fn render(names: &[&str], records: &Path) -> Result<String> {
    let all = |prefix: &str| names.iter().all(|n| n.starts_with(prefix));
    if let [name] = names {
        if name.starts_with("bench-") {
            let report: crate::bench::BenchReport = load(records, name, "bench")?;
            return Ok(format!(
                "{}\nRecord: `docs/records/{name}.json`.\n",
                crate::bench::markdown(&report)
            ));
        }
    }
    if all("compress-") {
        return Ok(pipeline::compress_records_markdown(&load_all(
            records, names, "compress",
        )?));
    }
    if all("quantize-") {
        return Ok(pipeline::quantize_records_markdown(&load_all(
            records, names, "quantize",
        )?));
    }
    if all("distill-") {
        return Ok(pipeline::distill_records_markdown(&load_all(
            records, names, "distill",
        )?));
    }
    if all("ablate-") {
        return Ok(pipeline::ablation_records_markdown(&load_all(
            records, names, "ablation",
        )?));
    }
    if all("build-") {
        let mut out = String::new();
        for (name, r) in
            load_all::<crate::first_build::FirstBuildRecord>(records, names, "first-build")?
        {
            out += &format!(
                "{}\nRecord: `docs/records/{name}.json`.\n",
                crate::first_build::markdown(&r)
            );
        }
        return Ok(out);
    }
    if all("onnx-") {
        return Ok(pipeline::onnx_check_markdown(&load_all(
            records,
            names,
            "ONNX check",
        )?));
    }
    let suites: Vec<(String, pipeline::SuiteReport)> = load_all(records, names, "suite")?;
    Ok(match suites.as_slice() {
        [(name, one)] => format!(
            "{}\nRecord: `docs/records/{name}.json`.\n",
            pipeline::suite_markdown(one)
        ),
        many => {
            let named: Vec<(String, &pipeline::SuiteReport)> =
                many.iter().map(|(n, r)| (n.clone(), r)).collect();
            pipeline::suite_comparison_markdown(&named)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_replaced_and_text_around_them_kept() {
        let dir = std::env::temp_dir().join(format!("results-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = render_document("a\n<!-- record: nope -->\nold\n<!-- /record -->\nb\n", &dir)
            .unwrap_err();
        assert!(format!("{err:#}").contains("nope.json"), "{err:#}");
        let err = render_document("<!-- record: x -->\nno close\n", &dir).unwrap_err();
        assert!(format!("{err:#}").contains("has no"), "{err:#}");
        let (same, n) = render_document("no blocks here\n", &dir).unwrap();
        assert_eq!((same.as_str(), n), ("no blocks here\n", 0));
        // A marker inside a sentence is text, not a block.
        let prose = "write `<!-- record: NAME -->` and `<!-- /record -->` around a table\n";
        assert_eq!(
            render_document(prose, &dir).unwrap(),
            (prose.to_string(), 0)
        );
        // A record renders into its block, replacing what stood there, and the rendering is a fixed point.
        let report = pipeline::SuiteReport {
            provenance: pipeline::Provenance {
                command: "cargo xtask suite".into(),
                commit: "abc".into(),
                cpu: "cpu".into(),
                date: "2026-12-02".into(),
            },
            recipe: "default".into(),
            quick: false,
            device: "flex".into(),
            config: pipeline::DistillConfig::default(),
            rows: vec![pipeline::SuiteRow {
                task: "t".into(),
                kind: "k".into(),
                labels: vec!["a".into(), "b".into()],
                split_sizes: [8, 1, 1],
                median_words: 3,
                teacher: 0.5,
                teacher_dev: None,
                teacher_seconds: 60.0,
                seeds: vec![1],
                student: vec![0.5],
                student_dev: vec![0.5],
                seconds: vec![60.0],
                carried_from: None,
            }],
            seconds: 120.0,
        };
        std::fs::write(dir.join("x.json"), serde_json::to_string(&report).unwrap()).unwrap();
        let doc = "# T\n<!-- record: x -->\nstale figure 99.9%\n<!-- /record -->\nafter\n";
        let (rendered, n) = render_document(doc, &dir).unwrap();
        assert_eq!(n, 1);
        assert!(
            !rendered.contains("99.9%") && rendered.ends_with("<!-- /record -->\nafter\n"),
            "{rendered}"
        );
        assert!(
            rendered
                .contains("| t | k | 2 | 8/1/1 | 3 | 1 | 0.5000 | 0.5000 | 100.0 | – / 0.5000 |"),
            "{rendered}"
        );
        assert!(
            rendered.contains("Record: `docs/records/x.json`."),
            "{rendered}"
        );
        assert_eq!(render_document(&rendered, &dir).unwrap().0, rendered);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
