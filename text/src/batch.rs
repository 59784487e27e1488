//! Sentences to token batches for the loader: single sentences (unsupervised SimCSE) and
//! (anchor, entailment, contradiction) triples (supervised SimCSE).

use crate::tokenizer::{TokenBatch, Tokenizer};
use candle_core::Device;
use contrastive_core::data::{Collate, ViewPair};
use contrastive_core::Result;
use std::sync::Arc;

/// A batch: the sentences, and for supervised SimCSE their entailments and contradictions.
#[derive(Clone, Debug)]
pub struct SentenceBatch {
    /// Anchor sentences.
    pub anchors: TokenBatch,
    /// Entailed sentences (supervised) or `None` (the anchors again, through fresh dropout).
    pub positives: Option<TokenBatch>,
    /// Contradicting sentences (supervised hard negatives).
    pub hard_negatives: Option<TokenBatch>,
}

/// Tokenizes sentences for the loader. The views of unsupervised SimCSE are the sentence itself
/// (the dropout makes the difference), so only the first view is used.
pub struct CollateSentences {
    /// The tokenizer.
    pub tokenizer: Arc<Tokenizer>,
    /// Where the tensors go.
    pub device: Device,
}

impl Collate<ViewPair<String>> for CollateSentences {
    type Batch = SentenceBatch;
    fn collate(&self, samples: Vec<ViewPair<String>>) -> Result<SentenceBatch> {
        let text: Vec<&str> = samples.iter().map(|s| s.first.as_str()).collect();
        Ok(SentenceBatch {
            anchors: self.tokenizer.encode(&text, &self.device)?,
            positives: None,
            hard_negatives: None,
        })
    }
}

/// An (anchor, entailment, contradiction) triple for supervised SimCSE.
pub type Triple = (String, String, String);

impl Collate<ViewPair<Triple>> for CollateSentences {
    type Batch = SentenceBatch;
    fn collate(&self, samples: Vec<ViewPair<Triple>>) -> Result<SentenceBatch> {
        let column = |f: fn(&Triple) -> &str| -> Vec<&str> { samples.iter().map(|s| f(&s.first)).collect() };
        Ok(SentenceBatch {
            anchors: self.tokenizer.encode(&column(|t| &t.0), &self.device)?,
            positives: Some(self.tokenizer.encode(&column(|t| &t.1), &self.device)?),
            hard_negatives: Some(self.tokenizer.encode(&column(|t| &t.2), &self.device)?),
        })
    }
}
