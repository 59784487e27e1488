//! Augmentation throughput: 4,096 random images through the core loader with 2 augmentation
//! threads, two views each, batches of 256 stacked into tensors, images per second:
//!
//! - `simclr_rgb_32x32`: the SimCLR recipe (crop, flip, colour jitter, grayscale, blur, normalise)
//!   at 32x32 RGB: the same work as `python3 bench/pytorch/torch_augment.py` (torchvision's v2
//!   transforms on tensors in a DataLoader with 2 workers).
//! - `small_images_gray_28x28`: the Fashion-MNIST recipe of the simclr example: compare with
//!   `simclr_fmnist_torch.py --timing`, whose `aug_s_per_step` is its batched augmentation of 256
//!   images.
//!
//!     cargo bench -p contrastive-vision --bench augment
#![allow(missing_docs)] // criterion_group! generates an undocumented function

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use candle_core::Device;
use contrastive_core::data::{Loader, LoaderConfig};
use contrastive_vision::augment::{Normalize, ViewAugmentation};
use contrastive_vision::{CollateViews, InMemoryImages};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use std::time::Duration;

const IMAGES: usize = 4096;

fn images(channels: usize, side: usize) -> InMemoryImages {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(channels as u64);
    let pixels = (0..IMAGES * channels * side * side).map(|_| rng.random_range(0.0f32..1.0)).collect();
    InMemoryImages { channels, height: side, width: side, pixels, labels: vec![0; IMAGES] }
}

fn bench(c: &mut Criterion) {
    contrastive_core::alloc::keep_freed_memory();
    contrastive_core::candle_pool::configure_candle_pool(0);
    let rgb = Normalize { mean: vec![0.49, 0.48, 0.45], std: vec![0.25, 0.24, 0.26] };
    let gray = Normalize { mean: vec![0.286], std: vec![0.353] };
    let cases = [
        ("simclr_rgb_32x32", images(3, 32), ViewAugmentation::simclr((32, 32), rgb)),
        ("small_images_gray_28x28", images(1, 28), ViewAugmentation::small_images((28, 28), gray)),
    ];
    let mut group = c.benchmark_group("augment");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(IMAGES as u64));
    for (name, data, views) in cases {
        let config = LoaderConfig { batch_size: 256, threads: 2, ..LoaderConfig::default() };
        let loader = Loader::new(data, views, CollateViews { device: Device::Cpu }, config).unwrap();
        let mut epoch = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                epoch += 1;
                loader.epoch(epoch).map(|batch| batch.unwrap().indices.len()).sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
