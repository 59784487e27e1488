//! MoCo's memory queue of detached keys (He et al. 2020, arXiv:1911.05722).

use candle_core::{bail, Result, Tensor};

/// A first-in first-out queue of at most `capacity` keys of width `dim`, optionally with labels.
///
/// Keys are detached on the way in (no gradient flows into the queue). Once full, each enqueue
/// drops the oldest keys, as MoCo's ring buffer does. Unlike MoCo, the queue starts empty rather
/// than filled with random vectors, so early steps contrast against fewer, real keys.
#[derive(Clone, Debug)]
pub struct MemoryQueue {
    capacity: usize,
    dim: usize,
    /// (len, dim), oldest first; `None` until the first enqueue fixes dtype and device.
    keys: Option<Tensor>,
    labels: Option<Vec<i64>>,
}

impl MemoryQueue {
    /// An empty queue of unlabelled keys.
    pub fn new(capacity: usize, dim: usize) -> Result<Self> {
        if capacity == 0 || dim == 0 {
            bail!("MemoryQueue: capacity ({capacity}) and dim ({dim}) must be positive");
        }
        Ok(Self { capacity, dim, keys: None, labels: None })
    }

    /// An empty queue whose keys carry labels (for supervised losses or false-negative removal).
    pub fn labeled(capacity: usize, dim: usize) -> Result<Self> {
        Ok(Self { labels: Some(Vec::new()), ..Self::new(capacity, dim)? })
    }

    /// Maximum number of keys held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Width of a key.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of keys held now.
    pub fn len(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| k.dims()[0])
    }

    /// Whether the queue holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys, oldest first, as a (len, dim) tensor; `None` while empty.
    pub fn keys(&self) -> Option<&Tensor> {
        self.keys.as_ref()
    }

    /// The labels of the keys, oldest first; `None` for an unlabelled queue.
    pub fn labels(&self) -> Option<&[i64]> {
        self.labels.as_deref()
    }

    /// Appends a batch of keys (B, dim) to an unlabelled queue.
    pub fn enqueue(&mut self, keys: &Tensor) -> Result<()> {
        if self.labels.is_some() {
            bail!("MemoryQueue: this queue is labelled; use enqueue_labeled");
        }
        self.push(keys)
    }

    /// Appends a batch of keys (B, dim) with their B labels to a labelled queue.
    pub fn enqueue_labeled(&mut self, keys: &Tensor, labels: &[i64]) -> Result<()> {
        let Some(held) = self.labels.as_ref() else {
            bail!("MemoryQueue: this queue is unlabelled; use enqueue");
        };
        if keys.dims().first() != Some(&labels.len()) {
            bail!("MemoryQueue: {} labels for keys of shape {:?}", labels.len(), keys.dims());
        }
        let mut all = held.clone();
        all.extend_from_slice(labels);
        self.push(keys)?;
        let drop = all.len() - self.len();
        self.labels = Some(all.split_off(drop));
        Ok(())
    }

    fn push(&mut self, keys: &Tensor) -> Result<()> {
        let batch = match keys.dims() {
            [b, d] if *d == self.dim => *b,
            other => bail!("MemoryQueue: keys must be (B, {}), got shape {other:?}", self.dim),
        };
        let keys = keys.detach();
        let all = match &self.keys {
            None => keys,
            Some(held) => {
                if held.dtype() != keys.dtype() || !held.device().same_device(keys.device()) {
                    bail!(
                        "MemoryQueue: keys are {:?} on {:?}, the queue holds {:?} on {:?}",
                        keys.dtype(),
                        keys.device(),
                        held.dtype(),
                        held.device()
                    );
                }
                Tensor::cat(&[held, &keys], 0)?
            }
        };
        let total = self.len() + batch;
        let drop = total.saturating_sub(self.capacity);
        self.keys = Some(all.narrow(0, drop, total - drop)?.contiguous()?);
        Ok(())
    }
}
