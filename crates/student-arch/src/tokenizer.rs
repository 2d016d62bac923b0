//! The teacher's word-piece tokenizer, read from `tokenizer.json` (or built from `vocab.txt`), with the library's
//! own padding and truncation turned off: we truncate here and pad per batch in [`crate::BertInput`].

use std::path::{Path, PathBuf};

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::Tokenizer;

use crate::error::{ArchError, Result};

/// A BERT tokenizer: text in, word-piece ids with `[CLS]` and `[SEP]` out.
#[derive(Clone)]
pub struct BertTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    /// Id of `[PAD]`.
    pub pad_id: u32,
    /// Id of `[CLS]`.
    pub cls_id: u32,
    /// Id of `[SEP]`.
    pub sep_id: u32,
    /// Id of `[MASK]`.
    pub mask_id: u32,
    /// Id of `[UNK]`.
    pub unk_id: u32,
}

impl std::fmt::Debug for BertTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertTokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

fn tok_err(path: &Path, message: impl std::fmt::Display) -> ArchError {
    ArchError::Tokenizer {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

impl BertTokenizer {
    /// Loads `tokenizer.json` from `dir`, or builds the tokenizer from `vocab.txt` when there is none.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        if json.exists() {
            return Self::from_tokenizer_json(&json);
        }
        let vocab = dir.join("vocab.txt");
        if vocab.exists() {
            return Self::from_vocab(&vocab, lowercase_of(dir));
        }
        Err(ArchError::MissingFile {
            path: json,
            hint: format!(
                "a model directory needs tokenizer.json or vocab.txt; neither is in {}",
                dir.display()
            ),
        })
    }

    /// Loads a Hugging Face `tokenizer.json`.
    pub fn from_tokenizer_json(path: &Path) -> Result<Self> {
        let mut inner = Tokenizer::from_file(path).map_err(|e| tok_err(path, e))?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| tok_err(path, e))?;
        Self::wrap(inner, path)
    }

    /// Builds BERT's tokenizer (BERT normaliser, BERT pre-tokenizer, word-piece, `[CLS] … [SEP]`) from `vocab.txt`.
    pub fn from_vocab(path: &Path, lowercase: bool) -> Result<Self> {
        let path_str = path
            .to_str()
            .ok_or_else(|| tok_err(path, "path is not UTF-8"))?;
        let wordpiece = WordPiece::from_file(path_str)
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| tok_err(path, e))?;
        let mut inner = Tokenizer::new(wordpiece);
        inner.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)));
        inner.with_pre_tokenizer(Some(BertPreTokenizer));
        let id = |t: &str| {
            inner
                .token_to_id(t)
                .ok_or_else(|| tok_err(path, format!("vocabulary has no {t}")))
        };
        let (sep, cls) = (id("[SEP]")?, id("[CLS]")?);
        inner.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
        Self::wrap(inner, path)
    }

    fn wrap(inner: Tokenizer, path: &Path) -> Result<Self> {
        let id = |t: &str| {
            inner
                .token_to_id(t)
                .ok_or_else(|| tok_err(path, format!("vocabulary has no {t} token")))
        };
        Ok(Self {
            pad_id: id("[PAD]")?,
            cls_id: id("[CLS]")?,
            sep_id: id("[SEP]")?,
            mask_id: id("[MASK]")?,
            unk_id: id("[UNK]")?,
            inner,
            path: path.to_path_buf(),
        })
    }

    /// Whether the tokenizer lower-cases its input (BERT's normaliser setting): from `tokenizer.json`'s
    /// normaliser, or `tokenizer_config.json`'s `do_lower_case` beside a `vocab.txt` (default true).
    pub fn lowercase(&self) -> bool {
        if self.path.file_name().is_some_and(|n| n == "tokenizer.json") {
            return std::fs::read_to_string(&self.path)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["normalizer"]["lowercase"].as_bool())
                .unwrap_or(true);
        }
        self.path.parent().is_none_or(lowercase_of)
    }

    /// The file the tokenizer was read from (`tokenizer.json` or `vocab.txt`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tokenizer as Hugging Face `tokenizer.json` text (no padding or truncation set), which the
    /// `tokenizers` libraries of Python, Rust and JavaScript read; a tokenizer read from `vocab.txt` gets one.
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(true)
            .map_err(|e| tok_err(&self.path, e))
    }

    /// Number of word pieces, including special tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The ids of `text`, `[CLS] … [SEP]`, truncated to `max_length` (keeping the final `[SEP]`).
    pub fn encode(&self, text: &str, max_length: usize) -> Result<Vec<u32>> {
        if max_length < 2 {
            return Err(ArchError::BadInput {
                op: "BertTokenizer::encode",
                message: format!(
                    "max_length {max_length} leaves no room for [CLS] and [SEP]; use at least 2"
                ),
            });
        }
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| tok_err(&self.path, e))?;
        let mut ids = encoding.get_ids().to_vec();
        if ids.len() > max_length {
            ids.truncate(max_length - 1);
            ids.push(self.sep_id);
        }
        Ok(ids)
    }

    /// [`BertTokenizer::encode`] for each text.
    pub fn encode_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        max_length: usize,
    ) -> Result<Vec<Vec<u32>>> {
        texts
            .iter()
            .map(|t| self.encode(t.as_ref(), max_length))
            .collect()
    }

    /// The word piece of `id`, if any.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

/// `do_lower_case` from `tokenizer_config.json`; BERT's default (true) when absent.
fn lowercase_of(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("do_lower_case").and_then(|b| b.as_bool()))
        .unwrap_or(true)
}
