//! SimCSE: "SimCSE: Simple Contrastive Learning of Sentence Embeddings", Gao, Yao and Chen, EMNLP
//! 2021, arXiv:2104.08821.
//!
//! Unsupervised: each sentence goes through the encoder twice with dropout on; the two vectors
//! are a positive pair and the other sentences of the batch are negatives, in one direction
//! (InfoNCE over cosine similarities at temperature 0.05). Supervised: (anchor, entailment,
//! contradiction) triples from NLI; the entailment is the positive and every contradiction of the
//! batch a further negative. Pooling is the paper's CLS with an MLP in training only, or the mean
//! (sentence-transformers' models). The dropout streams' positions are saved with checkpoints, so
//! a resumed run draws the same masks.

use crate::batch::SentenceBatch;
use crate::bert::Bert;
use crate::config::BertConfig;
use crate::pooled_bert::PooledBert;
use crate::pooling::Pooling;
use crate::tokenizer::TokenBatch;
use candle_core::{DType, Device, Tensor};
use contrastive_core::collective::{gather_rows, Collective, GlobalRows, Local};
use contrastive_core::grad_cache::{InBatch, RowSlice};
use contrastive_core::loss::info_nce;
use contrastive_core::nn::{in_global_batch, InitScheme, ParamStore};
use contrastive_core::train::{ExtraState, Objective};
use contrastive_core::{Backbone, Error, Result};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

/// Which pooling SimCSE trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SimCsePooling {
    /// CLS through an MLP in training, bare CLS at inference (the paper's unsupervised setting).
    ClsMlp,
    /// CLS.
    Cls,
    /// Mean over tokens (sentence-transformers' models such as all-MiniLM-L6-v2).
    Mean,
}

/// SimCSE's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimCseConfig {
    /// Temperature (paper: 0.05).
    pub temperature: f64,
    /// Pooling.
    pub pooling: SimCsePooling,
}

impl Default for SimCseConfig {
    fn default() -> Self {
        Self { temperature: 0.05, pooling: SimCsePooling::ClsMlp }
    }
}

/// The SimCSE objective: a BERT (variables named as Hugging Face names them) and,
/// with CLS + MLP pooling, the MLP (`mlp.dense.*`).
pub struct SimCse<B: Backbone<Input = TokenBatch> = PooledBert> {
    config: SimCseConfig,
    store: ParamStore,
    encoder: B,
    collective: Arc<dyn Collective>,
}

impl SimCse<PooledBert> {
    /// A SimCSE over a BERT of `bert_config`, initialised by `seed` (load pretrained weights into
    /// [`SimCse::params`] with `load_bert_weights`).
    pub fn new(config: SimCseConfig, bert_config: &BertConfig, seed: u64, device: &Device) -> Result<Self> {
        let pooling = config.pooling;
        Self::with_backbone(
            |vb| {
                let bert = Bert::new(bert_config, vb.clone(), seed)?;
                let pooling = match pooling {
                    SimCsePooling::ClsMlp => Pooling::cls_mlp(bert_config.hidden_size, vb.pp("mlp"))?,
                    SimCsePooling::Cls => Pooling::Cls,
                    SimCsePooling::Mean => Pooling::Mean,
                };
                Ok(PooledBert { bert, pooling })
            },
            config,
            seed,
            device,
        )
    }

    /// The encoder.
    pub fn bert(&self) -> &Bert {
        &self.encoder.bert
    }

    /// The trained BERT and its variables (for a [`crate::SentenceEncoder`]).
    pub fn into_parts(self) -> (Bert, ParamStore) {
        (self.encoder.bert, self.store)
    }
}

impl<B: Backbone<Input = TokenBatch>> SimCse<B> {
    /// SimCSE on any sentence backbone: `build` makes it under the store's root `VarBuilder`
    /// (a BERT keeps the Hub's variable names), initialised with BERT's N(0, 0.02) by `seed`.
    /// `config.pooling` is the default encoder's; a backbone of its own pools as it likes.
    pub fn with_backbone(
        build: impl FnOnce(candle_nn::VarBuilder) -> Result<B>,
        config: SimCseConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        if !(config.temperature > 0.0 && config.temperature.is_finite()) {
            return Err(Error::config("simcse.temperature", format!("must be positive, got {}", config.temperature)));
        }
        let store = ParamStore::new(seed, InitScheme::Normal { std: 0.02 });
        let encoder = build(store.var_builder(DType::F32, device))?;
        Ok(Self { config, store, encoder, collective: Arc::new(Local) })
    }

    /// Contrasts over the global batch of `collective`'s processes: each process pads its
    /// sentences to the longest of the global batch, draws its dropout masks as one process with
    /// the whole global batch would (`in_global_batch`), and every process's anchors meet every
    /// process's positives and hard negatives, while each back-propagates into its own. Pair it
    /// with [`Trainer::with_collective`](contrastive_core::train::Trainer::with_collective) on the
    /// same collective and a loader's [`Shard`](contrastive_core::data::Shard).
    pub fn with_collective(mut self, collective: Arc<dyn Collective>) -> Self {
        self.collective = collective;
        self
    }

    /// The sentence backbone.
    pub fn encoder(&self) -> &B {
        &self.encoder
    }

    /// Sentence vectors of a token batch.
    pub fn embed(&self, tokens: &TokenBatch, train: bool) -> candle_core::Result<Tensor> {
        self.encoder.encode(tokens, train)
    }

    /// This process's vectors of rows `rows` by `encode` (in training mode): anchors, positives
    /// (the anchors again through fresh dropout, or the entailments) and, when the batch has
    /// them, hard negatives, embedded in the order a single process embeds the global batch, so
    /// that the dropout streams agree.
    fn embed_rows_in(
        &self,
        batch: &SentenceBatch,
        rows: Range<usize>,
        encode: impl Fn(&TokenBatch) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Vec<Tensor>> {
        let c = self.collective.as_ref();
        let part = |tokens: &TokenBatch| -> candle_core::Result<Tensor> {
            let (tokens, global) = tokens.in_global_batch(c).map_err(candle_core::Error::wrap)?;
            let chunk = tokens.slice_rows(rows.clone()).map_err(candle_core::Error::wrap)?;
            let window = GlobalRows { first: global.first + rows.start, rows: rows.len(), total: global.total };
            in_global_batch(window, || encode(&chunk))
        };
        let mut out = vec![part(&batch.anchors)?, part(batch.positives.as_ref().unwrap_or(&batch.anchors))?];
        if let Some(n) = &batch.hard_negatives {
            out.push(part(n)?);
        }
        Ok(out)
    }
}

/// Gradient caching ([`GradCache`](contrastive_core::grad_cache::GradCache)): each chunk of
/// sentences is padded to the global batch's longest and draws the dropout masks of its rows of
/// the global batch, so the cached gradient is the full batch's.
impl<B: Backbone<Input = TokenBatch>> InBatch for SimCse<B> {
    fn rows(&self, batch: &SentenceBatch) -> Result<usize> {
        Ok(batch.anchors.ids.dim(0)?)
    }

    /// The vectors of rows `rows` of every role (`embed_rows_in`).
    fn embed_rows(&self, batch: &SentenceBatch, rows: Range<usize>) -> candle_core::Result<Vec<Tensor>> {
        self.embed_rows_in(batch, rows, |tokens| self.encoder.encode(tokens, true))
    }

    /// The same vectors, each BERT layer's activations freed as the next is computed.
    fn embed_rows_without_graph(&self, batch: &SentenceBatch, rows: Range<usize>) -> candle_core::Result<Vec<Tensor>> {
        self.embed_rows_in(batch, rows, |tokens| self.encoder.encode_without_graph(tokens, true))
    }

    /// InfoNCE of every process's anchors against every process's positives and hard negatives.
    fn loss_of_embeddings(&self, _batch: &SentenceBatch, embeddings: &[Tensor]) -> candle_core::Result<Tensor> {
        let c = self.collective.as_ref();
        let gathered: Vec<Tensor> = embeddings
            .iter()
            .map(|e| gather_rows(e, c).map_err(candle_core::Error::wrap))
            .collect::<candle_core::Result<_>>()?;
        match gathered.as_slice() {
            [anchors, positives] => info_nce(anchors, positives, None, self.config.temperature),
            [anchors, positives, negatives] => info_nce(anchors, positives, Some(negatives), self.config.temperature),
            other => {
                candle_core::bail!("SimCSE: 2 or 3 embeddings (anchors, positives, negatives), got {}", other.len())
            }
        }
    }
}

impl<B: Backbone<Input = TokenBatch>> Objective for SimCse<B> {
    type Batch = SentenceBatch;

    fn loss(&mut self, batch: &SentenceBatch) -> candle_core::Result<Tensor> {
        let rows = self.rows(batch).map_err(candle_core::Error::wrap)?;
        let embeddings = self.embed_rows(batch, 0..rows)?;
        self.loss_of_embeddings(batch, &embeddings)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    /// The (fixed) temperature, logged with each step beside the learnt ones of other methods.
    fn step_figures(&self) -> candle_core::Result<Vec<(&'static str, f64)>> {
        Ok(vec![("temperature", self.config.temperature)])
    }

    fn extra_state(&self) -> Result<ExtraState> {
        self.encoder.extra_state()
    }

    fn load_extra_state(&mut self, state: ExtraState) -> Result<()> {
        self.encoder.load_extra_state(state)
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "method": "simcse", "simcse": self.config, "bert": self.encoder.describe() })
    }
}
