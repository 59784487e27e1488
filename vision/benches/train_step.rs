//! Training-step speed of the vision encoders, f32 on the CPU:
//!
//! - `conv_block`: a ResNet basic block (two 3x3 convolutions of 64 channels, BatchNorm, ReLU,
//!   residual) forward plus backward at batch 256, 32x32, as our ResNet runs it (channels-last,
//!   fused convolution-BatchNorm, fused residual ReLU): the same work as
//!   `python3 bench/pytorch/torch_ref.py conv_block`.
//! - `convnet_simclr_step`: one SimCLR step of the small ConvNet at 28x28, batch 256 (two views of
//!   each image, the projection head, NT-Xent, backward, AdamW): the same work as
//!   `python3 bench/pytorch/simclr_fmnist_torch.py --timing` (its `train_s_per_step`).
//! - `resnet18_simclr_step`: the same with ResNet-18 (CIFAR stem) at 32x32, batch 64 and 256, and
//!   with the ImageNet stem at 96x96, batch 32; `resnet50_simclr_step` at 96x96, batch 32, and
//!   `resnet50_forward` (evaluation mode, 32 images at 96x96): compare with
//!   `python3 bench/pytorch/torch_train_step.py --all` (one of them: `--bench NAME`).
//!
//!     cargo bench -p contrastive-vision --bench train_step
#![allow(missing_docs)] // criterion_group! generates an undocumented function

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use candle_core::{DType, Device, ModuleT, Tensor, Var};
use contrastive_core::loss::nt_xent;
use contrastive_core::nn::{InitScheme, ParamStore, ProjectionHead, ProjectionHeadConfig};
use contrastive_core::optim::{Optimizer, OptimizerConfig};
use contrastive_vision::add_relu;
use contrastive_vision::{
    batch_norm, conv2d, Activation, ConvBn, ConvGeometry, Encoder, EncoderConfig, ResNetConfig, Stem,
};
use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use std::time::Duration;

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn conv_block(c: &mut Criterion) {
    contrastive_core::alloc::keep_freed_memory();
    contrastive_core::candle_pool::configure_candle_pool(0);
    let store = ParamStore::new(0, InitScheme::PyTorch);
    let vb = store.var_builder(DType::F32, &Device::Cpu);
    let g = ConvGeometry { in_channels: 64, out_channels: 64, kernel: 3, stride: 1, padding: 1 };
    let layer = |i: usize, activation| {
        let conv = conv2d(g, false, vb.pp(format!("c{i}"))).unwrap();
        ConvBn::new(conv, batch_norm(64, vb.pp(format!("b{i}"))).unwrap(), activation)
    };
    let (l1, l2) = (layer(1, Activation::Relu), layer(2, Activation::Identity));
    let x = Var::from_tensor(&random(&[256, 32, 32, 64], 1)).unwrap();
    let mut group = c.benchmark_group("vision");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(20));
    group.bench_function("conv_block_fwd_bwd_b256_c64_32x32", |b| {
        b.iter(|| {
            let h = l1.forward_t(x.as_tensor(), true).unwrap();
            let y = add_relu(&l2.forward_t(&h, true).unwrap(), x.as_tensor()).unwrap();
            y.sqr().unwrap().mean_all().unwrap().backward().unwrap()
        })
    });
    group.finish();
}

/// One SimCLR step (two views, head, NT-Xent, AdamW); `generic`: every custom op on the
/// device-generic path (candle's tensor ops), the cost of the fallback on the CPU.
fn simclr_step(c: &mut Criterion, name: &str, config: EncoderConfig, input: [usize; 4], seconds: u64, generic: bool) {
    let store = ParamStore::new(0, InitScheme::PyTorch);
    let vb = store.var_builder(DType::F32, &Device::Cpu);
    let encoder = Encoder::new(&config, vb.pp("encoder")).unwrap();
    let head_config = ProjectionHeadConfig {
        input_dim: encoder.dim(),
        hidden_dim: encoder.dim(),
        output_dim: 64,
        layers: 2,
        batch_norm: true,
        output_batch_norm: false,
    };
    let head = ProjectionHead::new(&head_config, vb.pp("head")).unwrap();
    let mut opt = Optimizer::new(
        OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-6 },
        store.trainable(),
    )
    .unwrap();
    let (v1, v2) = (random(&input, 1), random(&input, 2));
    let mut group = c.benchmark_group("vision");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(seconds));
    group.bench_function(name, |b| {
        b.iter(|| {
            contrastive_core::kernel::with_generic_ops(generic, || {
                let z1 = head.forward_t(&encoder.forward_t(&v1, true).unwrap(), true).unwrap();
                let z2 = head.forward_t(&encoder.forward_t(&v2, true).unwrap(), true).unwrap();
                let grads = nt_xent(&z1, &z2, 0.5).unwrap().backward().unwrap();
                opt.step(&grads, 1e-3).unwrap();
            })
        })
    });
    group.finish();
}

fn steps(c: &mut Criterion) {
    contrastive_core::alloc::keep_freed_memory();
    contrastive_core::candle_pool::configure_candle_pool(0);
    simclr_step(c, "convnet_simclr_step_b256_28x28", EncoderConfig::default(), [256, 1, 28, 28], 30, false);
    simclr_step(c, "convnet_simclr_step_b256_28x28_generic", EncoderConfig::default(), [256, 1, 28, 28], 30, true);
    let resnet18 = |stem| EncoderConfig::ResNet(ResNetConfig::resnet18(stem));
    simclr_step(c, "resnet18_simclr_step_b64_32x32", resnet18(Stem::Cifar), [64, 3, 32, 32], 40, false);
    simclr_step(c, "resnet18_simclr_step_b256_32x32", resnet18(Stem::Cifar), [256, 3, 32, 32], 90, false);
    simclr_step(c, "resnet18_simclr_step_b32_96x96", resnet18(Stem::ImageNet), [32, 3, 96, 96], 40, false);
    let resnet50 = EncoderConfig::ResNet(ResNetConfig::resnet50(Stem::ImageNet));
    simclr_step(c, "resnet50_simclr_step_b32_96x96", resnet50, [32, 3, 96, 96], 90, false);
}

/// ResNet-50 (ImageNet stem) in evaluation mode on 32 images at 96x96: what embedding a dataset
/// costs.
fn resnet50_forward(c: &mut Criterion) {
    contrastive_core::alloc::keep_freed_memory();
    contrastive_core::candle_pool::configure_candle_pool(0);
    let store = ParamStore::new(0, InitScheme::PyTorch);
    let vb = store.var_builder(DType::F32, &Device::Cpu);
    let encoder = Encoder::new(&EncoderConfig::ResNet(ResNetConfig::resnet50(Stem::ImageNet)), vb).unwrap();
    let x = random(&[32, 3, 96, 96], 1);
    let mut group = c.benchmark_group("vision");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(20));
    group.bench_function("resnet50_forward_b32_96x96", |b| b.iter(|| encoder.forward_t(&x, false).unwrap()));
    group.finish();
}

criterion_group!(benches, conv_block, steps, resnet50_forward);
criterion_main!(benches);
