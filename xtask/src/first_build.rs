//! `cargo xtask first-build`: how long the main job's first build takes, and where the time goes. Each feature
//! set is built cold (`cargo build -p xtask --timings` into a fresh target directory under `--out`), one after the
//! other on an otherwise idle machine. By default the crates come from the cargo home's cache (downloads are not
//! counted); `--with-downloads` gives each build an empty cargo home of its own, so the registry index and every
//! crate are fetched inside the timed build, as on a fresh machine. Cargo's own timing report gives each unit's
//! compile time. Writes `first_build.json` (a record for docs/records/, `build-*.json`) and `first_build.md`, and
//! removes the target directories (a few GB each) and cargo homes it made, keeping the timing reports.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// `cargo xtask first-build`'s flags.
#[derive(clap::Args, Debug)]
pub struct FirstBuild {
    /// Feature sets of xtask to build, each built cold; `default` is `cargo xtask`'s own build, a set like
    /// `ndarray` adds those features to it. Repeat the flag for several.
    #[arg(long = "features", default_values_t = ["default".to_string(), "ndarray".to_string()])]
    pub features: Vec<String>,
    /// Output directory (new, or one an earlier first-build wrote).
    #[arg(long, default_value = "runs/first-build")]
    pub out: PathBuf,
    /// Count the downloads too: each build runs with an empty cargo home under `--out` (the user's cargo
    /// `config.toml`, if any, copied in so that registry settings stay), as on a machine that never built Rust.
    #[arg(long)]
    pub with_downloads: bool,
}

/// One cold build.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ColdBuild {
    /// `default`, or the features added to it.
    pub features: String,
    /// Wall-clock seconds of `cargo build`, from start to exit.
    pub wall_s: f64,
    /// Units (crates, build scripts) compiled.
    pub units: usize,
    /// Seconds of every unit's compile time added up (over 2 cores, up to twice the wall time).
    pub unit_seconds: f64,
    /// The longest units: `(crate, seconds)`.
    pub longest: Vec<(String, f64)>,
}

/// `first_build.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FirstBuildRecord {
    /// The run behind it.
    pub provenance: pipeline::Provenance,
    /// `rustc --version`.
    pub rustc: String,
    /// One row per feature set.
    pub builds: Vec<ColdBuild>,
    /// Whether each build fetched the registry index and the crates itself (`--with-downloads`).
    #[serde(default)]
    pub downloads_counted: bool,
}

impl FirstBuild {
    pub fn run(self) -> Result<()> {
        let provenance = crate::root::provenance();
        let root = crate::root::workspace_root();
        student_arch::io::claim_output_dir(&self.out, "first-build", &[])?;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let rustc = Command::new("rustc")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let mut builds = vec![];
        for (i, features) in self.features.iter().enumerate() {
            let target = self.out.join(format!("target-{i}"));
            if target.exists() {
                std::fs::remove_dir_all(&target)
                    .with_context(|| format!("removing the earlier {}", target.display()))?;
            }
            let mut cmd = Command::new(&cargo);
            cmd.args(["build", "--package", "xtask", "--timings"])
                .current_dir(&root)
                .env("CARGO_TARGET_DIR", &target)
                .env("CARGO_TERM_PROGRESS_WHEN", "never");
            if features != "default" {
                cmd.args(["--features", features]);
            }
            let cargo_home = self
                .with_downloads
                .then(|| self.out.join(format!("cargo-home-{i}")));
            if let Some(home) = &cargo_home {
                fresh_cargo_home(home)?;
                cmd.env("CARGO_HOME", home);
            }
            eprintln!(
                "first-build: cargo build -p xtask ({features}) into {} …",
                target.display()
            );
            let start = Instant::now();
            let status = cmd.status().context("running cargo build")?;
            let wall_s = start.elapsed().as_secs_f64();
            if !status.success() {
                bail!("cargo build -p xtask ({features}) failed ({status})");
            }
            let html = timing_report(&target)?;
            let kept = self.out.join(format!("cargo-timing-{i}.html"));
            std::fs::copy(&html, &kept)
                .with_context(|| format!("copying {} to {}", html.display(), kept.display()))?;
            let units = units(&std::fs::read_to_string(&html)?)
                .with_context(|| format!("reading {}", html.display()))?;
            std::fs::remove_dir_all(&target)
                .with_context(|| format!("removing {}", target.display()))?;
            if let Some(home) = &cargo_home {
                std::fs::remove_dir_all(home)
                    .with_context(|| format!("removing {}", home.display()))?;
            }
            let build = summarise(features, wall_s, &units);
            eprintln!(
                "first-build: {features}: {:.1} min, {} units",
                wall_s / 60.0,
                build.units
            );
            builds.push(build);
        }
        let record = FirstBuildRecord {
            provenance,
            rustc,
            builds,
            downloads_counted: self.with_downloads,
        };
        let json = serde_json::to_string_pretty(&record)?;
        student_arch::io::write_atomic(&self.out.join("first_build.json"), json.as_bytes())?;
        let md = markdown(&record);
        student_arch::io::write_atomic(&self.out.join("first_build.md"), md.as_bytes())?;
        println!("{md}");
        Ok(())
    }
}

/// An empty cargo home at `dir` (an earlier one removed), holding only the user's cargo configuration, so that
/// a build with it downloads the registry index and every crate as a fresh machine does.
fn fresh_cargo_home(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("removing the earlier {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(home) = home {
        for name in ["config.toml", "config"] {
            let from = home.join(name);
            if from.is_file() {
                std::fs::copy(&from, dir.join(name)).with_context(|| {
                    format!("copying {} into {}", from.display(), dir.display())
                })?;
            }
        }
    }
    Ok(())
}

/// The timing report cargo wrote into `target`.
fn timing_report(target: &Path) -> Result<PathBuf> {
    let dir = target.join("cargo-timings");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cargo wrote no timing report in {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("cargo-timing-") && n.ends_with(".html"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .with_context(|| format!("no cargo-timing-*.html in {}", dir.display()))
}

/// One unit of cargo's timing report.
#[derive(Debug, Deserialize)]
struct Unit {
    name: String,
    duration: f64,
}

/// The units of a cargo timing report (its `UNIT_DATA` array).
fn units(html: &str) -> Result<Vec<Unit>> {
    let start = html
        .find("const UNIT_DATA = ")
        .context("no UNIT_DATA in the timing report (a cargo whose report has another shape)")?
        + "const UNIT_DATA = ".len();
    let end = html[start..]
        .find(";\n")
        .context("UNIT_DATA does not end")?;
    serde_json::from_str(&html[start..start + end])
        .context("UNIT_DATA is not the JSON array it was")
}

fn summarise(features: &str, wall_s: f64, units: &[Unit]) -> ColdBuild {
    // A crate's library and its build script are separate units; sum them per crate.
    let mut per_crate: std::collections::BTreeMap<&str, f64> = Default::default();
    for u in units {
        *per_crate.entry(u.name.as_str()).or_default() += u.duration;
    }
    let mut longest: Vec<(String, f64)> = per_crate
        .into_iter()
        .map(|(n, s)| (n.to_string(), (s * 10.0).round() / 10.0))
        .collect();
    longest.sort_by(|a, b| b.1.total_cmp(&a.1));
    longest.truncate(6);
    ColdBuild {
        features: features.to_string(),
        wall_s: (wall_s * 10.0).round() / 10.0,
        units: units.len(),
        unit_seconds: units.iter().map(|u| u.duration).sum::<f64>().round(),
        longest,
    }
}

/// The table of a first-build record.
pub fn markdown(r: &FirstBuildRecord) -> String {
    let mut s = String::from(
        "| xtask features | first build (min) | units | compile seconds, all units | longest crates (s) |\n\
         |---|---|---|---|---|\n",
    );
    for b in &r.builds {
        let longest: Vec<String> = b
            .longest
            .iter()
            .map(|(n, sec)| format!("{n} {sec:.0}"))
            .collect();
        s += &format!(
            "| {} | {:.1} | {} | {:.0} | {} |\n",
            b.features,
            b.wall_s / 60.0,
            b.units,
            b.unit_seconds,
            longest.join(", ")
        );
    }
    let downloads = if r.downloads_counted {
        "each build from an empty cargo home (registry index and crate downloads counted)"
    } else {
        "crates already downloaded (downloads not counted)"
    };
    s += &format!("\n{}, {}; {downloads}.\n", r.provenance.describe(), r.rustc);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_timing_units_and_sums_them_per_crate() {
        let html = "<script>\nconst UNIT_DATA = [{\"i\":0,\"name\":\"burn-flex\",\"version\":\"0.22.1\",\
                    \"target\":\"\",\"start\":1.0,\"duration\":250.5},{\"i\":1,\"name\":\"libc\",\
                    \"target\":\" build-script\",\"start\":0.0,\"duration\":1.0},{\"i\":2,\"name\":\"libc\",\
                    \"target\":\"\",\"start\":1.0,\"duration\":2.0}];\nconst CONCURRENCY_DATA = [];\n</script>";
        let read = units(html).unwrap();
        assert_eq!(read.len(), 3);
        let b = summarise("default", 600.04, &read);
        assert_eq!(b.units, 3);
        assert_eq!(b.unit_seconds, 254.0);
        assert_eq!(
            b.longest,
            [("burn-flex".to_string(), 250.5), ("libc".to_string(), 3.0)]
        );
        assert!(markdown(&FirstBuildRecord {
            provenance: pipeline::Provenance::now("cargo xtask first-build".into(), "abc".into()),
            rustc: "rustc 1.95.0".into(),
            builds: vec![b.clone()],
            downloads_counted: false,
        })
        .contains("| default | 10.0 | 3 | 254 | burn-flex 250, libc 3 |"));
        let counted = markdown(&FirstBuildRecord {
            provenance: pipeline::Provenance::now("cargo xtask first-build".into(), "abc".into()),
            rustc: "rustc 1.95.0".into(),
            builds: vec![b],
            downloads_counted: true,
        });
        assert!(counted.contains("downloads counted") && !counted.contains("not counted"));
        // A record written before the flag existed reads as downloads not counted.
        let old: FirstBuildRecord = serde_json::from_str(
            r#"{"provenance":{"command":"c","commit":"abc","cpu":"x","date":"2026-12-03"},"rustc":"r","builds":[]}"#,
        )
        .unwrap();
        assert!(!old.downloads_counted);
        assert!(units("<html>no data</html>").is_err());
    }

    #[test]
    fn a_fresh_cargo_home_starts_empty_of_crates() {
        let dir = std::env::temp_dir().join(format!("first-build-home-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("registry/cache")).unwrap();
        std::fs::write(dir.join("registry/cache/stale.crate"), b"x").unwrap();
        fresh_cargo_home(&dir).unwrap();
        assert!(dir.is_dir());
        assert!(!dir.join("registry").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
