//! # contrastive-text
//!
//! Contrastive learning on sentences.
//!
//! - [`Tokenizer`]: `tokenizer.json` or `vocab.txt`, truncation, padding per batch.
//! - [`Bert`]: a trainable BERT that loads Hugging Face weights ([`load_bert_weights`]), with
//!   real seeded dropout and a LayerNorm whose gradients flow.
//! - [`Pooling`]: CLS, CLS + MLP (training only), masked mean.
//! - [`SimCse`]: unsupervised (two dropout passes) and supervised (entailment positive,
//!   contradiction hard negative) SimCSE, an objective for the core `Trainer`.

mod bert;
mod config;
mod pooling;
mod simcse;
mod tokenizer;

pub use bert::{load_bert_weights, Bert};
pub use config::{Activation, BertConfig};
pub use pooling::Pooling;
pub use simcse::{CollateSentences, SentenceBatch, SimCse, SimCseConfig, SimCsePooling, Triple};
pub use tokenizer::{TokenBatch, Tokenizer};

// The README's example compiles as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
