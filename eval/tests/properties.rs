//! Invariants and bad input.

use candle_core::{DType, Device, Tensor};
use contrastive_eval::*;

#[test]
fn invariants() {
    let a = [0u32, 0, 1, 1, 2, 2, 2];
    // A labelling against itself, or against a renaming of itself, agrees perfectly.
    assert_eq!(ari(&a, &a).unwrap(), 1.0);
    assert_eq!(ari(&a, &[7, 7, 3, 3, 9, 9, 9]).unwrap(), 1.0);
    assert!((nmi(&a, &[7, 7, 3, 3, 9, 9, 9]).unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(nmi(&[1, 1, 1], &[4, 4, 4]).unwrap(), 1.0);
    // Correlation is symmetric, invariant to monotone maps (Spearman) and affine maps (Pearson).
    let x = [0.3, 1.2, -0.7, 2.2, 0.0];
    let y = [1.0, 0.5, -2.0, 3.3, 0.1];
    assert!((pearson(&x, &y).unwrap() - pearson(&y, &x).unwrap()).abs() < 1e-15);
    let affine: Vec<f64> = x.iter().map(|v| 3.0 * v - 1.0).collect();
    assert!((pearson(&affine, &y).unwrap() - pearson(&x, &y).unwrap()).abs() < 1e-14);
    let cubed: Vec<f64> = x.iter().map(|v: &f64| v.powi(3)).collect();
    assert_eq!(spearman(&cubed, &y).unwrap(), spearman(&x, &y).unwrap());
    assert_eq!(average_ranks(&[2.0, 1.0, 2.0, 3.0]), vec![2.5, 1.0, 2.5, 4.0]);
    // Identical views are perfectly aligned; one repeated point is as non-uniform as it gets (-4t).
    let z = Tensor::new(&[[1f32, 2.], [3., -1.], [0.5, 0.5]], &Device::Cpu).unwrap();
    assert!(alignment(&z, &z, 2.0).unwrap().abs() < 1e-12);
    let same = Tensor::ones((5, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(uniformity(&same, 2.0).unwrap().abs() < 1e-12);
    let opposite = Tensor::new(&[[1f32, 0.], [-1., 0.]], &Device::Cpu).unwrap();
    assert!((uniformity(&opposite, 2.0).unwrap() - -8.0).abs() < 1e-12);
}

#[test]
fn knn_finds_exact_copies_and_top5_is_at_least_top1() {
    let train = Tensor::new(
        &[[1f32, 0., 0.], [0., 1., 0.], [0., 0., 1.], [1., 1., 0.], [0., 1., 1.], [1., 0., 1.]],
        &Device::Cpu,
    )
    .unwrap();
    let labels = [0u32, 1, 2, 3, 4, 5];
    for vote in [Vote::Majority, Vote::Weighted { temperature: 0.1 }] {
        let knn = Knn { k: 1, vote, ..Default::default() };
        let acc = knn.accuracy(&train, &labels, &train, &labels).unwrap();
        assert_eq!((acc.top1, acc.top5), (1.0, 1.0));
        let knn = Knn { k: 3, vote, ..Default::default() };
        let acc = knn.accuracy(&train, &labels, &train, &labels).unwrap();
        assert!(acc.top5 >= acc.top1);
    }
}

fn err<T: std::fmt::Debug>(r: contrastive_core::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn bad_input_is_named() {
    let dev = Device::Cpu;
    let train = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.]], &dev).unwrap();
    let knn = Knn { k: 2, vote: Vote::Majority, ..Default::default() };
    assert!(err(knn.predict(&train, &[0, 1], &train))
        .contains("kNN train: labels: expected shape (3,), one per embedding, found [2]"));
    assert!(err(Knn { k: 4, ..knn }.predict(&train, &[0, 1, 0], &train)).contains("k = 4"));
    let nan = Tensor::new(&[[1f32, f32::NAN]], &dev).unwrap();
    assert!(err(knn.predict(&train, &[0, 1, 0], &nan)).contains("row 0 has a non-finite value"));
    let empty = Tensor::zeros((0, 2), DType::F32, &dev).unwrap();
    let e = knn.predict(&train, &[0, 1, 0], &empty).unwrap_err();
    assert!(matches!(&e, contrastive_core::Error::Shape { found, .. } if found == &[0, 2]), "{e:?}");
    assert!(e.to_string().contains("embeddings: expected shape (N, D) with N, D >= 1, found [0, 2]"), "{e}");
    let flat = Tensor::zeros(4, DType::F32, &dev).unwrap();
    assert!(err(knn.predict(&train, &[0, 1, 0], &flat)).contains("expected shape (N, D), found [4]"));
    let wide = Tensor::zeros((1, 3), DType::F32, &dev).unwrap();
    assert!(err(knn.predict(&train, &[0, 1, 0], &wide)).contains("as the train embeddings"));
    assert!(err(knn.accuracy(&train, &[0, 1, 0], &train, &[0]))
        .contains("expected shape (3,), one per embedding, found [1]"));
    assert!(err(pearson(&[1.0, 2.0], &[1.0])).contains("second series: expected shape (2,) as the first, found [1]"));
    assert!(err(pearson(&[1.0, 1.0], &[1.0, 2.0])).contains("constant"));
    assert!(err(spearman(&[1.0, 1.0], &[1.0, 2.0])).contains("spearman"));
    assert!(err(pearson(&[1.0, f64::NAN], &[1.0, 2.0])).contains("index 1"));
    assert!(err(pearson(&[1.0], &[1.0])).contains("expected shape (>= 2,), found [1]"));
    assert!(err(ari(&[0, 1], &[0])).contains("second labelling: expected shape (2,) as the first, found [1]"));
    assert!(err(nmi(&[], &[])).contains("expected shape (N >= 1,), found [0]"));
    assert!(err(alignment(&train, &wide, 2.0)).contains("second views: expected shape"));
    assert!(err(uniformity(&nan, 2.0)).contains("non-finite"));
}

/// Two Gaussian-ish blobs per class in 5-D, deterministic.
fn blobs(n_per: usize, classes: usize, seed: u64, spread: f32) -> (Tensor, Vec<u32>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n_per * classes {
        let c = i % classes;
        for d in 0..5 {
            let centre = if d == c % 5 { 3.0 } else { 0.0 } + if d == (c + 1) % 5 { 1.5 } else { 0.0 };
            x.push(centre + rng.random_range(-spread..spread));
        }
        y.push(c as u32);
    }
    (Tensor::from_vec(x, (n_per * classes, 5), &Device::Cpu).unwrap(), y)
}

#[test]
fn linear_probe_separates_blobs_chooses_c_and_handles_label_fractions() {
    let (train, tl) = blobs(60, 4, 1, 1.0);
    let (test, sl) = blobs(20, 4, 2, 1.0);
    let probe = LinearProbe::default();
    let report = probe.evaluate(&train, &tl, &test, &sl).unwrap();
    assert!(report.accuracy >= 0.95, "{report:?}");
    assert_eq!(report.cv_accuracy.len(), 6);
    assert!(report.cv_accuracy.iter().all(|&(_, a)| (0.0..=1.0).contains(&a)));
    let best = report.cv_accuracy.iter().map(|&(_, a)| a).fold(0.0, f64::max);
    assert_eq!(report.cv_accuracy.iter().find(|&&(c, _)| c == report.c).unwrap().1, best);
    // Same seed, same report.
    assert_eq!(probe.evaluate(&train, &tl, &test, &sl).unwrap(), report);
    // 10% of the labels: 6 per class, stratified.
    let tenth = probe.evaluate_fraction(0.1, &train, &tl, &test, &sl).unwrap();
    assert_eq!(tenth.train_samples, 24);
    assert!(tenth.accuracy >= 0.8, "{tenth:?}");
    let subset = stratified_subset(&tl, 0.01, 3).unwrap();
    assert_eq!(subset.len(), 4); // at least one per class
                                 // Folds are stratified: every fold holds each class equally (60 per class, 5 folds).
    let folds = stratified_folds(&tl, 5, 9);
    for f in 0..5 {
        for c in 0..4u32 {
            assert_eq!((0..tl.len()).filter(|&i| folds[i] == f && tl[i] == c).count(), 12);
        }
    }
}

#[test]
fn linear_probe_rejects_bad_input() {
    let (train, tl) = blobs(10, 2, 1, 1.0);
    let probe = LinearProbe::default();
    let single = vec![1u32; 20];
    assert!(err(probe.evaluate(&train, &single, &train, &single)).contains("single class (1)"));
    assert!(err(probe.evaluate(&train, &tl[..5], &train, &tl))
        .contains("expected shape (20,), one per embedding, found [5]"));
    let rare: Vec<u32> = (0..20).map(|i| if i == 0 { 2 } else { i % 2 }).collect();
    assert!(err(probe.evaluate(&train, &rare, &train, &rare)).contains("the rarest has 1"));
    let narrow = Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap();
    assert!(err(probe.evaluate(&train, &tl, &narrow, &[0, 1, 0])).contains("as the train embeddings"));
    assert!(err(stratified_subset(&tl, 0.0, 0)).contains("fraction"));
    assert!(err(LogisticRegression::fit(&train, &tl, -1.0, true)).contains("logistic regression C: must be finite"));
}

#[test]
fn kmeans_is_seeded_and_checks_its_input() {
    let (x, y) = blobs(30, 4, 5, 0.5);
    let a = KMeans::new(4).fit(&x).unwrap();
    assert_eq!(a, KMeans::new(4).fit(&x).unwrap());
    assert!(ari(&a.labels, &y).unwrap() > 0.95);
    // More restarts never end worse.
    let one = KMeans { restarts: 1, ..KMeans::new(4) }.fit(&x).unwrap();
    assert!(a.inertia <= one.inertia + 1e-9);
    // k = n puts every point in its own cluster.
    let small = Tensor::new(&[[0f32, 0.], [1., 0.], [0., 1.]], &Device::Cpu).unwrap();
    assert!(KMeans::new(3).fit(&small).unwrap().inertia.abs() < 1e-12);
    assert!(err(KMeans::new(4).fit(&small)).contains("k = 4"));
    assert!(err(KMeans::new(0).fit(&small)).contains("k = 0"));
}

fn random(seed: u64, n: usize, d: usize) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, (n, d), &Device::Cpu).unwrap()
}

#[test]
fn retrieval_invariants() {
    let corpus = random(1, 200, 16);
    // Each query is a corpus row: a perfect ranking.
    let idx = Tensor::new(&[3u32, 50, 199, 0], &Device::Cpu).unwrap();
    let queries = corpus.index_select(&idx, 0).unwrap();
    let relevant = vec![vec![3], vec![50], vec![199], vec![0]];
    let r = retrieval_metrics(&queries, &corpus, &relevant, &[1, 10]).unwrap();
    assert_eq!((r.mrr, r.map, r.recall_at[0].1), (1.0, 1.0, 1.0));
    // On random data recall@k is monotone in k.
    let q = random(2, 30, 16);
    let rel: Vec<Vec<u32>> = (0..30).map(|i| vec![i * 3, i * 5 + 1]).collect();
    let ks: Vec<usize> = (1..=200).step_by(7).collect();
    let r = retrieval_metrics(&q, &corpus, &rel, &ks).unwrap();
    assert!(r.recall_at.windows(2).all(|w| w[0].1 <= w[1].1));
    assert!(r.recall_at.last().unwrap().1 <= 1.0 && r.mrr > 0.0 && r.map > 0.0);
    assert!(err(retrieval_metrics(&q, &corpus, &rel[..3], &[1]))
        .contains("relevance lists: expected shape (30,), one per query, found [3]"));
    assert!(err(retrieval_metrics(&queries, &corpus, &[vec![3], vec![], vec![1], vec![2]], &[1]))
        .contains("query 1 has no relevant"));
    assert!(err(retrieval_metrics(&queries, &corpus, &[vec![3], vec![500], vec![1], vec![2]], &[1]))
        .contains("query 1: index 500 is out of range for"));
    assert!(err(retrieval_metrics(&queries, &corpus, &relevant, &[0])).contains("k = 0"));
}

#[test]
fn approximate_index_recall_is_above_its_floor() {
    // 5,000 random vectors of width 32 (a hard case for HNSW: no structure); stated floor 0.9.
    let corpus = random(3, 5000, 32);
    let queries = random(4, 200, 32);
    let index = ApproximateIndex::build(&corpus, HnswConfig::default()).unwrap();
    let recall = approximate_recall(&index, &queries, &corpus, 10).unwrap();
    assert!(recall >= 0.9, "recall@10 {recall}");
    // A corpus row finds itself first.
    let idx = Tensor::new(&[17u32], &Device::Cpu).unwrap();
    assert_eq!(index.search(&corpus.index_select(&idx, 0).unwrap(), 1).unwrap(), vec![vec![17]]);
    assert!(err(index.search(&queries, 101)).contains("ef_search = 100"));
    assert!(err(index.search(&random(5, 2, 8), 5)).contains("found [2, 8]"));
}

#[test]
fn paired_retrieval_of_unrelated_embeddings_scores_chance() {
    // Chance in closed form: recall@k = k / n, MRR = mAP = H(n) / n; H(8) = 761/280.
    let chance = RetrievalReport::chance(8, &[1, 3, 10]).unwrap();
    assert_eq!(chance.recall_at, vec![(1, 0.125), (3, 0.375), (10, 1.0)]);
    assert!((chance.mrr - 761.0 / 280.0 / 8.0).abs() < 1e-15 && chance.map == chance.mrr);
    assert_eq!(chance.recall(3), Some(0.375));
    assert_eq!(chance.recall(2), None);
    assert!(RetrievalReport::chance(0, &[1]).is_err() && RetrievalReport::chance(5, &[0]).is_err());
    // Independent pairs of random vectors rank their partner uniformly: 400 draws of 8 pairs
    // (3,200 queries each way) land within 0.03 of chance (five standard errors of recall@1).
    let (mut r1, mut r3, mut mrr) = (0.0, 0.0, 0.0);
    let draws = 400;
    for t in 0..draws {
        let (a, b) = (random(1000 + 2 * t, 8, 16), random(1001 + 2 * t, 8, 16));
        let (ab, ba) = paired_retrieval(&a, &b, &[1, 3]).unwrap();
        for r in [ab, ba] {
            r1 += r.recall(1).unwrap() / (2 * draws) as f64;
            r3 += r.recall(3).unwrap() / (2 * draws) as f64;
            mrr += r.mrr / (2 * draws) as f64;
        }
    }
    assert!((r1 - 0.125).abs() < 0.03 && (r3 - 0.375).abs() < 0.03, "{r1} {r3}");
    assert!((mrr - chance.mrr).abs() < 0.03, "{mrr} vs {}", chance.mrr);
    // Identical pairs find each other first; rows that do not pair up are refused.
    let a = random(7, 6, 4);
    let (ab, _) = paired_retrieval(&a, &a, &[1]).unwrap();
    assert_eq!((ab.recall(1), ab.mrr), (Some(1.0), 1.0));
    let e = err(paired_retrieval(&a, &random(8, 5, 4), &[1]));
    assert!(e.contains("expected shape (6, D) as a, one row per pair, found [5, 4]"), "{e}");
}
