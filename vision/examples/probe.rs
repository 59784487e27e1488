use candle_core::{DType, Device, Tensor, Var};
use contrastive_core::loss::{barlow_twins, vicreg, VicRegWeights};
use contrastive_core::nn::{InitScheme, ParamStore, ProjectionHead, ProjectionHeadConfig};
use contrastive_core::optim::{Optimizer, OptimizerConfig};
use std::time::Instant;

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

fn time(name: &str, n: usize, mut f: impl FnMut()) {
    for _ in 0..2 {
        f();
    }
    let mut v = vec![];
    for _ in 0..n {
        let t = Instant::now();
        f();
        v.push(t.elapsed().as_secs_f64());
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("{name:40} median {:.1} ms", v[n / 2] * 1e3);
}

fn main() {
    contrastive_core::alloc::keep_freed_memory();
    let dev = Device::Cpu;
    let za = Var::from_tensor(&Tensor::randn(0f32, 1., (256, 2048), &dev).unwrap()).unwrap();
    let zb = Var::from_tensor(&Tensor::randn(0f32, 1., (256, 2048), &dev).unwrap()).unwrap();
    time("bt loss fwd", 10, || {
        barlow_twins(&za, &zb, 5e-3).unwrap();
    });
    time("bt loss fwd+bwd", 10, || {
        barlow_twins(&za, &zb, 5e-3).unwrap().backward().unwrap();
    });
    let w = VicRegWeights::default();
    time("vicreg loss fwd+bwd", 10, || {
        vicreg(&za, &zb, &w).unwrap().backward().unwrap();
    });
    let mm = za.t().unwrap().contiguous().unwrap();
    time("matmul 2048x256x2048", 10, || {
        mm.matmul(&zb).unwrap();
    });
    let h = Tensor::randn(0f32, 1., (256, 2048), &dev).unwrap();
    let w = Tensor::randn(0f32, 1., (2048, 2048), &dev).unwrap();
    time("h @ w.t() 256x2048x2048", 10, || {
        h.matmul(&w.t().unwrap()).unwrap();
    });
    let wt = w.t().unwrap().contiguous().unwrap();
    time("h @ wt contiguous", 10, || {
        h.matmul(&wt).unwrap();
    });
    time("h.t() @ h  (weight grad shape)", 10, || {
        h.t().unwrap().matmul(&h).unwrap();
    });
    let bn =
        contrastive_core::nn::batch_norm(2048, ParamStore::new(0, InitScheme::PyTorch).var_builder(DType::F32, &dev))
            .unwrap();
    time("bn train fwd 256x2048", 10, || {
        bn.forward_train(&h, false).unwrap();
    });
    time("relu 256x2048", 10, || {
        h.relu().unwrap();
    });
    time("broadcast_sub mean", 10, || {
        h.broadcast_sub(&h.mean_keepdim(0).unwrap()).unwrap();
    });
    time("add 2048^2 contiguous", 10, || {
        w.add(&wt).unwrap();
    });
    time("add 2048^2 strided rhs", 10, || {
        w.add(&w.t().unwrap()).unwrap();
    });
    time("zeros_like 2048^2", 10, || {
        w.zeros_like().unwrap();
    });
    let store = ParamStore::new(0, InitScheme::PyTorch);
    let cfg = ProjectionHeadConfig {
        input_dim: 256,
        hidden_dim: 2048,
        output_dim: 2048,
        layers: 3,
        batch_norm: true,
        output_batch_norm: false,
    };
    let head = ProjectionHead::new(&cfg, store.var_builder(DType::F32, &dev)).unwrap();
    let x1 = Tensor::randn(0f32, 1., (256, 256), &dev).unwrap();
    let x2 = Tensor::randn(0f32, 1., (256, 256), &dev).unwrap();
    time("projector fwd x2", 10, || {
        head.forward_t(&x1, true).unwrap();
        head.forward_t(&x2, true).unwrap();
    });
    time("projector fwd x2 + sum bwd", 10, || {
        let a = head.forward_t(&x1, true).unwrap();
        let b = head.forward_t(&x2, true).unwrap();
        (a.sum_all().unwrap() + b.sum_all().unwrap()).unwrap().backward().unwrap();
    });
    time("projector + bt loss fwd+bwd", 10, || {
        let a = head.forward_t(&x1, true).unwrap();
        let b = head.forward_t(&x2, true).unwrap();
        barlow_twins(&a, &b, 5e-3).unwrap().backward().unwrap();
    });
    let store2 = ParamStore::new(0, InitScheme::PyTorch);
    let cfg2 = ProjectionHeadConfig { batch_norm: false, ..cfg.clone() };
    let head2 = ProjectionHead::new(&cfg2, store2.var_builder(DType::F32, &dev)).unwrap();
    time("projector NO BN fwd x2 + sum bwd", 10, || {
        let a = head2.forward_t(&x1, true).unwrap();
        let b = head2.forward_t(&x2, true).unwrap();
        (a.sum_all().unwrap() + b.sum_all().unwrap()).unwrap().backward().unwrap();
    });
    let wv = Var::from_tensor(&w).unwrap();
    let hv = Var::from_tensor(&h).unwrap();
    time("matmul h@w.t() fwd+bwd", 10, || {
        hv.matmul(&wv.t().unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
    });
    time("bn fwd+bwd", 10, || {
        bn.forward_train(&hv, false).unwrap().sum_all().unwrap().backward().unwrap();
    });
    let adam = OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-6 };
    let mut opt = Optimizer::new(adam, store.trainable()).unwrap();
    let a = head.forward_t(&x1, true).unwrap();
    let b = head.forward_t(&x2, true).unwrap();
    let grads = barlow_twins(&a, &b, 5e-3).unwrap().backward().unwrap();
    time("adamw step (projector)", 10, || {
        opt.step(&grads, 1e-3).unwrap();
    });
}
