//! Where a figure came from: the command, commit, CPU and date that every committed record carries
//! (`docs/records/`), so that a table rendered from it names the run that produced it.

use serde::{Deserialize, Serialize};

/// The run behind a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The command line as typed (e.g. `cargo xtask suite --seeds 42,43,44`).
    pub command: String,
    /// The commit the binary was built from, `+dirty` when the tree had changes.
    pub commit: String,
    /// The CPU: its model name, cores and the vector extensions that decide our kernels' speed.
    pub cpu: String,
    /// The UTC date the run started, `YYYY-MM-DD`.
    pub date: String,
}

impl Provenance {
    /// A provenance for `command` at `commit`, on this machine, today.
    pub fn now(command: String, commit: String) -> Self {
        Self {
            command,
            commit,
            cpu: cpu_description(),
            date: utc_date(std::time::SystemTime::now()),
        }
    }

    /// How a rendered table names the run: `` `command` at commit C on CPU, DATE ``.
    pub fn describe(&self) -> String {
        format!(
            "`{}` at commit {} on {}, {}",
            self.command, self.commit, self.cpu, self.date
        )
    }
}

/// [`Provenance::describe`] of a record's provenance, or "a run without provenance".
pub fn describe_run(provenance: Option<&Provenance>) -> String {
    provenance.map_or_else(|| "a run without provenance".into(), Provenance::describe)
}

/// The closing line of a table rendered from several records: `Records: `docs/records/NAME.json`, ….`
pub fn records_line<T>(records: &[(String, T)]) -> String {
    format!(
        "Records: {}.\n",
        records
            .iter()
            .map(|(n, _)| format!("`docs/records/{n}.json`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The vector extensions named in a CPU description, in this order, as `/proc/cpuinfo` spells them.
const EXTENSIONS: [&str; 6] = [
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
];

/// "AMD EPYC, 2 cores: avx2 fma avx512f …" from `/proc/cpuinfo` (the architecture alone where it is not
/// readable).
pub fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    describe_cpuinfo(&info).unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The description of a `/proc/cpuinfo` text, `None` when it names no model.
pub fn describe_cpuinfo(info: &str) -> Option<String> {
    let field = |name: &str| {
        info.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    let model = field("model name")?;
    let cores = info
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count();
    let flags = field("flags").unwrap_or_default();
    let flags: Vec<&str> = flags.split_whitespace().collect();
    let have: Vec<&str> = EXTENSIONS
        .iter()
        .copied()
        .filter(|e| flags.contains(e))
        .collect();
    Some(format!(
        "{model}, {cores} cores: {}",
        if have.is_empty() {
            "no AVX2".to_string()
        } else {
            have.join(" ")
        }
    ))
}

/// `YYYY-MM-DD` of `t` in UTC (days since the epoch to a civil date, Howard Hinnant's algorithm).
pub fn utc_date(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dates_by_hand() {
        assert_eq!(utc_date(UNIX_EPOCH), "1970-01-01");
        // 2000-02-29 is day 11,016; 2026-12-02 is day 20,789 (checked with `date -d @…`).
        assert_eq!(
            utc_date(UNIX_EPOCH + Duration::from_secs(11_016 * 86_400 + 3600)),
            "2000-02-29"
        );
        assert_eq!(
            utc_date(UNIX_EPOCH + Duration::from_secs(20_789 * 86_400)),
            "2026-12-02"
        );
    }

    #[test]
    fn cpuinfo_names_model_cores_and_extensions() {
        let info = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma avx512f avx512_vnni\n\n\
                    processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma avx512f avx512_vnni\n";
        assert_eq!(
            describe_cpuinfo(info).unwrap(),
            "AMD EPYC, 2 cores: avx2 fma avx512f avx512_vnni"
        );
        assert_eq!(describe_cpuinfo("flags: avx2"), None);
    }
}
