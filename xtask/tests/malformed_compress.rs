//! `cargo xtask quantize` and `cargo xtask sensitivity` on malformed options, models and outputs: every case
//! fails before the model is scored or measured, with a message that names the flag or file and the fix, and
//! changes no file it was given (issue 16's classes 4, 5, 8, 9).

mod common;

use std::path::Path;

use common::{args, reviews_csv, run_cases, tiny_classifier, xtask, Case, Scratch};

fn data_flags(csv: &Path) -> Vec<String> {
    args(&[
        "--dataset",
        &csv.display().to_string(),
        "--text-column",
        "review",
        "--label-column",
        "verdict",
    ])
}

#[test]
fn malformed_quantize_and_sensitivity_runs_fail_up_front() {
    let s = Scratch::new("compress");
    let model = s.path().join("student");
    tiny_classifier(&model);
    let other = s.path().join("other-model");
    tiny_classifier(&other);
    let inputs = s.path().join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    let csv = inputs.join("reviews.csv");
    reviews_csv(&csv, 6);
    let report = |name: &str, sha: Option<&str>| -> String {
        let mut v = serde_json::json!({"method": "finite differences", "batches": 1,
            "blocks": [{"name": "layer.0", "mean": 1.0, "std": 0.1, "score": 1.1},
                       {"name": "layer.1", "mean": 2.0, "std": 0.1, "score": 2.1}]});
        if let Some(sha) = sha {
            v["model_sha256"] = sha.into();
        }
        let p = inputs.join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p.display().to_string()
    };
    let foreign = report("foreign.json", Some("0123456789abcdef0123456789abcdef"));
    std::fs::write(inputs.join("garbage.json"), "{ not json").unwrap();
    let user = s.path().join("user");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("README.md"), "# my notes\n").unwrap();
    std::fs::write(user.join("data.json"), "{\"mine\": true}").unwrap();

    // A quantized directory, written by a real quantize run (it must succeed).
    let quantized = s.path().join("quantized");
    let mut ok = args(&[
        "quantize",
        "--device",
        "flex",
        "--granularity",
        "tensor",
        "--model",
    ]);
    ok.push(model.display().to_string());
    ok.extend(args(&["--out", &quantized.display().to_string()]));
    ok.extend(data_flags(&csv));
    let run = xtask(&ok.iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let keep = vec![
        model.clone(),
        other.clone(),
        inputs.clone(),
        user.clone(),
        quantized.clone(),
    ];
    let quantize = |extra: &[&str], out: &Path, from: &Path| -> Vec<String> {
        let mut a = args(&[
            "quantize",
            "--device",
            "flex",
            "--granularity",
            "tensor",
            "--model",
        ]);
        a.push(from.display().to_string());
        a.extend(args(&["--out", &out.display().to_string()]));
        a.extend(data_flags(&csv));
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let fresh = |n: &str| s.path().join("runs").join(n);
    let case = |name: &'static str, args: Vec<String>, expect: Vec<&'static str>| Case {
        name,
        args,
        stdin: None,
        expect,
        keep: keep.clone(),
        succeeds: false,
    };
    let sens = |extra: &[&str], out: &str| -> Vec<String> {
        let mut a = args(&["sensitivity", "--device", "flex", "--model"]);
        a.push(model.display().to_string());
        a.extend(args(&["--out", out]));
        a.extend(data_flags(&csv));
        a.extend(extra.iter().map(|x| x.to_string()));
        if !extra.contains(&"--batches") {
            a.extend(args(&["--batches", "1"]));
        }
        if !extra.contains(&"--batch-size") {
            a.extend(args(&["--batch-size", "4"]));
        }
        a
    };
    let cases = vec![
        case(
            "quantize --out is the model",
            quantize(&[], &model, &model),
            vec!["out", "never rewritten"],
        ),
        case(
            "quantize --out is another model",
            quantize(&[], &other, &model),
            vec!["other-model", "new --out"],
        ),
        case(
            "quantize --out is a user's folder",
            quantize(&[], &user, &model),
            vec!["user", "new --out"],
        ),
        case(
            "quantize a quantized model",
            quantize(&[], &fresh("q1"), &quantized),
            vec!["already quantized"],
        ),
        case(
            "--avg-bits NaN",
            quantize(
                &[
                    "--bits",
                    "mixed",
                    "--sensitivity",
                    &foreign,
                    "--avg-bits",
                    "NaN",
                ],
                &fresh("q2"),
                &model,
            ),
            vec!["--avg-bits", "nan"],
        ),
        case(
            "--avg-bits 1",
            quantize(
                &[
                    "--bits",
                    "mixed",
                    "--sensitivity",
                    &foreign,
                    "--avg-bits",
                    "1",
                ],
                &fresh("q3"),
                &model,
            ),
            vec!["--avg-bits", "2..=8"],
        ),
        case(
            "--budget-mb -1",
            quantize(
                &[
                    "--bits",
                    "mixed",
                    "--sensitivity",
                    &foreign,
                    "--budget-mb=-1",
                ],
                &fresh("q4"),
                &model,
            ),
            vec!["--budget-mb", "positive"],
        ),
        case(
            "mixed without a report",
            quantize(
                &["--bits", "mixed", "--avg-bits", "4"],
                &fresh("q5"),
                &model,
            ),
            vec!["--sensitivity"],
        ),
        case(
            "report of another model",
            quantize(
                &[
                    "--bits",
                    "mixed",
                    "--sensitivity",
                    &foreign,
                    "--avg-bits",
                    "4",
                ],
                &fresh("q6"),
                &model,
            ),
            vec!["foreign.json", "another model"],
        ),
        case(
            "report not JSON",
            quantize(
                &[
                    "--bits",
                    "mixed",
                    "--sensitivity",
                    &inputs.join("garbage.json").display().to_string(),
                    "--avg-bits",
                    "4",
                ],
                &fresh("q7"),
                &model,
            ),
            vec!["garbage.json"],
        ),
        case(
            "--embedding-bits 5",
            quantize(&["--embedding-bits", "5"], &fresh("q8"), &model),
            vec!["--embedding-bits", "5"],
        ),
        case(
            "--bit-options 5",
            quantize(
                &[
                    "--bits",
                    "mixed",
                    "--sensitivity",
                    &foreign,
                    "--avg-bits",
                    "4",
                    "--bit-options",
                    "4,5",
                ],
                &fresh("q9"),
                &model,
            ),
            vec!["5"],
        ),
        case(
            "--bits 5",
            quantize(&["--bits", "5"], &fresh("q10"), &model),
            vec!["--bits", "8, 4, 3, 2 or mixed"],
        ),
        case(
            "--embedding-granularity block:7",
            quantize(
                &["--embedding-granularity", "block:7"],
                &fresh("q11"),
                &model,
            ),
            vec!["block:7"],
        ),
        case(
            "sensitivity --out sens.md",
            sens(&[], &fresh("sens.md").display().to_string()),
            vec!["--out", ".json"],
        ),
        case(
            "sensitivity --out beside a user's README.md",
            sens(&[], &user.join("README.json").display().to_string()),
            vec!["readme.md", "never overwritten"],
        ),
        case(
            "sensitivity --out over a user's JSON",
            sens(&[], &user.join("data.json").display().to_string()),
            vec!["data.json", "never overwritten"],
        ),
        case(
            "sensitivity --out unwritable",
            sens(&[], "/proc/bert-compress/sens.json"),
            vec!["/proc/bert-compress"],
        ),
        case(
            "sensitivity --batches 0",
            sens(&["--batches", "0"], &fresh("s0.json").display().to_string()),
            vec!["batches"],
        ),
        case(
            "sensitivity --blocks layer.99",
            sens(
                &["--blocks", "layer.99"],
                &fresh("s1.json").display().to_string(),
            ),
            vec!["layer.99"],
        ),
        case(
            "sensitivity batches beyond the data",
            sens(
                &["--batch-size", "1000"],
                &fresh("s2.json").display().to_string(),
            ),
            vec!["batches", "training examples"],
        ),
        case(
            "sensitivity --block bogus",
            sens(
                &["--block", "bogus"],
                &fresh("s3.json").display().to_string(),
            ),
            vec!["bogus"],
        ),
    ];
    run_cases(cases);
}
