//! Loader throughput: 8,192 samples of 3 x 32 x 32 f32, a cheap augmentation (random flip and
//! brightness), two views each, batches of 256, at 1 and 2 augmentation threads.
//!
//!     cargo bench -p contrastive-core --bench loader
#![allow(missing_docs)] // criterion_group! generates an undocumented function

// glibc's malloc hands large freed buffers back to the OS and page-faults them in again on the
// next step, which costs candle more than the arithmetic (3-4x on LayerNorm); mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use contrastive_core::data::{Loader, LoaderConfig, ViewPair};
use contrastive_core::Result;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, RngCore};
use std::sync::Arc;
use std::time::Duration;

const SIDE: usize = 32;

fn augment(x: Arc<Vec<f32>>, rng: &mut dyn RngCore) -> Result<Arc<Vec<f32>>> {
    let flip = rng.random_bool(0.5);
    let brightness = rng.random_range(0.6f32..1.4);
    let mut out = vec![0.0f32; x.len()];
    for (c, plane) in out.chunks_mut(SIDE * SIDE).enumerate() {
        for y in 0..SIDE {
            for col in 0..SIDE {
                let src = if flip { SIDE - 1 - col } else { col };
                plane[y * SIDE + col] = (x[c * SIDE * SIDE + y * SIDE + src] * brightness).clamp(0.0, 1.0);
            }
        }
    }
    Ok(Arc::new(out))
}

fn collate(samples: Vec<ViewPair<Arc<Vec<f32>>>>) -> Result<usize> {
    Ok(samples.iter().map(|s| s.first.len() + s.second.len()).sum())
}

fn bench(c: &mut Criterion) {
    let data: Vec<Arc<Vec<f32>>> = (0..8192)
        .map(|i| Arc::new((0..3 * SIDE * SIDE).map(|j| ((i * 31 + j) % 255) as f32 / 255.0).collect()))
        .collect();
    let mut group = c.benchmark_group("loader_epoch_8192x3x32x32");
    group.sample_size(10).measurement_time(Duration::from_secs(8)).throughput(Throughput::Elements(8192));
    for threads in [1, 2] {
        let config = LoaderConfig { batch_size: 256, seed: 0, shuffle: true, drop_last: true, threads };
        let loader = Loader::new(data.clone(), augment, collate, config).unwrap();
        group.bench_function(format!("threads_{threads}"), |b| {
            b.iter(|| loader.epoch(0).map(|b| b.unwrap()).sum::<usize>())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
