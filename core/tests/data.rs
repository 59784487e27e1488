//! The loader: seeded shuffles and views, thread-count independence, drop_last, resume offsets,
//! errors; the augmentation combinators.

use contrastive_core::augment::{Augment, Compose, RandomApply, RandomChoice};
use contrastive_core::data::{Loader, LoaderConfig, Shard, TwoViews, ViewPair};
use contrastive_core::{Error, Result};
use rand::{Rng, RngCore};

type Batch = Vec<ViewPair<f64>>;
type TestLoader =
    Loader<Vec<f64>, TwoViews<fn(f64, &mut dyn RngCore) -> Result<f64>>, fn(Vec<ViewPair<f64>>) -> Result<Batch>>;

fn jitter(x: f64, rng: &mut dyn RngCore) -> Result<f64> {
    Ok(x + rng.random_range(-1.0..1.0))
}

fn keep(samples: Vec<ViewPair<f64>>) -> Result<Batch> {
    Ok(samples)
}

fn loader(n: usize, batch_size: usize, threads: usize, seed: u64, drop_last: bool) -> TestLoader {
    let data: Vec<f64> = (0..n).map(|i| i as f64 * 10.0).collect();
    let config = LoaderConfig { batch_size, seed, shuffle: true, drop_last, threads };
    Loader::new(
        data,
        jitter as fn(f64, &mut dyn RngCore) -> Result<f64>,
        keep as fn(Vec<ViewPair<f64>>) -> Result<Batch>,
        config,
    )
    .unwrap()
}

fn epoch(l: &TestLoader, e: usize) -> Vec<Batch> {
    l.epoch(e).collect::<Result<Vec<_>>>().unwrap()
}

#[test]
fn same_batches_whatever_the_thread_count() {
    let one = epoch(&loader(103, 16, 1, 7, true), 0);
    let two = epoch(&loader(103, 16, 2, 7, true), 0);
    let four = epoch(&loader(103, 16, 4, 7, true), 0);
    assert_eq!(one, two);
    assert_eq!(one, four);
    // drop_last: 103 / 16 = 6 full batches.
    assert_eq!(one.len(), 6);
    assert!(one.iter().all(|b| b.len() == 16));
    // Views differ from each other and from the sample, and stay near it.
    for p in one.iter().flatten() {
        assert_ne!(p.first, p.second);
        assert!((p.first - p.index as f64 * 10.0).abs() <= 1.0);
    }
}

#[test]
fn shuffles_by_seed_and_epoch_and_covers_every_sample_once() {
    let l = loader(64, 8, 2, 3, true);
    let e0: Vec<usize> = epoch(&l, 0).iter().flatten().map(|p| p.index).collect();
    let e1: Vec<usize> = epoch(&l, 1).iter().flatten().map(|p| p.index).collect();
    assert_ne!(e0, e1);
    let mut sorted = e0.clone();
    sorted.sort();
    assert_eq!(sorted, (0..64).collect::<Vec<_>>());
    assert_eq!(e0, epoch(&loader(64, 8, 1, 3, true), 0).iter().flatten().map(|p| p.index).collect::<Vec<_>>());
    assert_ne!(e0, epoch(&loader(64, 8, 1, 4, true), 0).iter().flatten().map(|p| p.index).collect::<Vec<_>>());
    // The views of a sample change between epochs.
    let first = |b: &[Batch], i: usize| b.iter().flatten().find(|p| p.index == i).unwrap().first;
    assert_ne!(first(&epoch(&l, 0), 5), first(&epoch(&l, 1), 5));
}

#[test]
fn keeps_the_short_batch_when_asked_and_resumes_mid_epoch() {
    let l = loader(20, 8, 2, 1, false);
    let all = epoch(&l, 2);
    assert_eq!(all.iter().map(Vec::len).collect::<Vec<_>>(), vec![8, 8, 4]);
    assert_eq!((0..3).map(|b| l.batch_len(b)).collect::<Vec<_>>(), vec![8, 8, 4]);
    let rest: Vec<Batch> = l.epoch_from(2, 1).collect::<Result<_>>().unwrap();
    assert_eq!(rest, all[1..].to_vec());
}

#[test]
fn errors_are_reported() {
    let data: Vec<f64> = vec![1.0; 4];
    let e =
        Loader::new(data.clone(), jitter, keep, LoaderConfig { batch_size: 8, ..Default::default() }).err().unwrap();
    assert!(e.to_string().contains("loader.batch_size"), "{e}");
    let e =
        Loader::new(data.clone(), jitter, keep, LoaderConfig { batch_size: 0, ..Default::default() }).err().unwrap();
    assert!(e.to_string().contains("loader.batch_size"), "{e}");
    // An augmentation that fails surfaces as the batch's error.
    let failing = |x: f64, _: &mut dyn RngCore| -> Result<f64> {
        if x > 0.5 {
            Err(Error::Data(format!("bad sample {x}")))
        } else {
            Ok(x)
        }
    };
    let l = Loader::new(data, failing, keep, LoaderConfig { batch_size: 2, ..Default::default() }).unwrap();
    let e = l.epoch(0).next().unwrap().unwrap_err();
    assert!(e.to_string().contains("bad sample 1"), "{e}");
}

#[test]
fn combinators() {
    let add = |d: f64| move |x: f64, _: &mut dyn RngCore| -> Result<f64> { Ok(x + d) };
    let mut rng = contrastive_core::rng::sample_rng(0, 0, 0);
    let c = Compose(vec![Box::new(add(1.0)), Box::new(add(2.0))]);
    assert_eq!(c.apply(0.0, &mut rng).unwrap(), 3.0);
    let never = RandomApply { p: 0.0, inner: Box::new(add(1.0)) };
    let always = RandomApply { p: 1.0, inner: Box::new(add(1.0)) };
    for _ in 0..20 {
        assert_eq!(never.apply(0.0, &mut rng).unwrap(), 0.0);
        assert_eq!(always.apply(0.0, &mut rng).unwrap(), 1.0);
    }
    let choice = RandomChoice(vec![Box::new(add(1.0)), Box::new(add(10.0))]);
    let picks: Vec<f64> = (0..200).map(|_| choice.apply(0.0, &mut rng).unwrap()).collect();
    let ones = picks.iter().filter(|&&v| v == 1.0).count();
    assert!(ones > 70 && ones < 130 && picks.iter().all(|&v| v == 1.0 || v == 10.0), "{ones}");
}

#[test]
fn distinct_keys_keep_copies_out_of_one_batch() {
    // 120 samples, 40 distinct keys (each three times), batches of 10: every batch of the
    // rearranged order has 10 distinct keys, every sample appears once, and the order is the
    // same for the same seed and epoch.
    let keys: Vec<u64> = (0..120).map(|i| (i % 40) as u64).collect();
    let l = loader(120, 10, 2, 3, true).with_distinct_keys(keys.clone()).unwrap();
    for e in 0..3 {
        let order = l.order(e);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..120).collect::<Vec<_>>());
        for (b, chunk) in order.chunks(10).enumerate() {
            let distinct: std::collections::HashSet<u64> = chunk.iter().map(|&i| keys[i]).collect();
            assert_eq!(distinct.len(), chunk.len(), "epoch {e} batch {b} holds a copy twice");
        }
        assert_eq!(order, l.order(e));
        // The batches the loader yields follow that order.
        let yielded: Vec<usize> = epoch(&l, e).iter().flatten().map(|v| v.index).collect();
        assert_eq!(yielded, order);
    }
    // Without keys the plain shuffle puts copies together somewhere.
    let plain = loader(120, 10, 2, 3, true).order(0);
    assert!(plain.chunks(10).any(|c| c.iter().map(|&i| keys[i]).collect::<std::collections::HashSet<_>>().len() < 10));
    let err = loader(120, 10, 1, 3, true).with_distinct_keys(vec![0; 5]).err().unwrap().to_string();
    assert!(err.contains("5 keys for 120 samples"), "{err}");
}

/// The rule `with_distinct_keys` documents, written the slow way: every batch sorts all keys by
/// (most samples left, earliest next sample) and takes the next sample of the first `batch`.
fn distinct_reference(order: &[usize], keys: &[u64], batch: usize) -> Vec<usize> {
    let mut queues: Vec<(u64, Vec<usize>)> = vec![];
    for &i in order {
        match queues.iter_mut().find(|(k, _)| *k == keys[i]) {
            Some((_, q)) => q.push(i),
            None => queues.push((keys[i], vec![i])),
        }
    }
    let at = |i: usize| order.iter().position(|&j| j == i).unwrap();
    let mut out = vec![];
    while queues.iter().any(|(_, q)| !q.is_empty()) {
        queues.retain(|(_, q)| !q.is_empty());
        queues.sort_by_key(|(_, q)| (std::cmp::Reverse(q.len()), at(q[0])));
        for (_, q) in queues.iter_mut().take(batch) {
            out.push(q.remove(0));
        }
    }
    out
}

#[test]
fn distinct_keys_follow_the_documented_rule_at_any_skew() {
    // Skewed copies (one key 30 times, a few 5 times, most once), batch sizes that divide the
    // count and that do not: the loader's order is the reference's on the plain shuffle.
    let keys: Vec<u64> = (0..200u64)
        .map(|i| {
            if i % 7 == 0 {
                0
            } else if i % 11 == 0 {
                i % 3 + 1
            } else {
                i
            }
        })
        .collect();
    for batch in [1, 4, 10, 33] {
        for seed in [1, 2] {
            let plain = loader(200, batch, 1, seed, false).order(0);
            let keyed = loader(200, batch, 1, seed, false).with_distinct_keys(keys.clone()).unwrap();
            assert_eq!(keyed.order(0), distinct_reference(&plain, &keys, batch), "batch {batch} seed {seed}");
        }
    }
    // A million distinct keys (a large corpus read whole) are ordered in n log n: the old rule's
    // sort per batch took minutes here.
    let n = 1_000_000;
    let keyed = loader(n, 64, 1, 5, true).with_distinct_keys((0..n as u64).collect()).unwrap();
    assert_eq!(keyed.order(0), loader(n, 64, 1, 5, true).order(0));
}

#[test]
fn shards_split_each_global_batch_in_rank_order() {
    // Three processes with batches of 4 take, batch by batch, the rank-th third of
    // what one process takes with batches of 12, with the same views (augmentation keyed by the
    // sample, not the process); keys are kept apart over the whole global batch.
    let keys: Vec<u64> = (0..120).map(|i| (i % 50) as u64).collect();
    let whole = loader(120, 12, 1, 9, true).with_distinct_keys(keys.clone()).unwrap();
    let global = epoch(&whole, 1);
    let shards: Vec<Vec<Batch>> = (0..3)
        .map(|rank| {
            let l = loader(120, 4, 1, 9, true)
                .with_distinct_keys(keys.clone())
                .unwrap()
                .with_shard(Shard { rank, world_size: 3 })
                .unwrap();
            assert_eq!(l.batches_per_epoch(), 10);
            epoch(&l, 1)
        })
        .collect();
    assert_eq!(global.len(), 10);
    for (b, batch) in global.iter().enumerate() {
        let joined: Vec<_> = (0..3).flat_map(|r| shards[r][b].iter().cloned()).collect();
        assert_eq!(&joined, batch, "global batch {b}");
    }
    let err = |l: Result<TestLoader>| l.err().unwrap().to_string();
    let no_drop = err(loader(120, 4, 1, 9, false).with_shard(Shard { rank: 0, world_size: 2 }));
    assert!(no_drop.contains("loader.drop_last"), "{no_drop}");
    let too_big = err(loader(120, 40, 1, 9, true).with_shard(Shard { rank: 0, world_size: 4 }));
    assert!(too_big.contains("40 per process x 4 processes") && too_big.contains("120 samples"), "{too_big}");
    let bad_rank = err(loader(120, 4, 1, 9, true).with_shard(Shard { rank: 2, world_size: 2 }));
    assert!(bad_rank.contains("rank 2 of a world of 2"), "{bad_rank}");
}
