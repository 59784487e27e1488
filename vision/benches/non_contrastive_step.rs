//! Training-step speed of the methods without negatives on the small ConvNet, f32 on the CPU,
//! batch 256 at 28x28 with the heads of the examples (lightly's CIFAR-10 recipes on a 256-wide
//! encoder): one step is the loss of a batch of views, backward, AdamW and the method's
//! after-step (target momentum). DINO's batch is 2 global views (28x28) and 6 local (12x12).
//! The same work as `python3 bench/pytorch/non_contrastive_fmnist_lightly.py --method M --timing
//! --epochs 1 --max-steps 22` (its `median_step_s`, augmentation apart).
//!
//!     cargo bench -p contrastive-vision --bench non_contrastive_step

#![allow(missing_docs)] // criterion_group! generates an undocumented function

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use candle_core::{Device, Tensor};
use contrastive_core::methods::{
    BarlowTwins, BarlowTwinsConfig, Byol, ByolConfig, Dino, DinoConfig, SimSiam, SimSiamConfig, VicReg, VicRegConfig,
};
use contrastive_core::optim::{Optimizer, OptimizerConfig};
use contrastive_core::train::{Objective, Progress};
use contrastive_vision::{CropBatch, Encoder, EncoderConfig, ViewBatch};
use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use std::time::Duration;

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn encoder(vb: candle_nn::VarBuilder) -> contrastive_core::Result<Encoder> {
    Encoder::new(&EncoderConfig::default(), vb)
}

fn step<O: Objective>(c: &mut Criterion, name: &str, mut objective: O, batch: O::Batch) {
    let adam = OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-6 };
    let mut opt = Optimizer::new(adam, objective.params().trainable()).unwrap();
    let mut group = c.benchmark_group("vision");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(20));
    let mut n = 0;
    group.bench_function(name, |b| {
        b.iter(|| {
            let progress = Progress { step: n, total_steps: 1000, epoch: 1 };
            objective.before_step(&progress).unwrap();
            let grads = objective.loss(&batch).unwrap().backward().unwrap();
            opt.step(&grads, 1e-3).unwrap();
            objective.after_step(&progress).unwrap();
            n += 1;
        })
    });
    group.finish();
}

fn steps(c: &mut Criterion) {
    contrastive_core::alloc::keep_freed_memory();
    contrastive_core::candle_pool::configure_candle_pool(0);
    let dev = Device::Cpu;
    let views =
        || ViewBatch { first: random(&[256, 1, 28, 28], 1), second: random(&[256, 1, 28, 28], 2), indices: vec![] };
    let byol: Byol<Encoder, ViewBatch> = Byol::new(encoder, ByolConfig::with_widths(256, 1024, 128), 0, &dev).unwrap();
    step(c, "convnet_byol_step_b256_28x28", byol, views());
    let simsiam: SimSiam<Encoder, ViewBatch> =
        SimSiam::new(encoder, SimSiamConfig::with_widths(256, 512, 128, 64), 0, &dev).unwrap();
    step(c, "convnet_simsiam_step_b256_28x28", simsiam, views());
    let barlow: BarlowTwins<Encoder, ViewBatch> =
        BarlowTwins::new(encoder, BarlowTwinsConfig::with_widths(256, 2048, 2048), 0, &dev).unwrap();
    step(c, "convnet_barlow_twins_step_b256_28x28", barlow, views());
    let vicreg: VicReg<Encoder, ViewBatch> =
        VicReg::new(encoder, VicRegConfig::with_widths(256, 2048, 2048), 0, &dev).unwrap();
    step(c, "convnet_vicreg_step_b256_28x28", vicreg, views());
    let dino: Dino<Encoder, CropBatch> =
        Dino::new(encoder, DinoConfig::with_widths(256, 512, 64, 2048), 0, &dev).unwrap();
    let crops = CropBatch {
        global: (0..2).map(|i| random(&[256, 1, 28, 28], i)).collect(),
        local: (0..6).map(|i| random(&[256, 1, 12, 12], 10 + i)).collect(),
        indices: vec![],
    };
    step(c, "convnet_dino_step_b256_2x28_6x12", dino, crops);
}

criterion_group!(benches, steps);
criterion_main!(benches);
