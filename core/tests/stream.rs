//! The streaming loader: every item once per epoch in a seeded order that mixes blocks, memory
//! held to a window, runs read in order, resume from any batch equal to the uninterrupted epoch,
//! repeats kept out of a batch, and the same batches whatever the thread count.

use contrastive_core::augment::Augment;
use contrastive_core::data::{BatchSource, Blocks, LoaderConfig, Shard, StreamLoader, TwoViews, ViewPair};
use contrastive_core::Result;
use std::ops::Range;
use std::sync::Mutex;

/// Blocks of consecutive integers; `runs` groups them; every read is logged.
struct Numbers {
    lens: Vec<usize>,
    runs: Option<Vec<Range<usize>>>,
    reads: Mutex<Vec<usize>>,
    /// Item i is `i / repeat` (repeat > 1: copies of one value).
    repeat: usize,
}

impl Numbers {
    fn new(lens: Vec<usize>) -> Self {
        Self { lens, runs: None, reads: Mutex::new(Vec::new()), repeat: 1 }
    }
}

impl Blocks for Numbers {
    type Item = u64;
    fn block_lens(&self) -> &[usize] {
        &self.lens
    }
    fn runs(&self) -> Vec<Range<usize>> {
        self.runs.clone().unwrap_or_else(|| (0..self.lens.len()).map(|b| b..b + 1).collect())
    }
    fn read_block(&self, block: usize) -> Result<Vec<u64>> {
        self.reads.lock().unwrap().push(block);
        let start: usize = self.lens[..block].iter().sum();
        Ok((start..start + self.lens[block]).map(|i| (i / self.repeat) as u64).collect())
    }
}

/// Adds a random offset in [0, 1000) to each view (in multiples of 1000 so the item stays readable).
fn jitter() -> impl Augment<u64> {
    |x: u64, rng: &mut dyn rand::RngCore| Ok(x + 1_000_000 * (1 + rng.next_u64() % 1000))
}

type Batch = Vec<ViewPair<u64>>;

fn loader(
    blocks: Numbers,
    batch: usize,
    window: usize,
    threads: usize,
) -> StreamLoader<Numbers, TwoViews<impl Augment<u64>>, impl Fn(Batch) -> Result<Batch> + Send + Sync> {
    let config = LoaderConfig { batch_size: batch, seed: 9, shuffle: true, drop_last: false, threads };
    StreamLoader::new(blocks, TwoViews(jitter()), |b: Batch| Ok(b), config, window).unwrap()
}

fn epoch(l: &impl BatchSource<Batch = Batch>, e: usize, start: usize) -> Vec<Batch> {
    l.epoch_from(e, start).map(|b| b.unwrap()).collect()
}

fn indices(batches: &[Batch]) -> Vec<usize> {
    batches.iter().flatten().map(|v| v.index).collect()
}

#[test]
fn every_item_once_in_a_seeded_order_that_mixes_blocks_within_a_window() {
    // 40 blocks of 5 to 29 items (644 in all), windows of at least 60 items.
    let lens: Vec<usize> = (0..40).map(|b| 5 + (b * 7) % 25).collect();
    let total: usize = lens.iter().sum();
    let starts: Vec<usize> = lens
        .iter()
        .scan(0, |s, &n| {
            let a = *s;
            *s += n;
            Some(a)
        })
        .collect();
    let block_of = |i: usize| starts.iter().rposition(|&s| s <= i).unwrap();
    let l = loader(Numbers::new(lens.clone()), 32, 60, 2);
    assert_eq!((l.len(), l.batches_per_epoch()), (total, total.div_ceil(32)));
    let e0 = epoch(&l, 0, 0);
    let order = indices(&e0);
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..total).collect::<Vec<_>>(), "every item once");
    assert_ne!(order, indices(&epoch(&l, 1, 0)), "another epoch, another order");
    assert_eq!(order, indices(&epoch(&l, 0, 0)), "same seed and epoch, same order");
    // Blocks are shuffled: the first batch does not start with block 0's items in order.
    assert_ne!(&order[..5], &[0, 1, 2, 3, 4]);
    // Items are shuffled within their window, and no further: each window's items are a run of
    // the order, and a window holds at least 60 items (the last one may hold fewer) and less
    // than 60 plus one block.
    let windows = l.windows(0);
    let mut at = 0;
    for (w, blocks) in windows.iter().enumerate() {
        let n: usize = blocks.iter().map(|&b| lens[b]).sum();
        assert!(n < 60 + 29 && (n >= 60 || w == windows.len() - 1), "window {w} holds {n}");
        let mut got: Vec<usize> = order[at..at + n].iter().map(|&i| block_of(i)).collect();
        got.sort_unstable();
        got.dedup();
        let mut want = blocks.clone();
        want.sort_unstable();
        assert_eq!(got, want, "window {w}");
        at += n;
    }
    // The views come from each item's own stream: item i's views carry i.
    assert!(e0
        .iter()
        .flatten()
        .all(|v| v.first % 1_000_000 == v.index as u64 && v.second % 1_000_000 == v.index as u64));
}

#[test]
fn resume_from_any_batch_equals_the_uninterrupted_epoch_and_threads_do_not_matter() {
    let lens: Vec<usize> = (0..25).map(|b| 3 + (b * 5) % 17).collect();
    let l = loader(Numbers::new(lens.clone()), 16, 40, 1);
    let full = epoch(&l, 3, 0);
    for start in [1, 5, full.len() - 1] {
        assert_eq!(epoch(&l, 3, start), full[start..].to_vec(), "from batch {start}");
    }
    assert!(epoch(&l, 3, full.len()).is_empty());
    // A resume reads no block of the windows it skips.
    let reads = || l.blocks().reads.lock().unwrap().len();
    let before = reads();
    epoch(&l, 3, full.len() - 1);
    let resumed = reads() - before;
    let windows = l.windows(3);
    let last_two: usize = windows[windows.len() - 2..].iter().map(Vec::len).sum();
    assert!(resumed <= last_two && resumed < lens.len(), "{resumed} blocks read to resume at the last batch");
    assert_eq!(epoch(&loader(Numbers::new(lens), 16, 40, 3), 3, 0), full, "3 threads, same batches");
}

#[test]
fn runs_are_read_in_order_and_drop_last_drops_the_short_batch() {
    // Three "gzip files" of 4 blocks each: runs are shuffled, their blocks read in order.
    let mut blocks = Numbers::new(vec![10; 12]);
    blocks.runs = Some(vec![0..4, 4..8, 8..12]);
    let config = LoaderConfig { batch_size: 25, seed: 2, shuffle: true, drop_last: true, threads: 1 };
    let l = StreamLoader::new(blocks, TwoViews(jitter()), |b: Batch| Ok(b), config, 10).unwrap();
    let batches = epoch(&l, 0, 0);
    assert_eq!(batches.len(), 4, "120 items in batches of 25, the short one dropped");
    assert!(batches.iter().all(|b| b.len() == 25));
    let windows: Vec<usize> = l.windows(0).into_iter().flatten().collect();
    for run in windows.chunks(4) {
        assert!(run.windows(2).all(|p| p[1] == p[0] + 1) && run[0] % 4 == 0, "{windows:?}");
    }
    assert_ne!(windows, (0..12).collect::<Vec<_>>(), "the runs are shuffled");
    // Runs that do not cover the blocks are refused.
    let mut bad = Numbers::new(vec![10; 4]);
    bad.runs = Some(vec![0..2, 3..4]);
    let config = LoaderConfig { batch_size: 4, ..config };
    assert!(StreamLoader::new(bad, TwoViews(jitter()), |b: Batch| Ok(b), config, 10).is_err());
}

#[test]
fn copies_of_an_item_are_kept_out_of_one_batch() {
    // 300 items, each value three times (100 values), in blocks of 30; batches of 10.
    let mut blocks = Numbers::new(vec![30; 10]);
    blocks.repeat = 3;
    let config = LoaderConfig { batch_size: 10, seed: 4, shuffle: true, drop_last: false, threads: 2 };
    let l = StreamLoader::new(blocks, TwoViews(jitter()), |b: Batch| Ok(b), config, 45)
        .unwrap()
        .with_distinct_keys(|x: &u64| *x)
        .unwrap();
    let batches = epoch(&l, 0, 0);
    assert_eq!(batches.len(), 30);
    let mut all = indices(&batches);
    all.sort_unstable();
    assert_eq!(all, (0..300).collect::<Vec<_>>());
    for (k, b) in batches.iter().enumerate() {
        let mut values: Vec<usize> = b.iter().map(|v| v.index / 3).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), b.len(), "batch {k} repeats a value");
    }
    // Resuming replays the holding back: the same batches from any start.
    assert_eq!(epoch(&l, 0, 7), batches[7..].to_vec());
}

#[test]
fn shards_split_each_global_batch_in_rank_order() {
    // 300 items (each value three times) in blocks of 30, windows of 45: three processes with
    // batches of 4 take, batch by batch, the rank-th third of what one process takes with batches
    // of 12 (copies kept apart over the whole global batch), with the same views; a resume of a
    // shard from batch 5 equals the rest of its epoch.
    let blocks = || {
        let mut b = Numbers::new(vec![30; 10]);
        b.repeat = 3;
        b
    };
    let make = |batch: usize| {
        let config = LoaderConfig { batch_size: batch, seed: 4, shuffle: true, drop_last: true, threads: 2 };
        StreamLoader::new(blocks(), TwoViews(jitter()), |b: Batch| Ok(b), config, 45)
            .unwrap()
            .with_distinct_keys(|x: &u64| *x)
            .unwrap()
    };
    let global = epoch(&make(12), 1, 0);
    assert_eq!(global.len(), 25);
    let shards: Vec<Vec<Batch>> = (0..3)
        .map(|rank| {
            let l = make(4).with_shard(Shard { rank, world_size: 3 }).unwrap();
            assert_eq!((l.shard(), l.batches_per_epoch()), (Shard { rank, world_size: 3 }, 25));
            let batches = epoch(&l, 1, 0);
            assert_eq!(epoch(&l, 1, 5), batches[5..].to_vec());
            batches
        })
        .collect();
    for (b, batch) in global.iter().enumerate() {
        let joined: Vec<_> = (0..3).flat_map(|r| shards[r][b].iter().cloned()).collect();
        assert_eq!(&joined, batch, "global batch {b}");
    }
    let no_drop = {
        let config = LoaderConfig { batch_size: 4, seed: 4, shuffle: true, drop_last: false, threads: 1 };
        StreamLoader::new(blocks(), TwoViews(jitter()), |b: Batch| Ok(b), config, 45).unwrap()
    };
    let no_drop = message(no_drop.with_shard(Shard { rank: 0, world_size: 2 }));
    assert!(no_drop.contains("loader.drop_last"), "{no_drop}");
    let too_big = message(make(100).with_shard(Shard { rank: 1, world_size: 4 }));
    assert!(too_big.contains("100 per process x 4 processes") && too_big.contains("300 samples"), "{too_big}");
}

fn message<T>(r: Result<T>) -> String {
    r.err().map(|e| e.to_string()).unwrap_or_default()
}
