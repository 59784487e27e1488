//! NT-Xent forward plus backward at N = 256, 1024, 4096, D = 128, f32: the fused kernel and the
//! composite form. Compare with `python3 bench/pytorch/ntxent_torch.py` in the same sitting.
//!
//!     cargo bench -p contrastive-core --bench nt_xent
#![allow(missing_docs)] // criterion_group! generates an undocumented function

// glibc's malloc hands large freed buffers back to the OS and page-faults them in again on the
// next step, which costs candle more than the arithmetic (3-4x on LayerNorm); mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::{Device, Tensor, Var};
use contrastive_core::loss::{Kernel, MaskedInfoNce};
use contrastive_core::sampling::PairMask;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::{Rng, SeedableRng};
use std::time::Duration;

fn random_var(seed: u64, n: usize, d: usize) -> Var {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Var::from_tensor(&Tensor::from_vec(v, (n, d), &Device::Cpu).unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("nt_xent_fwd_bwd_D128");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    for n in [256usize, 1024, 4096] {
        let (z1, z2) = (random_var(1, n, 128), random_var(2, n, 128));
        let mask = PairMask::joint(n);
        for kernel in [Kernel::Fused, Kernel::Composite] {
            let spec = MaskedInfoNce { kernel, ..MaskedInfoNce::new(0.5) };
            group.bench_with_input(BenchmarkId::new(format!("{kernel:?}"), n), &n, |b, _| {
                b.iter(|| {
                    let z = Tensor::cat(&[z1.as_tensor(), z2.as_tensor()], 0).unwrap();
                    let grads = spec.loss(&z, &z, &mask).unwrap().backward().unwrap();
                    assert!(grads.get(&z1).is_some());
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
