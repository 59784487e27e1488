//! GraphCL speed on BZR163, batch 128, f32 on the CPU:
//!
//! - `augment_and_batch`: two views of 128 graphs (random2: node dropping or subgraph, ratio 0.2)
//!   and their block-diagonal batches;
//! - `train_step`: GIN 3 x 32 forward on both views, projection head, GraphCL's loss, backward,
//!   Adam, on prepared batches.
//!
//! Compare with `python3 bench/pytorch/graphcl_torch.py --timing` in the same sitting.
//!
//!     cargo bench -p contrastive-graph --bench graphcl_step
#![allow(missing_docs)] // criterion_group! generates an undocumented function

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use candle_core::{DType, Device};
use contrastive_core::augment::{Augment, RandomChoice};
use contrastive_core::data::{Collate, ViewPair};
use contrastive_core::optim::{Optimizer, OptimizerConfig};
use contrastive_core::rng::sample_rng;
use contrastive_core::train::Objective;
use contrastive_graph::augment::{NodeDrop, Subgraph};
use contrastive_graph::{load_tu, CollateGraphs, Graph, GraphCl, GraphClConfig, TuOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::Path;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    contrastive_core::alloc::keep_freed_memory();
    contrastive_core::candle_pool::configure_candle_pool(0);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/BZR163");
    let graphs = load_tu(&dir, TuOptions { node_label_classes: Some(33) }).unwrap().graphs;
    let batch: Vec<Graph> = graphs.iter().cycle().take(128).cloned().collect();
    let aug = RandomChoice::<Graph>(vec![Box::new(NodeDrop { ratio: 0.2 }), Box::new(Subgraph { ratio: 0.2 })]);
    let collate = CollateGraphs { device: Device::Cpu };
    let views = |epoch: usize| {
        let pairs: Vec<ViewPair<Graph>> = batch
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let mut rng = sample_rng(0, epoch, i);
                let first = aug.apply(g.clone(), &mut rng).unwrap();
                let second = aug.apply(g.clone(), &mut rng).unwrap();
                ViewPair { index: i, first, second }
            })
            .collect();
        collate.collate(pairs).unwrap()
    };
    let mut group = c.benchmark_group("graphcl_bzr163_b128");
    group.throughput(Throughput::Elements(128));
    group.sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    let mut epoch = 0;
    group.bench_function("augment_and_batch", |b| {
        b.iter(|| {
            epoch += 1;
            views(epoch)
        })
    });
    let mut model = GraphCl::new(GraphClConfig::paper(33), 0, DType::F32, &Device::Cpu).unwrap();
    let config = OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
    let mut opt = Optimizer::new(config, model.params().trainable()).unwrap();
    let prepared: Vec<_> = (0..8).map(views).collect();
    let mut i = 0;
    group.bench_function("train_step", |b| {
        b.iter(|| {
            i += 1;
            let grads = model.loss(&prepared[i % prepared.len()]).unwrap().backward().unwrap();
            opt.step(&grads, 0.01).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
