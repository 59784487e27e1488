//! # contrastive-text
//!
//! Contrastive learning on sentences.
//!
//! - Data: [`read_corpus`] (sentences from lines or documents), [`read_sts_tsv`], [`read_lee50`].
//! - [`Tokenizer`]: `tokenizer.json` or `vocab.txt`, truncation, padding per batch.
//! - [`Bert`]: a trainable BERT that loads Hugging Face weights ([`load_bert_weights`]), with
//!   real seeded dropout and a LayerNorm whose gradients flow.
//! - [`SentenceEncoder`]: sentences to vectors; loads and saves sentence-transformers folders.
//! - [`Pooling`]: CLS, CLS + MLP (training only), masked mean.
//! - [`PooledBert`]: a BERT and its pooling as one sentence `Backbone` (token batches in).
//! - [`SimCse`]: over any sentence `Backbone` ([`PooledBert`] by default), unsupervised (two dropout passes) and supervised (entailment positive,
//!   contradiction hard negative) SimCSE, an objective for the core `Trainer`.

mod batch;
mod bert;
mod config;
mod data;
mod pooled_bert;
mod pooling;
mod sentence_encoder;
mod simcse;
mod tokenizer;

pub use batch::{sentence_loader, sentence_stream, CollateSentences, SentenceBatch, Triple};
pub use bert::{load_bert_weights, relative_position_bucket, Bert};
pub use config::{Activation, BertConfig, ModelType, MPNET_BUCKETS};
pub use data::{
    read_corpus, read_lee50, read_sts_tsv, split_sentences, CorpusFormat, Lee50, LeftOut, TextCorpus, MAX_LINE_BYTES,
};
pub use pooled_bert::PooledBert;
pub use pooling::Pooling;
#[cfg(feature = "hub")]
pub use sentence_encoder::download_model_folder;
pub use sentence_encoder::{model_folder, SentenceEncoder, SentencePooling};
pub use simcse::{SimCse, SimCseConfig, SimCsePooling};
pub use tokenizer::{TokenBatch, Tokenizer};

// The README's example compiles as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
