//! Sentences to token batches for the loader: single sentences (unsupervised SimCSE) and
//! (anchor, entailment, contradiction) triples (supervised SimCSE).

use crate::data::TextCorpus;
use crate::tokenizer::{TokenBatch, Tokenizer};
use candle_core::Device;
use contrastive_core::augment::Identity;
use contrastive_core::data::{Collate, Loader, LoaderConfig, StreamLoader, TwoViews, ViewPair};
use contrastive_core::Result;
use std::hash::{DefaultHasher, Hash, Hasher};
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

/// Two views of each sentence for the methods without negatives (VICReg, Barlow Twins, BYOL,
/// SimSiam on text): the anchors and their positives, or the anchors twice (each pass through the
/// encoder draws its own dropout, SimCSE's augmentation).
impl contrastive_core::methods::ViewPairs for SentenceBatch {
    type View = TokenBatch;
    fn first(&self) -> &TokenBatch {
        &self.anchors
    }
    fn second(&self) -> &TokenBatch {
        self.positives.as_ref().unwrap_or(&self.anchors)
    }
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

/// The loader of unsupervised SimCSE: each sentence is its own positive (both views are the text
/// itself; dropout makes them differ), and copies of a sentence are kept out of one batch, so that
/// no sentence meets itself as an in-batch negative (`Loader::with_distinct_keys` on a hash of
/// the text).
pub fn sentence_loader(
    sentences: Vec<String>,
    collate: CollateSentences,
    config: LoaderConfig,
) -> Result<Loader<Vec<String>, TwoViews<Identity>, CollateSentences>> {
    let keys = sentences.iter().map(|s| sentence_key(s)).collect();
    Loader::new(sentences, Identity, collate, config)?.with_distinct_keys(keys)
}

/// [`sentence_loader`] for a corpus of any size: the sentences stream from `corpus` a window of
/// at least `window` sentences at a time (shuffled within the window, the blocks of the corpus
/// in a seeded order), copies of a sentence kept out of one batch. Memory holds one window,
/// whatever the corpus's size; tokenization runs beside the training step.
pub fn sentence_stream(
    corpus: TextCorpus,
    collate: CollateSentences,
    config: LoaderConfig,
    window: usize,
) -> Result<StreamLoader<TextCorpus, TwoViews<Identity>, CollateSentences>> {
    StreamLoader::new(corpus, TwoViews(Identity), collate, config, window)?
        .with_distinct_keys(|s: &String| sentence_key(s))
}

/// A sentence's key for keeping copies apart: SipHash with fixed keys, the same on every run and
/// machine.
fn sentence_key(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}
