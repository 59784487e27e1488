//! Sets too large for memory or for random access (a text dump of gigabytes, gzip files), read a
//! block at a time. The [`StreamLoader`] holds one window of blocks: each epoch it shuffles the
//! order of the blocks (of runs of blocks where they can only be read in order), reads them a
//! window at a time and shuffles the items within the window. Memory is bounded by the window,
//! whatever the size of the set, and the order is a function of the seed, the epoch and the block
//! sizes only, so a resume skips straight to its window without reading what came before.

use super::{distinct_batches, BatchSource, Batches, Collate, LoaderConfig, Shard, Views};
use crate::error::{Error, Result};
use crate::rng::{keyed_rng, sample_rng, shuffle_rng};
use rand::seq::SliceRandom;
use rayon::prelude::*;
use std::collections::{HashSet, VecDeque};
use std::ops::Range;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

/// A set read a block at a time: a range of lines of a text file, the next stretch of a gzip
/// stream. Block sizes are known up front (from an index built when the set is opened); item
/// `j` of block `b` is item `block_start(b) + j` of the set.
pub trait Blocks: Send + Sync {
    /// One item.
    type Item: Send;
    /// The number of items of each block, in block order.
    fn block_lens(&self) -> &[usize];
    /// Runs of consecutive blocks that can only be read in order (the blocks of one gzip file):
    /// the loader shuffles runs, not their blocks. Default: every block may be read on its own.
    fn runs(&self) -> Vec<Range<usize>> {
        (0..self.block_lens().len()).map(|b| b..b + 1).collect()
    }
    /// The items of `block`, in order.
    fn read_block(&self, block: usize) -> Result<Vec<Self::Item>>;
}

/// A key per item; items with equal keys are kept out of one batch.
type KeyFn<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// Batches of each item's views from a [`Blocks`] set, in bounded memory: `window` items at
/// most are held for shuffling (besides the batch being made and the one prefetched). Item `i`
/// in epoch `e` draws its views from `sample_rng(seed, e, i)`, as with the [`Loader`](super::Loader),
/// so batches do not depend on the thread count.
pub struct StreamLoader<B: Blocks, V, C> {
    inner: Arc<Inner<B, V, C>>,
    /// Batches made ahead of the consumer.
    prefetch: usize,
}

struct Inner<B: Blocks, V, C> {
    blocks: B,
    /// The first item of each block.
    starts: Vec<usize>,
    len: usize,
    views: V,
    collate: C,
    config: LoaderConfig,
    window: usize,
    pool: rayon::ThreadPool,
    keys: Option<KeyFn<B::Item>>,
    /// This process's part of each global batch.
    shard: Shard,
}

impl<B, V, C> StreamLoader<B, V, C>
where
    B: Blocks + 'static,
    V: Views<B::Item> + 'static,
    C: Collate<V::Out> + 'static,
{
    /// A loader over `blocks` that shuffles within windows of at least `window` items (whole
    /// blocks: a window ends with the block that reaches `window`). A larger window mixes
    /// better and holds more in memory.
    pub fn new(blocks: B, views: V, collate: C, config: LoaderConfig, window: usize) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::config("loader.batch_size", "must be at least 1"));
        }
        if window == 0 {
            return Err(Error::config("loader.window", "must be at least 1 item"));
        }
        let mut starts = Vec::with_capacity(blocks.block_lens().len());
        let mut len = 0usize;
        for &n in blocks.block_lens() {
            starts.push(len);
            len += n;
        }
        if config.drop_last && len < config.batch_size {
            return Err(Error::config(
                "loader.batch_size",
                format!(
                    "{} is larger than the set ({len} items) and drop_last is on: no batch would be made",
                    config.batch_size
                ),
            ));
        }
        let runs = blocks.runs();
        let covered: usize = runs.iter().map(|r| r.len()).sum();
        if covered != starts.len() || runs.iter().enumerate().any(|(i, r)| i > 0 && r.start != runs[i - 1].end) {
            return Err(Error::config("blocks.runs", "the runs must cover every block once, in order"));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("stream-{i}"))
            .build()
            .map_err(|e| Error::config("loader.threads", e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                blocks,
                starts,
                len,
                views,
                collate,
                config,
                window,
                pool,
                keys: None,
                shard: Shard::WHOLE,
            }),
            prefetch: 1,
        })
    }

    /// Keeps items with equal `key` (the same sentence: a copy of the positive must not be an
    /// in-batch negative) out of one batch: an item whose key the batch already holds waits for
    /// the next batch, which takes waiting items first. Every item still comes once per epoch;
    /// only the last batch of an epoch can hold a repeat, when nothing else is left.
    pub fn with_distinct_keys(mut self, key: impl Fn(&B::Item) -> u64 + Send + Sync + 'static) -> Result<Self> {
        let inner = Arc::get_mut(&mut self.inner)
            .ok_or_else(|| Error::config("loader.distinct_keys", "set them before the first epoch starts"))?;
        inner.keys = Some(Arc::new(key));
        Ok(self)
    }

    /// Makes this loader one process's share of a data-parallel run: the windows and the order
    /// within them are those of a single process with batches of `batch_size x world_size` (the
    /// global batch, copies of a key kept out of it), and batch `b` of rank `r` is the `r`-th
    /// `batch_size` items of global batch `b`. Every process reads every window (memory is still
    /// one window) and makes only its own share's views. Needs `drop_last` with several processes.
    pub fn with_shard(mut self, shard: Shard) -> Result<Self> {
        shard.check(self.inner.len, self.inner.config.batch_size, self.inner.config.drop_last)?;
        let inner = Arc::get_mut(&mut self.inner)
            .ok_or_else(|| Error::config("loader.shard", "set it before the first epoch starts"))?;
        inner.shard = shard;
        Ok(self)
    }

    /// This loader's share of the global batches.
    pub fn shard(&self) -> Shard {
        self.inner.shard
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

    /// The set it reads.
    pub fn blocks(&self) -> &B {
        &self.inner.blocks
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.inner.len
    }

    /// Whether the set has no item.
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// The blocks of each window of `epoch`, in reading order.
    pub fn windows(&self, epoch: usize) -> Vec<Vec<usize>> {
        self.inner.windows(epoch)
    }

    /// The batches of `epoch` from batch `start` on, made ahead on a background thread
    /// ([`Self::with_prefetch`]).
    pub fn epoch_from(&self, epoch: usize, start: usize) -> Batches<C::Batch> {
        let (tx, rx) = sync_channel(self.prefetch);
        let inner = Arc::clone(&self.inner);
        let batches = self.batches_per_epoch();
        std::thread::spawn(move || {
            let mut send = |batch: Result<C::Batch>| tx.send(batch).is_ok();
            if let Err(e) = inner.run_epoch(epoch, start, batches, &mut send) {
                // The receiver may be gone: the epoch was abandoned.
                let _ = tx.send(Err(e));
            }
        });
        Batches { rx }
    }

    /// Batches per epoch (global batches: each process takes its share of every one).
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.inner.len, self.inner.config.batch_size * self.inner.shard.world_size);
        if self.inner.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }
}

impl<B, V, C> Inner<B, V, C>
where
    B: Blocks,
    V: Views<B::Item>,
    C: Collate<V::Out>,
{
    fn windows(&self, epoch: usize) -> Vec<Vec<usize>> {
        let mut runs = self.blocks.runs();
        if self.config.shuffle {
            runs.shuffle(&mut shuffle_rng(self.config.seed, epoch));
        }
        let lens = self.blocks.block_lens();
        let mut windows = vec![];
        let (mut current, mut held) = (Vec::new(), 0usize);
        for block in runs.into_iter().flatten() {
            current.push(block);
            held += lens[block];
            if held >= self.window {
                windows.push(std::mem::take(&mut current));
                held = 0;
            }
        }
        if !current.is_empty() {
            windows.push(current);
        }
        windows
    }

    /// Reads, shuffles and batches `epoch`, handing batch `start` and later to `send` (which says
    /// whether to go on). Without keys, windows before the start are not read.
    fn run_epoch(
        &self,
        epoch: usize,
        start: usize,
        batches: usize,
        send: &mut dyn FnMut(Result<C::Batch>) -> bool,
    ) -> Result<()> {
        // Batches are made global and cut into the processes' shares as they are sent.
        let shard = self.shard;
        let b_size = self.config.batch_size * shard.world_size;
        let skip_items = if self.keys.is_none() { start * b_size } else { 0 };
        let lens = self.blocks.block_lens();
        let mut assembler = Assembler::new(b_size, self.keys.clone());
        let mut position = 0usize;
        let mut made = 0usize;
        let mut emit = |batch: Vec<(usize, B::Item)>, made: &mut usize| -> bool {
            let k = *made;
            *made += 1;
            if k >= batches {
                return false;
            }
            if k < start {
                return true;
            }
            let share = self.config.batch_size;
            let mine = batch.into_iter().skip(shard.rank * share).take(share).collect();
            send(self.make_batch(epoch, mine))
        };
        for (w, window) in self.windows(epoch).into_iter().enumerate() {
            let n: usize = window.iter().map(|&b| lens[b]).sum();
            if position + n <= skip_items {
                position += n;
                made = position / b_size;
                continue;
            }
            let items = self.read_window(&window)?;
            let mut order: Vec<usize> = (0..items.len()).collect();
            if self.config.shuffle {
                order.shuffle(&mut keyed_rng(self.config.seed, &[4, epoch as u64, w as u64]));
            }
            if let Some(key) = &self.keys {
                // Copies inside the window spread out first, as the in-memory loader does; the
                // assembler holds back what still meets across a batch boundary.
                let keys: Vec<u64> = items.iter().map(|(_, item)| key(item)).collect();
                order = distinct_batches(&order, &keys, b_size);
            }
            let mut slots: Vec<Option<(usize, B::Item)>> = items.into_iter().map(Some).collect();
            for p in order {
                let Some(item) = slots[p].take() else { continue };
                if position < skip_items {
                    position += 1;
                    made = position / b_size;
                    continue;
                }
                position += 1;
                if let Some(batch) = assembler.push(item) {
                    if !emit(batch, &mut made) {
                        return Ok(());
                    }
                }
            }
        }
        for batch in assembler.finish() {
            if batch.len() < b_size && self.config.drop_last {
                break;
            }
            if !emit(batch, &mut made) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The items of a window's blocks with their set indices, blocks read in parallel.
    fn read_window(&self, window: &[usize]) -> Result<Vec<(usize, B::Item)>> {
        let lens = self.blocks.block_lens();
        let parts: Vec<Vec<B::Item>> =
            self.pool.install(|| window.par_iter().map(|&b| self.blocks.read_block(b)).collect::<Result<_>>())?;
        let mut items = Vec::with_capacity(window.iter().map(|&b| lens[b]).sum());
        for (&b, part) in window.iter().zip(parts) {
            if part.len() != lens[b] {
                return Err(Error::shape(
                    format!("block {b}"),
                    format!("({},) items as indexed", lens[b]),
                    &[part.len()],
                ));
            }
            items.extend(part.into_iter().enumerate().map(|(j, item)| (self.starts[b] + j, item)));
        }
        Ok(items)
    }

    fn make_batch(&self, epoch: usize, items: Vec<(usize, B::Item)>) -> Result<C::Batch> {
        let seed = self.config.seed;
        let samples: Result<Vec<V::Out>> = self.pool.install(|| {
            items
                .into_par_iter()
                .map(|(index, item)| self.views.views(index, item, &mut sample_rng(seed, epoch, index)))
                .collect()
        });
        self.collate.collate(samples?)
    }
}

/// Fills batches in order, holding back an item whose key the batch already has.
struct Assembler<T> {
    size: usize,
    keys: Option<KeyFn<T>>,
    batch: Vec<(usize, T)>,
    in_batch: HashSet<u64>,
    waiting: VecDeque<(usize, T)>,
}

impl<T> Assembler<T> {
    fn new(size: usize, keys: Option<KeyFn<T>>) -> Self {
        Self { size, keys, batch: Vec::with_capacity(size), in_batch: HashSet::new(), waiting: VecDeque::new() }
    }

    /// Adds an item; returns a batch when one is full.
    fn push(&mut self, item: (usize, T)) -> Option<Vec<(usize, T)>> {
        match &self.keys {
            None => self.batch.push(item),
            Some(key) => {
                if self.in_batch.insert(key(&item.1)) {
                    self.batch.push(item);
                } else {
                    self.waiting.push_back(item);
                }
            }
        }
        if self.batch.len() < self.size {
            return None;
        }
        let full = std::mem::replace(&mut self.batch, Vec::with_capacity(self.size));
        self.in_batch.clear();
        // The next batch takes the waiting items first (those that still repeat wait on).
        for _ in 0..self.waiting.len() {
            if self.batch.len() == self.size {
                break;
            }
            if let Some(item) = self.waiting.pop_front() {
                let fresh = self.keys.as_ref().is_none_or(|key| self.in_batch.insert(key(&item.1)));
                if fresh {
                    self.batch.push(item);
                } else {
                    self.waiting.push_back(item);
                }
            }
        }
        Some(full)
    }

    /// The last batches of an epoch from what is being filled and whatever waits: distinct keys
    /// while there are any, repeats only to fill a batch when nothing else is left.
    fn finish(mut self) -> Vec<Vec<(usize, T)>> {
        let mut out = Vec::new();
        let mut rest: VecDeque<(usize, T)> = self.batch.drain(..).collect();
        rest.extend(self.waiting.drain(..));
        while !rest.is_empty() {
            let (mut batch, mut seen, mut left) = (Vec::with_capacity(self.size), HashSet::new(), VecDeque::new());
            while let Some(item) = rest.pop_front() {
                let fresh = batch.len() < self.size && self.keys.as_ref().is_none_or(|key| seen.insert(key(&item.1)));
                if fresh {
                    batch.push(item);
                } else {
                    left.push_back(item);
                }
            }
            while batch.len() < self.size {
                let Some(item) = left.pop_front() else { break };
                batch.push(item);
            }
            out.push(batch);
            rest = left;
        }
        out
    }
}

impl<B, V, C> BatchSource for StreamLoader<B, V, C>
where
    B: Blocks + 'static,
    V: Views<B::Item> + 'static,
    C: Collate<V::Out> + 'static,
{
    type Batch = C::Batch;
    fn batches_per_epoch(&self) -> usize {
        StreamLoader::batches_per_epoch(self)
    }
    fn batch_len(&self, batch: usize) -> usize {
        let (n, b) = (self.inner.len, self.inner.config.batch_size);
        b.min(n.saturating_sub(batch * b))
    }
    fn batch_size(&self) -> usize {
        self.inner.config.batch_size
    }
    fn seed(&self) -> u64 {
        self.inner.config.seed
    }
    fn epoch_from(&self, epoch: usize, start: usize) -> impl Iterator<Item = Result<C::Batch>> {
        StreamLoader::epoch_from(self, epoch, start)
    }
}
