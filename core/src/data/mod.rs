//! Datasets, the views of a sample, collation, the loader that shuffles, makes each sample's
//! views in parallel and prepares the next batch while the current step runs, and
//! [`BatchSource`], what the `Trainer` draws batches from.

mod split;
mod stream;
mod views;

pub use split::{stratified_folds, stratified_split, stratified_subset};
pub use stream::{Blocks, StreamLoader};
pub use views::{CropSet, MultiCrop, TwoViews, ViewPair, Views};

use crate::augment::Augment;
use crate::error::{Error, Result};
use crate::rng::{sample_rng, shuffle_rng};
use rand::seq::SliceRandom;
use rayon::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

/// Indexable samples.
pub trait Dataset: Send + Sync {
    /// One sample.
    type Item: Send;
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether there is no sample.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sample `index` (< len).
    fn get(&self, index: usize) -> Result<Self::Item>;
}

impl<T: Clone + Send + Sync> Dataset for [T] {
    type Item = T;
    fn len(&self) -> usize {
        <[T]>::len(self)
    }
    fn get(&self, index: usize) -> Result<T> {
        <[T]>::get(self, index).cloned().ok_or_else(|| Error::index("dataset", index, <[T]>::len(self)))
    }
}

impl<T: Clone + Send + Sync> Dataset for Vec<T> {
    type Item = T;
    fn len(&self) -> usize {
        <[T]>::len(self)
    }
    fn get(&self, index: usize) -> Result<T> {
        Dataset::get(self.as_slice(), index)
    }
}

/// Turns the views of one batch's samples (`S`: a [`ViewPair`], a [`CropSet`], ...) into what an
/// objective consumes (usually tensors).
pub trait Collate<S>: Send + Sync {
    /// The batch type.
    type Batch: Send;
    /// Builds a batch from its samples' views, in order.
    fn collate(&self, samples: Vec<S>) -> Result<Self::Batch>;
}

impl<S, B: Send, F> Collate<S> for F
where
    F: Fn(Vec<S>) -> Result<B> + Send + Sync,
{
    type Batch = B;
    fn collate(&self, samples: Vec<S>) -> Result<B> {
        self(samples)
    }
}

/// What the `Trainer` draws batches from: a fixed number of batches per epoch, and batch `b` of
/// epoch `e` the same every time it is asked for (which makes resuming exact). [`Loader`] is one;
/// a method whose batches come from elsewhere (pairs of modalities from two stores, a stream with
/// its own index) implements it.
pub trait BatchSource {
    /// What one batch is.
    type Batch;
    /// Batches in one epoch.
    fn batches_per_epoch(&self) -> usize;
    /// Samples in batch `batch` of an epoch (the throughput and `samples_seen` count them).
    fn batch_len(&self, batch: usize) -> usize;
    /// The nominal batch size, recorded in checkpoints: a resume with another one is refused.
    fn batch_size(&self) -> usize;
    /// The seed of the order and the randomness, recorded in checkpoints like the batch size.
    fn seed(&self) -> u64;
    /// The batches of `epoch` from batch `start` on.
    fn epoch_from(&self, epoch: usize, start: usize) -> impl Iterator<Item = Result<Self::Batch>>;
}

/// How the loader batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Seed of the shuffle and of every sample's augmentation stream.
    pub seed: u64,
    /// Shuffle each epoch (by seed and epoch).
    pub shuffle: bool,
    /// Drop the last batch if it is short (contrastive losses want full batches).
    pub drop_last: bool,
    /// Threads that augment (0: the number of CPUs).
    pub threads: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self { batch_size: 256, seed: 0, shuffle: true, drop_last: true, threads: 0 }
    }
}

/// Yields batches of each sample's views: two by one augmentation ([`Loader::new`]) or any
/// [`Views`] ([`Loader::with_views`], multi-crop say). Sample `i` in epoch `e` draws its views
/// from its own stream `sample_rng(seed, e, i)`, so the batches are the same whatever the thread
/// count.
pub struct Loader<D: Dataset, V, C> {
    inner: Arc<Inner<D, V, C>>,
    /// Batches made ahead of the consumer.
    prefetch: usize,
}

/// Which part of every global batch a process trains on: its rank and the number of processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This process's rank, from 0.
    pub rank: usize,
    /// The number of processes.
    pub world_size: usize,
}

impl Shard {
    /// A process alone: the whole batch.
    pub const WHOLE: Shard = Shard { rank: 0, world_size: 1 };

    /// Refuses a shard a loader of `n` samples in batches of `b` per process cannot serve.
    fn check(self, n: usize, b: usize, drop_last: bool) -> Result<()> {
        if self.world_size == 0 || self.rank >= self.world_size {
            return Err(Error::config("loader.shard", format!("rank {} of a world of {}", self.rank, self.world_size)));
        }
        if self.world_size > 1 && !drop_last {
            return Err(Error::config(
                "loader.drop_last",
                "must be on for several processes: each takes a full share of every global batch",
            ));
        }
        if self.world_size > 1 && n < b * self.world_size {
            return Err(Error::config(
                "loader.batch_size",
                format!(
                    "{b} per process x {} processes is larger than the dataset ({n} samples): no global batch would be made",
                    self.world_size
                ),
            ));
        }
        Ok(())
    }
}

struct Inner<D, V, C> {
    dataset: D,
    views: V,
    collate: C,
    config: LoaderConfig,
    pool: rayon::ThreadPool,
    /// A key per sample; samples with equal keys are kept out of one batch.
    distinct_keys: Option<Vec<u64>>,
    /// This process's part of each global batch.
    shard: Shard,
}

impl<D, A, C> Loader<D, TwoViews<A>, C>
where
    D: Dataset + 'static,
    A: Augment<D::Item> + 'static,
    C: Collate<ViewPair<D::Item>> + 'static,
    D::Item: Clone,
{
    /// A loader of two views per sample, both by `augment`.
    pub fn new(dataset: D, augment: A, collate: C, config: LoaderConfig) -> Result<Self> {
        Self::with_views(dataset, TwoViews(augment), collate, config)
    }
}

impl<D, V, C> Loader<D, V, C>
where
    D: Dataset + 'static,
    V: Views<D::Item> + 'static,
    C: Collate<V::Out> + 'static,
{
    /// A loader whose samples become their views by `views`.
    pub fn with_views(dataset: D, views: V, collate: C, config: LoaderConfig) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::config("loader.batch_size", "must be at least 1"));
        }
        if config.drop_last && dataset.len() < config.batch_size {
            return Err(Error::config(
                "loader.batch_size",
                format!(
                    "{} is larger than the dataset ({} samples) and drop_last is on: no batch would be made",
                    config.batch_size,
                    dataset.len()
                ),
            ));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("loader-{i}"))
            .build()
            .map_err(|e| Error::config("loader.threads", e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner { dataset, views, collate, config, pool, distinct_keys: None, shard: Shard::WHOLE }),
            prefetch: 1,
        })
    }

    /// Keeps samples with equal keys (the same sentence, say: in-batch negatives must not be
    /// copies of the positive) out of one batch: each epoch's shuffled order is rearranged so
    /// that every batch takes one sample of each of the keys with the most samples left. Every
    /// sample still appears once per epoch, and batches are full of distinct keys whenever the
    /// counts allow it. `keys` has one entry per sample.
    pub fn with_distinct_keys(mut self, keys: Vec<u64>) -> Result<Self> {
        let n = self.inner.dataset.len();
        if keys.len() != n {
            return Err(Error::config("loader.distinct_keys", format!("{} keys for {n} samples", keys.len())));
        }
        let inner = Arc::get_mut(&mut self.inner)
            .ok_or_else(|| Error::config("loader.distinct_keys", "set them before the first epoch starts"))?;
        inner.distinct_keys = Some(keys);
        Ok(self)
    }

    /// Prepares up to `depth` batches ahead of the one the step consumes (default 1): more
    /// smooths out slow batches (large files, a busy disk) at the cost of their memory. Batches
    /// are the same whatever the depth.
    pub fn with_prefetch(mut self, depth: usize) -> Result<Self> {
        if depth == 0 {
            return Err(Error::config("loader.prefetch", "must be at least 1 batch"));
        }
        self.prefetch = depth;
        Ok(self)
    }

    /// Makes this loader one process's share of a data-parallel run: the epoch's order is the
    /// one a single process would follow with batches of `batch_size x world_size` (the global
    /// batch, copies of a key kept out of it), and batch `b` of rank `r` is the `r`-th
    /// `batch_size` samples of global batch `b`. Augmentations are keyed by the sample, so the
    /// views are those of the single process. Needs `drop_last` when there are several processes
    /// (every process takes full batches).
    pub fn with_shard(mut self, shard: Shard) -> Result<Self> {
        shard.check(self.inner.dataset.len(), self.inner.config.batch_size, self.inner.config.drop_last)?;
        let inner = Arc::get_mut(&mut self.inner)
            .ok_or_else(|| Error::config("loader.shard", "set it before the first epoch starts"))?;
        inner.shard = shard;
        Ok(self)
    }

    /// This loader's share of the global batches.
    pub fn shard(&self) -> Shard {
        self.inner.shard
    }

    /// Its configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.inner.config
    }

    /// Number of samples.
    pub fn dataset_len(&self) -> usize {
        self.inner.dataset.len()
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.inner.dataset.len(), self.inner.config.batch_size * self.inner.shard.world_size);
        if self.inner.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Samples in batch `batch` of an epoch (the last one may be short when drop_last is off).
    pub fn batch_len(&self, batch: usize) -> usize {
        let (n, b) = (self.inner.dataset.len(), self.inner.config.batch_size);
        b.min(n.saturating_sub(batch * b))
    }

    /// The sample order of an epoch.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.inner.dataset.len()).collect();
        if self.inner.config.shuffle {
            order.shuffle(&mut shuffle_rng(self.inner.config.seed, epoch));
        }
        match &self.inner.distinct_keys {
            Some(keys) => distinct_batches(&order, keys, self.inner.config.batch_size * self.inner.shard.world_size),
            None => order,
        }
    }

    /// The batches of `epoch` from batch `start` on, prepared ahead on a background thread
    /// ([`Self::with_prefetch`]).
    pub fn epoch_from(&self, epoch: usize, start: usize) -> Batches<C::Batch> {
        let order = self.order(epoch);
        let (tx, rx) = sync_channel(self.prefetch);
        let inner = Arc::clone(&self.inner);
        let batches = self.batches_per_epoch();
        std::thread::spawn(move || {
            let (b_size, shard) = (inner.config.batch_size, inner.shard);
            for b in start..batches {
                // This rank's share of global batch b (the whole batch for one process).
                let from = (b * shard.world_size + shard.rank) * b_size;
                let indices = &order[from..(from + b_size).min(order.len())];
                let batch = inner.make_batch(epoch, indices);
                // The receiver is gone: the epoch was abandoned.
                if tx.send(batch).is_err() {
                    return;
                }
            }
        });
        Batches { rx }
    }

    /// The batches of `epoch`.
    pub fn epoch(&self, epoch: usize) -> Batches<C::Batch> {
        self.epoch_from(epoch, 0)
    }
}

impl<D, V, C> BatchSource for Loader<D, V, C>
where
    D: Dataset + 'static,
    V: Views<D::Item> + 'static,
    C: Collate<V::Out> + 'static,
{
    type Batch = C::Batch;
    fn batches_per_epoch(&self) -> usize {
        Loader::batches_per_epoch(self)
    }
    fn batch_len(&self, batch: usize) -> usize {
        Loader::batch_len(self, batch)
    }
    fn batch_size(&self) -> usize {
        self.inner.config.batch_size
    }
    fn seed(&self) -> u64 {
        self.inner.config.seed
    }
    fn epoch_from(&self, epoch: usize, start: usize) -> impl Iterator<Item = Result<C::Batch>> {
        Loader::epoch_from(self, epoch, start)
    }
}

impl<D, V, C> Inner<D, V, C>
where
    D: Dataset,
    V: Views<D::Item>,
    C: Collate<V::Out>,
{
    fn make_batch(&self, epoch: usize, indices: &[usize]) -> Result<C::Batch> {
        let seed = self.config.seed;
        let samples: Result<Vec<V::Out>> = self.pool.install(|| {
            indices
                .par_iter()
                .map(|&index| {
                    let item = self.dataset.get(index)?;
                    self.views.views(index, item, &mut sample_rng(seed, epoch, index))
                })
                .collect()
        });
        self.collate.collate(samples?)
    }
}

/// `order` rearranged so that no batch of `batch_size` holds two samples with one key: each batch
/// takes the next sample of each of the `batch_size` keys with the most samples left (ties: the
/// key whose next sample comes first in `order`). Taking the most repeated keys first keeps every
/// batch full of distinct keys whenever that is possible at all; samples without copies keep
/// their shuffled order.
fn distinct_batches(order: &[usize], keys: &[u64], batch_size: usize) -> Vec<usize> {
    let mut position = vec![0usize; keys.len()];
    let mut queues: Vec<std::collections::VecDeque<usize>> = Vec::new();
    let mut queue_of = std::collections::HashMap::new();
    for (p, &i) in order.iter().enumerate() {
        position[i] = p;
        let q = *queue_of.entry(keys[i]).or_insert_with(|| {
            queues.push(std::collections::VecDeque::new());
            queues.len() - 1
        });
        queues[q].push_back(i);
    }
    // A heap of the queues by (most samples left, earliest next sample): each batch pops the
    // first `batch_size`, so an epoch costs n log n, not a sort of every queue per batch.
    let rank = |q: usize, queues: &[std::collections::VecDeque<usize>]| {
        (queues[q].len(), std::cmp::Reverse(position[queues[q][0]]), q)
    };
    let mut heap: std::collections::BinaryHeap<_> = (0..queues.len()).map(|q| rank(q, &queues)).collect();
    let mut out = Vec::with_capacity(order.len());
    let mut taken = Vec::with_capacity(batch_size.max(1));
    while !heap.is_empty() {
        taken.clear();
        while taken.len() < batch_size.max(1) {
            let Some((_, _, q)) = heap.pop() else { break };
            taken.push(q);
        }
        for &q in &taken {
            out.extend(queues[q].pop_front());
        }
        for &q in &taken {
            if !queues[q].is_empty() {
                heap.push(rank(q, &queues));
            }
        }
    }
    out
}

/// The batches of one epoch, in order.
pub struct Batches<B> {
    rx: Receiver<Result<B>>,
}

impl<B> Iterator for Batches<B> {
    type Item = Result<B>;
    fn next(&mut self) -> Option<Result<B>> {
        self.rx.recv().ok()
    }
}
