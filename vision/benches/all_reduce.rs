//! What data parallelism adds to a step: the trainer's gradient average (all-reduce in 16 MB
//! buckets, the tensors copied out and back) over SimCLR's ResNet-18 (CIFAR stem, head 512-512-128)
//! between 2 processes on this machine, over loopback. `cargo bench -p contrastive-vision
//! --features mpi --bench all_reduce` starts itself under `mpirun -np 2` (loopback only, inside a
//! network namespace with only `lo` where `unshare -n` is permitted) and prints rank 0's timing.

use candle_core::{Device, Tensor};
use contrastive_core::collective::{Collective, Mpi};
use contrastive_core::nn::ProjectionHeadConfig;
use contrastive_core::train::{average_gradients, Objective};
use contrastive_vision::{EncoderConfig, ResNetConfig, SimClr, SimClrConfig, Stem, ViewBatch};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../../core/tests/support/mpirun.rs"]
mod support;

const WORKER: &str = "CONTRASTIVE_MPI_WORKER";

fn main() {
    if std::env::var(WORKER).is_ok() {
        worker();
        return;
    }
    if !support::have_mpirun() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let run = support::mpirun(2, &exe, &[], &[(WORKER, "1")], Duration::from_secs(600));
    print!("{}", run.stdout);
    assert!(run.status.success(), "{}", run.stderr);
}

fn worker() {
    let collective: Arc<dyn Collective> = Arc::new(Mpi::init().unwrap());
    let config = SimClrConfig {
        encoder: EncoderConfig::ResNet(ResNetConfig::resnet18(Stem::Cifar)),
        head: ProjectionHeadConfig::simclr_v1(512),
        temperature: 0.5,
    };
    let mut model = SimClr::new(config, 0, &Device::Cpu).unwrap();
    let batch = |_: f64| Tensor::rand(0f32, 1f32, (8, 3, 32, 32), &Device::Cpu).unwrap();
    let views = ViewBatch { first: batch(0.5), second: batch(0.7), indices: (0..8).collect() };
    let loss = model.loss(&views).unwrap();
    let vars: Vec<_> = model.params().trainable().into_iter().map(|(_, v)| v).collect();
    let values: usize = vars.iter().map(|v| v.elem_count()).sum();
    let mut times = vec![];
    for round in 0..12 {
        let mut grads = loss.backward().unwrap();
        let mut shared = [1.0f32, 0.0];
        collective.barrier().unwrap();
        let started = Instant::now();
        average_gradients(&mut grads, &vars, &mut shared, collective.as_ref()).unwrap();
        // Two rounds to warm up the connection and the allocator.
        if round >= 2 {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    if collective.rank() == 0 {
        let median = times[times.len() / 2];
        println!(
            "all_reduce/resnet18_simclr_gradients: {values} values ({:.1} MB), 2 processes on loopback: median {:.1} ms, min {:.1} ms over {} rounds ({:.2} GB/s of gradient)",
            values as f64 * 4e-6,
            median * 1e3,
            times[0] * 1e3,
            times.len(),
            values as f64 * 4e-9 / median
        );
    }
}
