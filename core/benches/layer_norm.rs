//! LayerNorm forward plus backward on (2048, 384) f32, the loss `mean(ln(x)^2)` as in
//! `bench/pytorch/torch_ref.py layernorm`: the fused op against the composite form.
//!
//!     cargo bench -p contrastive-core --bench layer_norm
#![allow(missing_docs)] // criterion_group! generates an undocumented function

// glibc's malloc hands large freed buffers back to the OS and page-faults them in again on the
// next step, which costs candle more than the arithmetic (3-4x on LayerNorm); mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::{DType, Device, Module, Tensor, Var};
use contrastive_core::nn::{layer_norm, InitScheme, ParamStore};
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let store = ParamStore::new(0, InitScheme::PyTorch);
    let ln = layer_norm(384, 1e-5, store.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let values: Vec<f32> = (0..2048 * 384).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let x = Var::from_tensor(&Tensor::from_vec(values, (2048, 384), &Device::Cpu).unwrap()).unwrap();
    let mut group = c.benchmark_group("layernorm_fwd_bwd_2048x384");
    group.sample_size(30).measurement_time(Duration::from_secs(5));
    group.bench_function("fused", |b| {
        b.iter(|| ln.forward(x.as_tensor()).unwrap().sqr().unwrap().mean_all().unwrap().backward().unwrap())
    });
    group.bench_function("composite", |b| {
        b.iter(|| ln.forward_composite(x.as_tensor()).unwrap().sqr().unwrap().mean_all().unwrap().backward().unwrap())
    });
    // The op alone: forward, then backward from a fixed upstream gradient (torch: y.backward(g)).
    let g =
        Tensor::from_vec((0..2048 * 384).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>(), (2048, 384), &Device::Cpu)
            .unwrap();
    group.bench_function("fused_op_only", |b| {
        b.iter(|| (ln.forward(x.as_tensor()).unwrap() * &g).unwrap().sum_all().unwrap().backward().unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
