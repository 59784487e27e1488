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
use contrastive_core::collective::{gather_rows, Collective, Local};
use contrastive_core::loss::info_nce;
use contrastive_core::nn::{in_global_batch, InitScheme, ParamStore};
use contrastive_core::train::{ExtraState, Objective};
use contrastive_core::{Backbone, Error, Result};
use serde::{Deserialize, Serialize};
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
}

impl<B: Backbone<Input = TokenBatch>> Objective for SimCse<B> {
    type Batch = SentenceBatch;

    fn loss(&mut self, batch: &SentenceBatch) -> candle_core::Result<Tensor> {
        // The global batch's vectors (this process's own when it runs alone), embedded in the
        // order a single process embeds them, so that the dropout streams agree.
        let global = |tokens: &TokenBatch| -> candle_core::Result<Tensor> {
            let c = self.collective.as_ref();
            let (tokens, rows) = tokens.in_global_batch(c).map_err(candle_core::Error::wrap)?;
            let z = in_global_batch(rows, || self.embed(&tokens, true))?;
            gather_rows(&z, c).map_err(candle_core::Error::wrap)
        };
        let anchors = global(&batch.anchors)?;
        let positives = global(batch.positives.as_ref().unwrap_or(&batch.anchors))?;
        let negatives = match &batch.hard_negatives {
            Some(n) => Some(global(n)?),
            None => None,
        };
        info_nce(&anchors, &positives, negatives.as_ref(), self.config.temperature)
    }

    fn params(&self) -> &ParamStore {
        &self.store
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
