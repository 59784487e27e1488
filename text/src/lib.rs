//! # contrastive-text
//!
//! Contrastive learning on sentences.
//!
//! - [`Tokenizer`]: `tokenizer.json` or `vocab.txt`, truncation, padding per batch.
//! - [`Bert`]: a trainable BERT that loads Hugging Face weights ([`load_bert_weights`]), with
//!   real seeded dropout and a LayerNorm whose gradients flow.
//! - [`Pooling`]: CLS, CLS + MLP (training only), masked mean.

mod bert;
mod config;
mod pooling;
mod tokenizer;

pub use bert::{load_bert_weights, Bert};
pub use config::{Activation, BertConfig};
pub use pooling::Pooling;
pub use tokenizer::{TokenBatch, Tokenizer};

// The README's example compiles as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
