//! Sentences to token ids: a wrapper over the `tokenizers` crate that loads `tokenizer.json` (or a
//! WordPiece `vocab.txt`), truncates to a maximum length and pads each batch to its longest
//! sentence (a `tokenizer.json`'s own fixed padding is turned off: with MiniLM's, every sentence
//! would be padded to 128 tokens).

use candle_core::{Device, Tensor};
use contrastive_core::collective::{Collective, GlobalRows};
use contrastive_core::{Error, Result};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokenizers::{PaddingParams, PaddingStrategy, TruncationParams};

/// Token ids, type ids and attention mask of a batch, each (B, L) u32.
#[derive(Clone, Debug)]
pub struct TokenBatch {
    /// Token ids.
    pub ids: Tensor,
    /// Segment ids (all 0 for single sentences).
    pub type_ids: Tensor,
    /// 1 for tokens, 0 for padding.
    pub attention_mask: Tensor,
}

impl TokenBatch {
    /// This process's batch padded to the longest sequence of every process's batch, and where
    /// its rows sit in the global batch (one all-gather of each process's row count and length):
    /// what a data-parallel step encodes, inside `contrastive_core::nn::in_global_batch`, so that
    /// padding and dropout masks are those of one process holding the whole global batch. With
    /// one process, the batch itself.
    pub fn in_global_batch(&self, collective: &dyn Collective) -> Result<(TokenBatch, GlobalRows)> {
        let (rows, len) = self.ids.dims2()?;
        if collective.world_size() == 1 {
            return Ok((self.clone(), GlobalRows::whole(rows)));
        }
        let shapes = collective.all_gather(&[rows as f32, len as f32])?;
        let field = |s: &Vec<f32>, i: usize| s.get(i).copied().unwrap_or(0.0) as usize;
        let counts: Vec<usize> = shapes.iter().map(|s| field(s, 0)).collect();
        let longest = shapes.iter().map(|s| field(s, 1)).max().unwrap_or(len);
        Ok((self.pad_to(longest)?, GlobalRows::from_counts(&counts, collective.rank())?))
    }

    /// The batch padded on the right to `len` tokens (ids, type ids and mask 0), as the batch of
    /// every process of a data-parallel step is padded to the longest of them: padding is masked
    /// out, so the real tokens' states do not change. A shorter `len` is an error.
    pub fn pad_to(&self, len: usize) -> Result<TokenBatch> {
        let (_, l) = self.ids.dims2()?;
        if len < l {
            return Err(Error::shape("TokenBatch::pad_to", format!("at least {l} tokens"), &[len]));
        }
        let pad = |t: &Tensor| -> Result<Tensor> { Ok(t.pad_with_zeros(1, 0, len - l)?) };
        Ok(TokenBatch {
            ids: pad(&self.ids)?,
            type_ids: pad(&self.type_ids)?,
            attention_mask: pad(&self.attention_mask)?,
        })
    }
}

/// A chunk of a token batch's sentences (gradient caching), with the batch's padding.
impl contrastive_core::grad_cache::RowSlice for TokenBatch {
    fn row_count(&self) -> Result<usize> {
        Ok(self.ids.dim(0)?)
    }

    fn slice_rows(&self, rows: std::ops::Range<usize>) -> Result<Self> {
        let take = |t: &Tensor| -> Result<Tensor> { Ok(t.narrow(0, rows.start, rows.len())?) };
        Ok(TokenBatch {
            ids: take(&self.ids)?,
            type_ids: take(&self.type_ids)?,
            attention_mask: take(&self.attention_mask)?,
        })
    }
}

/// A tokenizer with truncation and per-batch padding.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    max_length: usize,
    /// Sentences cut to `max_length` so far.
    truncated: AtomicUsize,
}

impl Tokenizer {
    /// Loads a `tokenizer.json`; sentences longer than `max_length` tokens are truncated.
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        // JSON syntax first: tokenizers 0.23 panics on some truncated files (its decoder helper
        // unwraps a parse error), and serde_json names the line and column.
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| Error::Json { path: path.into(), message: format!("not a tokenizer.json: {e}") })?;
        // Any other panic of the parser on a well-formed but odd file is an error too.
        let parsed = std::panic::catch_unwind(|| text.parse::<tokenizers::Tokenizer>())
            .map_err(|_| Error::in_file(path, None, "not a tokenizer.json (the tokenizers parser failed)"))?;
        let inner = parsed.map_err(|e| Error::in_file(path, None, format!("not a tokenizer.json: {e}")))?;
        Self::wrap(inner, max_length, path)
    }

    /// Builds a BERT WordPiece tokenizer (lowercasing, BERT's pre-tokenizer, `[CLS] ... [SEP]`) from
    /// a `vocab.txt`.
    pub fn from_vocab(path: &Path, max_length: usize) -> Result<Self> {
        use tokenizers::models::wordpiece::WordPiece;
        use tokenizers::normalizers::BertNormalizer;
        use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
        use tokenizers::processors::bert::BertProcessing;
        let model = WordPiece::from_file(&path.to_string_lossy())
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| Error::in_file(path, None, format!("not a WordPiece vocab.txt: {e}")))?;
        let id = |t: &str| {
            tokenizers::Model::token_to_id(&model, t)
                .ok_or_else(|| Error::in_file(path, None, format!("no `{t}` token")))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        let mut inner = tokenizers::Tokenizer::new(model);
        inner
            .with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
            .map_err(|e| Error::in_file(path, None, e.to_string()))?
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(BertProcessing::new(("[SEP]".into(), sep), ("[CLS]".into(), cls))));
        Self::wrap(inner, max_length, path)
    }

    /// Trains a byte-pair-encoding tokenizer on `texts` (Sennrich et al. 2016): no normaliser and
    /// no pre-tokenizer, so a text without spaces (a SMILES string, a DNA read) is one word whose
    /// frequent substrings become tokens; `[PAD] [UNK] [CLS] [SEP] [MASK]` are ids 0 to 4 and
    /// every text is wrapped as `[CLS] ... [SEP]`, as BERT's are. Deterministic for given texts.
    pub fn train_bpe(texts: &[&str], vocab_size: usize, max_length: usize) -> Result<Self> {
        use tokenizers::models::bpe::{BpeTrainer, BPE};
        use tokenizers::models::TrainerWrapper;
        use tokenizers::processors::bert::BertProcessing;
        use tokenizers::AddedToken;
        if texts.is_empty() {
            return Err(Error::Data("train_bpe: no text to train on".into()));
        }
        const SPECIAL: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
        if vocab_size <= SPECIAL.len() {
            return Err(Error::config(
                "vocab_size",
                format!("must exceed the {} special tokens, got {vocab_size}", SPECIAL.len()),
            ));
        }
        let model =
            BPE::builder().unk_token("[UNK]".into()).build().map_err(|e| Error::Data(format!("train_bpe: {e}")))?;
        let mut inner = tokenizers::Tokenizer::new(model);
        let mut trainer: TrainerWrapper = BpeTrainer::builder()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(SPECIAL.iter().map(|t| AddedToken::from(*t, true)).collect())
            .build()
            .into();
        inner.train(&mut trainer, texts.iter()).map_err(|e| Error::Data(format!("train_bpe: {e}")))?;
        let id = |t: &str| inner.token_to_id(t).ok_or_else(|| Error::Data(format!("train_bpe: no `{t}` token")));
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        inner.with_post_processor(Some(BertProcessing::new(("[SEP]".into(), sep), ("[CLS]".into(), cls))));
        Self::wrap(inner, max_length, Path::new("<trained BPE>"))
    }

    /// The number of tokens, special ones included (the BERT's `vocab_size`).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn wrap(mut inner: tokenizers::Tokenizer, max_length: usize, origin: &Path) -> Result<Self> {
        if max_length < 2 {
            return Err(Error::config("max_length", format!("must be at least 2 ([CLS] and [SEP]), got {max_length}")));
        }
        // The padding token: the file's own (its fixed length aside), else BERT's [PAD] or
        // RoBERTa's <pad>, else id 0.
        let (pad_id, pad_token) = match inner.get_padding() {
            Some(p) => (p.pad_id, p.pad_token.clone()),
            None => ["[PAD]", "<pad>"]
                .iter()
                .find_map(|t| inner.token_to_id(t).map(|id| (id, t.to_string())))
                .unwrap_or((0, "[PAD]".into())),
        };
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token,
            ..PaddingParams::default()
        }));
        inner
            .with_truncation(Some(TruncationParams { max_length, ..TruncationParams::default() }))
            .map_err(|e| Error::config("max_length", format!("cannot set truncation for {}: {e}", origin.display())))?;
        Ok(Self { inner, max_length, truncated: AtomicUsize::new(0) })
    }

    /// Pads with token `id`: the model's own padding id (`BertConfig::padding_id`), which a
    /// vocabulary holding both BERT's `[PAD]` and `<pad>` (MPNet's) does not tell. An id outside
    /// the vocabulary is an error.
    pub fn pad_with(mut self, id: u32) -> Result<Self> {
        let token = self.inner.id_to_token(id).ok_or_else(|| {
            Error::config("pad_token_id", format!("{id} is not in the tokenizer's vocabulary of {}", self.vocab_size()))
        })?;
        self.inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id: id,
            pad_token: token,
            ..PaddingParams::default()
        }));
        Ok(self)
    }

    /// Writes the tokenizer as `tokenizer.json` (with its truncation; padding is set per batch).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut plain = self.inner.clone();
        plain.with_padding(None);
        contrastive_core::atomic::write_atomically(path, |tmp| {
            plain
                .save(tmp, true)
                .map_err(|e| Error::io(path, std::io::Error::other(format!("cannot write the tokenizer: {e}"))))
        })
    }

    /// transformers' `tokenizer_config.json` for this tokenizer: the special tokens its
    /// tokenizer.json uses (the model's unknown token, the padding token, the first and last
    /// tokens its post-processor adds as `cls_token` and `sep_token`) and the maximum length. A
    /// loader that finds none puts its class's defaults in their place: MPNet's class says
    /// `[UNK]` where a vocabulary may use `<unk>`, and every unknown word then gets another id.
    pub fn transformers_config(&self) -> Result<serde_json::Value> {
        let text = self.inner.to_string(false).map_err(|e| Error::Data(format!("tokenizer: {e}")))?;
        let parsed: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::Data(format!("tokenizer: {e}")))?;
        let model = &parsed["model"];
        // WordPiece, BPE and WordLevel name it; Unigram gives its index in the vocabulary.
        let unk = model["unk_token"].as_str().map(String::from).or_else(|| {
            let id = usize::try_from(model["unk_id"].as_u64()?).ok()?;
            model["vocab"][id][0].as_str().map(String::from)
        });
        let mut config = serde_json::Map::new();
        config.insert("model_max_length".into(), serde_json::json!(self.max_length));
        if let Some(unk) = unk {
            config.insert("unk_token".into(), serde_json::json!(unk));
        }
        if let Some(padding) = self.inner.get_padding() {
            config.insert("pad_token".into(), serde_json::json!(padding.pad_token));
        }
        if let Some((cls, sep)) = wrapping_tokens(&parsed["post_processor"]) {
            config.insert("cls_token".into(), serde_json::json!(cls));
            config.insert("sep_token".into(), serde_json::json!(sep));
        }
        Ok(serde_json::Value::Object(config))
    }

    /// The maximum length in tokens.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// How many sentences [`Tokenizer::encode`] has cut to the maximum length so far.
    pub fn truncated(&self) -> usize {
        self.truncated.load(Ordering::Relaxed)
    }

    /// Tokenizes a batch of sentences (at least one) onto `device`.
    pub fn encode(&self, sentences: &[&str], device: &Device) -> Result<TokenBatch> {
        if sentences.is_empty() {
            return Err(Error::Data("tokenizer: no sentence to encode".into()));
        }
        let encodings =
            self.inner.encode_batch(sentences.to_vec(), true).map_err(|e| Error::Data(format!("tokenizer: {e}")))?;
        let cut: Vec<usize> = (0..encodings.len()).filter(|&i| !encodings[i].get_overflowing().is_empty()).collect();
        if let Some(&first) = cut.first() {
            if self.truncated.fetch_add(cut.len(), Ordering::Relaxed) == 0 {
                let start: String = sentences[first].chars().take(60).collect();
                tracing::warn!(
                    max_length = self.max_length,
                    first = %start,
                    "sentences longer than the maximum length are truncated (Tokenizer::truncated counts them)"
                );
            }
        }
        let l = encodings[0].get_ids().len();
        let b = encodings.len();
        let take = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Result<Tensor> {
            let v: Vec<u32> = encodings.iter().flat_map(|e| f(e).iter().copied()).collect();
            Ok(Tensor::from_vec(v, (b, l), device)?)
        };
        Ok(TokenBatch {
            ids: take(&|e| e.get_ids())?,
            type_ids: take(&|e| e.get_type_ids())?,
            attention_mask: take(&|e| e.get_attention_mask())?,
        })
    }
}

/// The tokens a tokenizer.json post-processor puts before and after a single sentence (BERT's
/// and RoBERTa's processors, a template's first and last special tokens, the first of a sequence
/// of processors that adds any).
fn wrapping_tokens(post: &serde_json::Value) -> Option<(String, String)> {
    let name = |v: &serde_json::Value| v.as_str().map(String::from);
    match post["type"].as_str()? {
        "BertProcessing" | "RobertaProcessing" => Some((name(&post["cls"][0])?, name(&post["sep"][0])?)),
        "TemplateProcessing" => {
            let single = post["single"].as_array()?;
            let special = |piece: Option<&serde_json::Value>| name(&piece?["SpecialToken"]["id"]);
            Some((special(single.first())?, special(single.last())?))
        }
        "Sequence" => post["processors"].as_array()?.iter().find_map(wrapping_tokens),
        _ => None,
    }
}
