//! ViT-S/16 (timm's vit_small_patch16_224 laid out for 96 pixel images: a 6 x 6 grid, randomly
//! initialised) on a batch of 32 images of 96 x 96: a training step (forward, mean of the squared
//! features, backward) and the eval forward pass. The same work as `python3
//! bench/pytorch/torch_ref.py vit_small_train` (timm's VisionTransformer), to run in one sitting.
//!
//!     cargo bench -p contrastive-vision --bench vit
#![allow(missing_docs)] // criterion_group! generates an undocumented function

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use candle_core::{DType, Device, Tensor};
use contrastive_core::nn::{InitScheme, ParamStore};
use contrastive_vision::{Vit, VitConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    contrastive_core::alloc::keep_freed_memory();
    contrastive_core::candle_pool::configure_candle_pool(0);
    let store = ParamStore::new(0, InitScheme::Normal { std: 0.02 });
    let vit = Vit::new(&VitConfig::small(16, 96), store.var_builder(DType::F32, &Device::Cpu), 0).unwrap();
    let x = Tensor::randn(0f32, 1.0, (32, 3, 96, 96), &Device::Cpu).unwrap();
    let mut group = c.benchmark_group("vit_small_p16_b32_96");
    group.throughput(Throughput::Elements(32));
    group.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(15));
    group.bench_function("train_step", |b| {
        b.iter(|| vit.forward_t(&x, true).unwrap().sqr().unwrap().mean_all().unwrap().backward().unwrap())
    });
    group.bench_function("forward_eval", |b| b.iter(|| vit.forward_t(&x, false).unwrap()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
