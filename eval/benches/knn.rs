//! Weighted kNN (k = 200, t = 0.1) of 10,000 test against 60,000 train embeddings of width 128,
//! and an HNSW index over 100,000 vectors of width 384 (build, 1,000 queries, recall@10).
//! Compare with `python3 bench/pytorch/sklearn_ref.py` in the same sitting.
//!
//!     cargo bench -p contrastive-eval --bench knn
#![allow(missing_docs)] // criterion_group! generates an undocumented function

// See core/README.md: glibc's malloc page-faults candle's large buffers back in on every op.
#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use candle_core::{Device, Tensor};
use contrastive_eval::{approximate_recall, ApproximateIndex, HnswConfig, Knn};
use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

fn random(seed: u64, n: usize, d: usize) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, (n, d), &Device::Cpu).unwrap()
}

fn knn(c: &mut Criterion) {
    contrastive_core::alloc::keep_freed_memory();
    contrastive_core::candle_pool::configure_candle_pool(0);
    let train = random(1, 60_000, 128);
    let test = random(2, 10_000, 128);
    let labels: Vec<u32> = (0..60_000).map(|i| i % 10).collect();
    let test_labels: Vec<u32> = (0..10_000).map(|i| i % 10).collect();
    let knn = Knn::default();
    let mut group = c.benchmark_group("knn_weighted_k200_60000x10000x128");
    group.sample_size(10).measurement_time(Duration::from_secs(30));
    group.bench_function("exact", |b| b.iter(|| knn.accuracy(&train, &labels, &test, &test_labels).unwrap()));
    group.finish();
}

fn hnsw(_: &mut Criterion) {
    // One build is minutes of work: timed once, not sampled. HNSW_N sets the corpus size.
    let n = std::env::var("HNSW_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let corpus = random(3, n, 384);
    let queries = random(4, 1_000, 384);
    let started = Instant::now();
    let index = ApproximateIndex::build(&corpus, HnswConfig::default()).unwrap();
    let build = started.elapsed();
    let started = Instant::now();
    index.search(&queries, 10).unwrap();
    let search = started.elapsed();
    let recall = approximate_recall(&index, &queries, &corpus, 10).unwrap();
    println!("hnsw_{n}x384: build {build:.2?}, 1000 queries {search:.2?}, recall@10 {recall:.4}");
}

criterion_group!(benches, knn, hnsw);
criterion_main!(benches);
