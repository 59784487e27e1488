//! BERT's `config.json`, as Hugging Face writes it.

use contrastive_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The feed-forward activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// GELU with erf (BERT's `gelu`).
    #[serde(rename = "gelu")]
    Gelu,
    /// GELU with the tanh approximation.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluTanh,
    /// ReLU.
    #[serde(rename = "relu")]
    Relu,
}

/// The encoder family a `config.json` describes (its `model_type`), where the families differ:
/// how positions are numbered and what an export declares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelType {
    /// BERT, and models of its architecture (MiniLM): positions 0, 1, 2, ...
    #[default]
    #[serde(rename = "bert")]
    Bert,
    /// RoBERTa: positions numbered from the padding id + 1 (padding at the padding id), as
    /// fairseq numbers them; no token types to speak of.
    #[serde(rename = "roberta")]
    Roberta,
    /// XLM-RoBERTa (multilingual-e5, bge-m3, paraphrase-multilingual-*): RoBERTa's encoder.
    #[serde(rename = "xlm-roberta")]
    XlmRoberta,
    /// MPNet (all-mpnet-base-v2): RoBERTa's positions, no token types, and a learnt relative
    /// position bias on every layer's attention scores (T5's buckets).
    #[serde(rename = "mpnet")]
    Mpnet,
}

impl ModelType {
    /// Whether positions are numbered after the padding id (RoBERTa's numbering).
    pub fn positions_after_padding(self) -> bool {
        matches!(self, Self::Roberta | Self::XlmRoberta | Self::Mpnet)
    }

    /// Whether the model has token type (segment) embeddings (all but MPNet).
    pub fn has_token_types(self) -> bool {
        !matches!(self, Self::Mpnet)
    }

    /// The `architectures` entry of an exported `config.json`.
    pub fn architecture(self) -> &'static str {
        match self {
            Self::Bert => "BertModel",
            Self::Roberta => "RobertaModel",
            Self::XlmRoberta => "XLMRobertaModel",
            Self::Mpnet => "MPNetModel",
        }
    }
}

/// The fields of a BERT `config.json` this crate reads (others are ignored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads (must divide `hidden_size`).
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    pub hidden_act: Activation,
    /// Dropout on embeddings and hidden states.
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    pub attention_probs_dropout_prob: f64,
    /// Longest input in tokens.
    pub max_position_embeddings: usize,
    /// Token types (segments); MPNet's configs have none.
    #[serde(default)]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// The family (`bert` when absent, as in older BERT configs); another family (DeBERTa,
    /// ...) is refused by name.
    #[serde(default)]
    pub model_type: ModelType,
    /// The padding token's id: where RoBERTa's positions start (Hugging Face's default 0 for
    /// BERT, 1 for RoBERTa, when absent).
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// MPNet's relative position buckets (32 when absent; other families have none).
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
}

fn default_buckets() -> usize {
    MPNET_BUCKETS
}

/// The buckets MPNet's relative positions fall into: Hugging Face's MPNetEncoder computes them
/// with its default of 32 whatever `relative_attention_num_buckets` says (which sizes the table).
pub const MPNET_BUCKETS: usize = 32;

fn default_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// The shape of sentence-transformers' all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads,
    /// intermediate 1536, BERT's vocabulary, dropout 0.1): for benches and tests of that size.
    pub fn minilm_l6() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 384,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 1536,
            hidden_act: Activation::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            model_type: ModelType::Bert,
            pad_token_id: Some(0),
            relative_attention_num_buckets: 32,
        }
    }

    /// The padding id (`pad_token_id`, or the family's default: 0 for BERT, 1 for RoBERTa; always
    /// 1 for MPNet, whose Hugging Face embeddings fix it there).
    pub fn padding_id(&self) -> u32 {
        match self.model_type {
            ModelType::Mpnet => 1,
            t => self.pad_token_id.unwrap_or(if t.positions_after_padding() { 1 } else { 0 }),
        }
    }

    /// The positions a sequence of `len` tokens can use (RoBERTa's start after the padding id).
    pub fn max_tokens(&self) -> usize {
        match self.model_type.positions_after_padding() {
            true => self.max_position_embeddings.saturating_sub(self.padding_id() as usize + 1),
            false => self.max_position_embeddings,
        }
    }

    /// Reads and checks a `config.json`; errors name the file and the field.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: BertConfig = serde_json::from_str(&text)
            .map_err(|e| Error::Json { path: path.into(), message: format!("not a BERT config: {e}") })?;
        config.validate().map_err(|e| match e {
            Error::Config { field, message } => {
                Error::File { path: path.into(), line: None, field: Some(field), message }
            }
            other => other,
        })?;
        Ok(config)
    }

    /// Checks the sizes and probabilities.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", if self.model_type.has_token_types() { self.type_vocab_size } else { 1 }),
        ] {
            if v == 0 {
                return Err(Error::config(field, "must be positive"));
            }
        }
        if self.model_type == ModelType::Mpnet && self.relative_attention_num_buckets < MPNET_BUCKETS {
            return Err(Error::config(
                "relative_attention_num_buckets",
                format!(
                    "{}: MPNet numbers relative positions into {MPNET_BUCKETS} buckets whatever the config says",
                    self.relative_attention_num_buckets
                ),
            ));
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(Error::config(
                "num_attention_heads",
                format!("{} does not divide hidden_size {}", self.num_attention_heads, self.hidden_size),
            ));
        }
        for (field, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            ("attention_probs_dropout_prob", self.attention_probs_dropout_prob),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::config(field, format!("must be in [0, 1), got {p}")));
            }
        }
        Ok(())
    }
}
