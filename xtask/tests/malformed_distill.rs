//! `cargo xtask distill` on malformed configs and flags: every case fails before the teacher is fine-tuned, with
//! a message that names the field and the fix, and changes no file it was given (issue 16's classes 1-5, 8).

mod common;

use std::path::Path;

use common::{args, reviews_csv, run_cases, tiny_classifier, Case, Scratch};

#[test]
fn malformed_configs_and_flags_fail_before_training() {
    let s = Scratch::new("distill");
    let teacher = s.path().join("teacher");
    tiny_classifier(&teacher);
    let inputs = s.path().join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    let csv = inputs.join("reviews.csv");
    reviews_csv(&csv, 4);
    let one_label = inputs.join("one-label.csv");
    std::fs::write(
        &one_label,
        "review,verdict\ngood film,fresh\nfine film,fresh\nnice film,fresh\n",
    )
    .unwrap();
    let user_dir = s.path().join("my-notes");
    std::fs::create_dir_all(&user_dir).unwrap();
    std::fs::write(user_dir.join("notes.txt"), "mine").unwrap();
    let toml = |name: &str, body: &str| -> String {
        let p = inputs.join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    let out = |name: &str| s.path().join("runs").join(name).display().to_string();
    let base = |extra: &[&str], out_dir: &str| -> Vec<String> {
        let mut a = args(&[
            "distill",
            "--device",
            "flex",
            "--teacher",
            &teacher.display().to_string(),
            "--dataset",
            &csv.display().to_string(),
            "--text-column",
            "review",
            "--label-column",
            "verdict",
            "--max-len",
            "16",
            "--out",
            out_dir,
        ]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let keep = vec![teacher.clone(), inputs.clone(), user_dir.clone()];
    let case = |name: &'static str, args: Vec<String>, expect: Vec<&'static str>| Case {
        name,
        args,
        stdin: None,
        expect,
        keep: keep.clone(),
        succeeds: false,
    };
    let cases = vec![
        case(
            "--epochs 0",
            base(&["--epochs", "0"], &out("e0")),
            vec!["epochs", "1..="],
        ),
        case(
            "epochs overflow",
            base(
                &[
                    "--config",
                    &toml(
                        "epochs.toml",
                        "[prediction]\nepochs = 4611686018427387904\n",
                    ),
                ],
                &out("e1"),
            ),
            vec!["prediction", "epochs"],
        ),
        case(
            "--max-len beyond the teacher",
            {
                let mut a = base(&[], &out("ml"));
                let i = a.iter().position(|x| x == "--max-len").unwrap();
                a[i + 1] = "500".into();
                a
            },
            vec!["max_length", "max_position_embeddings"],
        ),
        case(
            "--student-layers 0,99",
            base(&["--student-layers", "0,99"], &out("sl")),
            vec!["student_layers", "99", "0..2"],
        ),
        case(
            "--student-layers 1,0",
            base(&["--student-layers", "1,0"], &out("sl2")),
            vec!["student_layers", "increasing"],
        ),
        case(
            "narrow student of 10^9 width",
            base(
                &[
                    "--config",
                    &toml(
                        "narrow.toml",
                        "[narrow_student]\nhidden_size = 1000000000\n",
                    ),
                ],
                &out("ns"),
            ),
            vec!["narrow_student", "hidden_size"],
        ),
        case(
            "narrow student larger than the teacher",
            base(&["--config", &toml("big.toml", "[narrow_student]\nlayers = 200\nhidden_size = 4096\nnum_attention_heads = 16\nintermediate_size = 16384\n")], &out("nb")),
            vec!["narrow_student", "larger than its teacher"],
        ),
        case(
            "narrow student heads do not divide",
            base(
                &[
                    "--config",
                    &toml("heads.toml", "[narrow_student]\nhidden_size = 310\n"),
                ],
                &out("nh"),
            ),
            vec!["narrow_student", "310"],
        ),
        case(
            "--out is a user's folder",
            base(&[], &user_dir.display().to_string()),
            vec!["my-notes", "new --out"],
        ),
        case(
            "--out is the teacher",
            base(&[], &teacher.display().to_string()),
            vec!["teacher", "new --out"],
        ),
        case(
            "one label",
            {
                let mut a = base(&[], &out("one"));
                let i = a.iter().position(|x| x == "--dataset").unwrap();
                a[i + 1] = one_label.display().to_string();
                a
            },
            vec!["one-label.csv", "at least two labels"],
        ),
        case(
            "temperature NaN",
            base(
                &["--config", &toml("nan.toml", "temperature = nan\n")],
                &out("t"),
            ),
            vec!["temperature"],
        ),
        case(
            "batch size 0",
            base(
                &[
                    "--config",
                    &toml("batch.toml", "[teacher_finetune]\nbatch_size = 0\n"),
                ],
                &out("b"),
            ),
            vec!["teacher_finetune", "batch_size"],
        ),
        case(
            "learning rate negative",
            base(
                &[
                    "--config",
                    &toml("lr.toml", "[intermediate]\nlearning_rate = -1.0\n"),
                ],
                &out("lr"),
            ),
            vec!["intermediate", "learning_rate"],
        ),
        case(
            "unknown field",
            base(
                &["--config", &toml("typo.toml", "max_lenght = 32\n")],
                &out("ty"),
            ),
            vec!["typo.toml", "max_lenght"],
        ),
        case(
            "fractions sum to 1",
            base(
                &[
                    "--config",
                    &toml("frac.toml", "dev_fraction = 0.5\ntest_fraction = 0.5\n"),
                ],
                &out("f"),
            ),
            vec!["dev_fraction", "test_fraction"],
        ),
        case(
            "--method unknown",
            base(&["--method", "bert"], &out("m")),
            vec!["--method", "tinybert or distilbert"],
        ),
        case(
            "missing teacher",
            {
                let mut a = base(&[], &out("mt"));
                let i = a.iter().position(|x| x == "--teacher").unwrap();
                a[i + 1] = s.path().join("no-teacher").display().to_string();
                a
            },
            vec!["no-teacher", "config.json"],
        ),
    ];
    run_cases(cases);
    // Nothing was trained: no case got as far as a checkpoint.
    assert!(!Path::new(&out("e0")).join("checkpoints").exists());
}
