//! The teacher's masked-language-model head: fitting one on the frozen teacher (for teachers that ship none, like
//! MiniLM), then optionally the encoder's last layers with it, and scoring masked-token accuracy. Used by general
//! distillation and by augmentation.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use kd_losses::{mlm_cross_entropy, LossTerms};
use student_arch::weights::copy_tokenizer_files;
use student_arch::{gather_positions, load_pretrained, BertInput, BertModel, MlmHead};

use crate::config::general::GeneralConfig;
use crate::data::masking::{batch_seed, mask_batch, MaskingConfig, Vocabulary};
use crate::error::{io_err, PipelineError, Result};
use crate::train::RunOptions;
use crate::train::{run_stage, Encoded, StageOutcome};

/// The unpadded id sequences of a batch.
pub fn sequences_of(input: &BertInput) -> Result<Vec<Vec<u32>>> {
    let [b, s] = input.dims();
    let host = |t: Tensor<2, Int>| -> Result<Vec<i64>> {
        t.into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(|e| PipelineError::Config {
                field: "batch",
                message: format!("reading ids: {e:?}"),
            })
    };
    let ids = host(input.input_ids.clone())?;
    let mask = host(input.attention_mask.clone())?;
    Ok((0..b)
        .map(|i| {
            (0..s)
                .filter(|&j| mask[i * s + j] != 0)
                .map(|j| ids[i * s + j] as u32)
                .collect()
        })
        .collect())
}

pub(crate) fn labels_tensor(labels: &[u32], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(
        TensorData::new(
            labels.iter().map(|&l| l as i64).collect::<Vec<_>>(),
            [1, labels.len()],
        ),
        device,
    )
}

/// The MLM logits at the masked positions of `masked`, from `encoder` with `head`.
///
/// # Shapes
/// - output: `[1, masked positions, vocab_size]`
pub(crate) fn mlm_logits(
    encoder: &BertModel,
    head: &MlmHead,
    hidden: Tensor<3>,
    positions: &[usize],
) -> Result<Tensor<3>> {
    let h = gather_positions(hidden, positions)?;
    let logits = head.forward(h, encoder.embeddings.word_embeddings.weight.val());
    let [m, v] = logits.dims();
    Ok(logits.reshape([1, m, v]))
}

/// Masked-token accuracy of `encoder` + `head` on `passages`, masked with a fixed seed (so that every model is
/// scored on the same masks).
pub fn masked_accuracy(
    encoder: &BertModel,
    head: &MlmHead,
    passages: &[Encoded],
    vocab: &Vocabulary,
    masking: &MaskingConfig,
    pad_id: u32,
    device: &Device,
) -> Result<f64> {
    let (mut right, mut total) = (0usize, 0usize);
    for (i, chunk) in passages.chunks(64).enumerate() {
        let seqs: Vec<Vec<u32>> = chunk.iter().map(|e| e.ids.clone()).collect();
        let m = mask_batch(&seqs, vocab, masking, 0xACC0 + i as u64)?;
        let input =
            BertInput::from_token_ids(&m.input_ids, pad_id, vocab.continuation.len(), device)?;
        let hidden = encoder.forward(input).last_hidden_state();
        let logits = mlm_logits(encoder, head, hidden, &m.positions)?;
        let [_, n, _] = logits.dims();
        let predicted: Vec<i64> = logits
            .argmax(2)
            .reshape([n])
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(|e| PipelineError::Config {
                field: "batch",
                message: format!("reading predictions: {e:?}"),
            })?;
        right += predicted
            .iter()
            .zip(&m.labels)
            .filter(|(p, l)| **p == **l as i64)
            .count();
        total += n;
    }
    Ok(right as f64 / total.max(1) as f64)
}

/// How many of `available` training passages the fit uses: `mlm_head_passages`, at least one.
pub(crate) fn fit_passages(config: &GeneralConfig, available: usize) -> usize {
    config.mlm_head_passages.min(available).max(1)
}

/// Log frequency of each id in `train` (add-one smoothed; special tokens counted once).
fn log_unigram(train: &[Encoded], vocab: &Vocabulary, vocab_size: usize) -> Vec<f32> {
    let mut counts = vec![1.0f64; vocab_size];
    for &id in train.iter().flat_map(|e| &e.ids) {
        if (id as usize) < vocab_size && !vocab.special.contains(&id) {
            counts[id as usize] += 1.0;
        }
    }
    let total: f64 = counts.iter().sum();
    counts.iter().map(|c| (c / total).ln() as f32).collect()
}

/// The teacher encoder (on `device`, without autodiff) and its MLM head: the one in its weights file, the one an
/// earlier run saved under `out/teacher-mlm` (with resume; its encoder too), or one fitted here — on the frozen
/// teacher, then with the encoder's last `config.mlm_unfreeze_last` layers — and saved with the encoder under
/// `out/teacher-mlm`. Returns the stages run here (none when nothing was fitted).
#[allow(clippy::too_many_arguments)]
pub fn teacher_with_head(
    teacher_dir: &Path,
    train: &[Encoded],
    held_out: &[Encoded],
    config: &GeneralConfig,
    vocab: &Vocabulary,
    pad_id: u32,
    seed: u64,
    options: &RunOptions,
) -> Result<(BertModel, MlmHead, Vec<StageOutcome>)> {
    let plain = options.device.clone();
    let (teacher, _) = load_pretrained(teacher_dir, &plain)?;
    let weights = teacher_dir.join(student_arch::weights::WEIGHTS_FILE);
    if MlmHead::file_has_head(&weights) {
        let head = MlmHead::load(teacher_dir, &teacher.config, &plain)?;
        return Ok((teacher, head, Vec::new()));
    }
    let fitted_dir = options.out_dir.join("teacher-mlm");
    if options.resume
        && MlmHead::file_has_head(&fitted_dir.join(student_arch::weights::WEIGHTS_FILE))
    {
        // The fitted directory holds the encoder too (changed when its last layers were trained).
        let (teacher, _) = load_pretrained(&fitted_dir, &plain)?;
        let head = MlmHead::load(&fitted_dir, &teacher.config, &plain)?;
        return Ok((teacher, head, Vec::new()));
    }
    if config.mlm_unfreeze_last > teacher.num_layers() {
        return Err(PipelineError::Config {
            field: "general.mlm_unfreeze_last",
            message: format!(
                "{} is more than the teacher's {} layers; use at most {}",
                config.mlm_unfreeze_last,
                teacher.num_layers(),
                teacher.num_layers()
            ),
        });
    }
    let ad = plain.clone().autodiff();
    let mut head = MlmHead::init(&teacher.config, seed, &plain)?;
    // Start the bias at the corpus's log unigram frequencies, so that the head begins as the unigram model and
    // its steps go to what the hidden states add.
    let vocab_size = teacher.config.vocab_size;
    let log_freq = log_unigram(train, vocab, vocab_size);
    head.bias = burn::module::Param::from_tensor(Tensor::from_data(
        TensorData::new(log_freq, [vocab_size]),
        &plain,
    ));
    let head = head.fork(&ad).train();
    let word_embeddings: Tensor<2> = Tensor::from_data(
        teacher.embeddings.word_embeddings.weight.val().into_data(),
        &ad,
    );
    let ctx = options.stage("mlm-head", seed, pad_id, teacher.config.vocab_size, &ad);
    let n = fit_passages(config, train.len());
    let (head, outcome) = run_stage(
        &ctx,
        head,
        &train[..n],
        &config.mlm_head,
        |head: &MlmHead, input, _, _| {
            let seqs = sequences_of(&input)?;
            let m = mask_batch(&seqs, vocab, &config.masking, batch_seed(seed, &seqs))?;
            let masked =
                BertInput::from_token_ids(&m.input_ids, pad_id, teacher.config.vocab_size, &plain)?;
            let hidden = teacher.forward(masked).last_hidden_state();
            let h = gather_positions(hidden, &m.positions)?;
            let h: Tensor<2> = Tensor::from_data(h.into_data(), &ad);
            let logits = head.forward(h, word_embeddings.clone());
            let [positions, v] = logits.dims();
            let loss = mlm_cross_entropy(
                logits.reshape([1, positions, v]),
                labels_tensor(&m.labels, &ad),
            )?;
            Ok(LossTerms::mlm_only(loss))
        },
        |head: &MlmHead| {
            if held_out.is_empty() {
                return Ok(None);
            }
            let head = head.valid();
            Ok(Some(masked_accuracy(
                &teacher,
                &head,
                held_out,
                vocab,
                &config.masking,
                pad_id,
                &plain,
            )?))
        },
    )?;
    let head = head.valid();
    let mut stages = vec![outcome];
    let (teacher, head) = if config.mlm_unfreeze_last > 0 {
        let fit = LastLayersFit {
            train: &train[..n],
            held_out,
            config,
            vocab,
            pad_id,
            seed,
        };
        let (teacher, head, outcome) = fit.run(teacher, head, options)?;
        stages.push(outcome);
        (teacher, head)
    } else {
        (teacher, head)
    };
    std::fs::create_dir_all(&fitted_dir).map_err(io_err("creating", &fitted_dir))?;
    head.save_with_encoder(&teacher, &fitted_dir)?;
    copy_tokenizer_files(teacher_dir, &fitted_dir)?;
    Ok((teacher, head, stages))
}

/// The teacher's encoder and its MLM head, trained together by [`LastLayersFit`].
#[derive(Module, Debug)]
pub struct MlmTeacher {
    /// The encoder; all but its last `mlm_unfreeze_last` layers (and the embeddings) without gradients.
    pub encoder: BertModel,
    /// The head, tied to the encoder's (frozen) word embeddings.
    pub head: MlmHead,
}

/// The second fit of an MLM head: the head with the encoder's last `config.mlm_unfreeze_last` layers, on the same
/// passages, at `config.mlm_encoder`'s learning rate (lower than the head's own), evaluated on the held-out
/// passages (the best checkpoint kept).
struct LastLayersFit<'a> {
    train: &'a [Encoded],
    held_out: &'a [Encoded],
    config: &'a GeneralConfig,
    vocab: &'a Vocabulary,
    pad_id: u32,
    seed: u64,
}

impl LastLayersFit<'_> {
    fn run(
        &self,
        teacher: BertModel,
        head: MlmHead,
        options: &RunOptions,
    ) -> Result<(BertModel, MlmHead, StageOutcome)> {
        let plain = options.device.clone();
        let ad = plain.clone().autodiff();
        let layers = teacher.num_layers();
        let frozen = layers - self.config.mlm_unfreeze_last.min(layers);
        let vocab_size = teacher.config.vocab_size;
        let mut encoder = teacher.fork(&ad).train();
        encoder.embeddings = encoder.embeddings.no_grad();
        encoder.pooler = encoder.pooler.map(|p| p.no_grad());
        encoder.layers = encoder
            .layers
            .into_iter()
            .enumerate()
            .map(|(i, layer)| if i < frozen { layer.no_grad() } else { layer })
            .collect();
        let model = MlmTeacher {
            encoder,
            head: head.fork(&ad).train(),
        };
        // Other masks than the head's fit saw on the same passages.
        let mask_seed = self.seed.wrapping_add(0x6D6C6D);
        let ctx = options.stage("mlm-encoder", self.seed, self.pad_id, vocab_size, &ad);
        let (model, outcome) = run_stage(
            &ctx,
            model,
            self.train,
            &self.config.mlm_encoder,
            |m: &MlmTeacher, input, _, _| {
                let seqs = sequences_of(&input)?;
                let mb = mask_batch(
                    &seqs,
                    self.vocab,
                    &self.config.masking,
                    batch_seed(mask_seed, &seqs),
                )?;
                let masked =
                    BertInput::from_token_ids(&mb.input_ids, self.pad_id, vocab_size, &ad)?;
                let hidden = m.encoder.forward(masked).last_hidden_state();
                let logits = mlm_logits(&m.encoder, &m.head, hidden, &mb.positions)?;
                let loss = mlm_cross_entropy(logits, labels_tensor(&mb.labels, &ad))?;
                Ok(LossTerms::mlm_only(loss))
            },
            |m: &MlmTeacher| {
                if self.held_out.is_empty() {
                    return Ok(None);
                }
                let m = m.valid();
                Ok(Some(masked_accuracy(
                    &m.encoder,
                    &m.head,
                    self.held_out,
                    self.vocab,
                    &self.config.masking,
                    self.pad_id,
                    &plain,
                )?))
            },
        )?;
        let model = model.valid();
        Ok((model.encoder, model.head, outcome))
    }
}
