//! Layer by layer: each distinct convolution of ResNet-18 (CIFAR stem, 32x32) or ResNet-50
//! (ImageNet stem, 96x96) as the training step runs it (convolution, BatchNorm on the batch's
//! statistics and ReLU, fused, channels-last), forward and then backward of the sum of its
//! outputs, the least of `--reps` runs, with the rate in direct-convolution FLOPs (2 per
//! multiply-add; backward twice the forward's). Where a step's time goes, beside
//! `python3 bench/pytorch/torch_conv_layers.py` (the same layers in PyTorch, same arguments).
//!
//!     cargo bench -p contrastive-vision --bench conv_layers
//!     cargo bench -p contrastive-vision --bench conv_layers -- --net resnet50 --batch 32
#![allow(missing_docs)]

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use candle_core::{DType, Device, Tensor, Var};
use contrastive_core::nn::{InitScheme, ParamStore};
use contrastive_vision::{batch_norm, conv2d, Activation, ConvBn, ConvGeometry};
use rand::{Rng, SeedableRng};
use std::time::Instant;

/// (in, out, kernel, stride, input side) of each distinct convolution.
const RESNET18_CIFAR: [(usize, usize, usize, usize, usize); 11] = [
    (3, 64, 3, 1, 32),
    (64, 64, 3, 1, 32),
    (64, 128, 3, 2, 32),
    (64, 128, 1, 2, 32),
    (128, 128, 3, 1, 16),
    (128, 256, 3, 2, 16),
    (128, 256, 1, 2, 16),
    (256, 256, 3, 1, 8),
    (256, 512, 3, 2, 8),
    (256, 512, 1, 2, 8),
    (512, 512, 3, 1, 4),
];
const RESNET50_96: [(usize, usize, usize, usize, usize); 23] = [
    (3, 64, 7, 2, 96),
    (64, 64, 1, 1, 24),
    (64, 64, 3, 1, 24),
    (64, 256, 1, 1, 24),
    (256, 64, 1, 1, 24),
    (256, 128, 1, 1, 24),
    (128, 128, 3, 2, 24),
    (128, 512, 1, 1, 12),
    (256, 512, 1, 2, 24),
    (512, 128, 1, 1, 12),
    (128, 128, 3, 1, 12),
    (512, 256, 1, 1, 12),
    (256, 256, 3, 2, 12),
    (256, 1024, 1, 1, 6),
    (512, 1024, 1, 2, 12),
    (1024, 256, 1, 1, 6),
    (256, 256, 3, 1, 6),
    (1024, 512, 1, 1, 6),
    (512, 512, 3, 2, 6),
    (512, 2048, 1, 1, 3),
    (1024, 2048, 1, 2, 6),
    (2048, 512, 1, 1, 3),
    (512, 512, 3, 1, 3),
];

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// The value after `--name` on the command line (cargo bench adds arguments of its own).
fn argument(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    contrastive_core::alloc::keep_freed_memory();
    contrastive_core::candle_pool::configure_candle_pool(0);
    let resnet50 = argument("--net").as_deref() == Some("resnet50");
    let layers: &[_] = if resnet50 { &RESNET50_96 } else { &RESNET18_CIFAR };
    let default_batch = if resnet50 { 32 } else { 64 };
    let n = argument("--batch").and_then(|s| s.parse().ok()).unwrap_or(default_batch);
    let reps = argument("--reps").and_then(|s| s.parse().ok()).unwrap_or(8usize);
    let store = ParamStore::new(0, InitScheme::PyTorch);
    let vb = store.var_builder(DType::F32, &Device::Cpu);
    let (mut total_fwd, mut total_bwd) = (0.0, 0.0);
    for (i, &(c, o, k, s, h)) in layers.iter().enumerate() {
        let g = ConvGeometry { in_channels: c, out_channels: o, kernel: k, stride: s, padding: k / 2 };
        let conv = conv2d(g, false, vb.pp(format!("conv{i}"))).unwrap();
        let layer = ConvBn::new(conv, batch_norm(o, vb.pp(format!("bn{i}"))).unwrap(), Activation::Relu);
        let x = Var::from_tensor(&random(&[n, h, h, c], i as u64)).unwrap();
        let (mut fwd, mut bwd) = (f64::MAX, f64::MAX);
        for _ in 0..reps {
            let start = Instant::now();
            let y = layer.forward_t(x.as_tensor(), true).unwrap();
            fwd = fwd.min(start.elapsed().as_secs_f64());
            let loss = y.sum_all().unwrap();
            let start = Instant::now();
            let grads = loss.backward().unwrap();
            bwd = bwd.min(start.elapsed().as_secs_f64());
            drop(grads);
        }
        let side = (h + 2 * (k / 2) - k) / s + 1;
        let flop = 2.0 * (n * side * side * o * c * k * k) as f64;
        println!(
            "{c:5} -> {o:5}  {k}x{k} stride {s}  {h:3}x{h:<3}  forward {:7.2} ms ({:4.0} GFLOP/s)  backward {:7.2} ms ({:4.0} GFLOP/s)",
            fwd * 1e3,
            flop / fwd / 1e9,
            bwd * 1e3,
            2.0 * flop / bwd / 1e9
        );
        (total_fwd, total_bwd) = (total_fwd + fwd, total_bwd + bwd);
    }
    println!("sum of the layers above: forward {:.1} ms, backward {:.1} ms", total_fwd * 1e3, total_bwd * 1e3);
}
