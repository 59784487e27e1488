//! Gradient caching on graphs: a slice of a graph batch is the batch of those graphs, and GraphCL
//! through the cache gives the full batch's loss and gradients on a backbone without BatchNorm
//! (GIN's BatchNorm normalises each chunk on its own: with one chunk of the whole batch it is the
//! plain step again).

use candle_core::{DType, Device, Module, Tensor};
use contrastive_core::grad_cache::{GradCache, RowSlice};
use contrastive_core::nn::{linear, Linear};
use contrastive_core::train::Objective;
use contrastive_core::Backbone;
use contrastive_graph::{load_tu, GraphBatch, GraphCl, GraphClConfig, GraphClLoss, GraphViews, TuOptions};
use std::path::Path;

fn graphs() -> Vec<contrastive_graph::Graph> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/BZR163");
    load_tu(&dir, TuOptions { node_label_classes: Some(33) }).unwrap().graphs
}

#[test]
fn a_slice_of_a_graph_batch_is_the_batch_of_those_graphs() {
    let all = graphs();
    let refs: Vec<&contrastive_graph::Graph> = all[..20].iter().collect();
    let batch = GraphBatch::new(&refs, &Device::Cpu).unwrap();
    for range in [0..20, 0..1, 3..9, 19..20] {
        let slice = batch.slice_rows(range.clone()).unwrap();
        let direct = GraphBatch::new(&refs[range.clone()], &Device::Cpu).unwrap();
        assert_eq!(slice.node_counts, direct.node_counts, "{range:?}");
        assert_eq!(slice.x.to_vec2::<f32>().unwrap(), direct.x.to_vec2::<f32>().unwrap(), "{range:?}");
        for (a, b) in [(&slice.src, &direct.src), (&slice.dst, &direct.dst), (&slice.batch, &direct.batch)] {
            assert_eq!(a.to_vec1::<u32>().unwrap(), b.to_vec1::<u32>().unwrap(), "{range:?}");
        }
    }
    assert!(batch.slice_rows(18..21).is_err() && batch.slice_rows(4..4).is_err());
}

/// One round of message passing (own + neighbours' features), a linear layer, sum readout: no
/// BatchNorm.
struct Sums(Linear);

impl Backbone for Sums {
    type Input = GraphBatch;
    fn encode(&self, b: &GraphBatch, _train: bool) -> candle_core::Result<Tensor> {
        let neighbours = b.x.zeros_like()?.index_add(&b.dst, &b.x.index_select(&b.src, 0)?, 0)?;
        let h = self.0.forward(&(&b.x + neighbours)?)?.tanh()?;
        Tensor::zeros((b.num_graphs(), h.dim(1)?), h.dtype(), h.device())?.index_add(&b.batch, &h, 0)
    }
    fn dim(&self) -> usize {
        8
    }
}

fn gradients(model: &impl Objective, loss: &Tensor) -> Vec<(String, Vec<f32>)> {
    let grads = loss.backward().unwrap();
    let all = model.params().trainable();
    all.into_iter()
        .map(|(n, v)| (n, grads.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

fn compare(
    plain: &mut impl Objective<Batch = GraphViews>,
    cached: &mut impl Objective<Batch = GraphViews>,
    views: &GraphViews,
) -> f32 {
    let loss = plain.loss(views).unwrap();
    let expected = gradients(plain, &loss);
    let cached_loss = cached.loss(views).unwrap();
    let (x, y) = (loss.to_scalar::<f32>().unwrap(), cached_loss.to_scalar::<f32>().unwrap());
    assert!((x - y).abs() < 1e-5, "loss {x} whole, {y} cached");
    let mut largest = 0.0f32;
    for ((name, u), (_, v)) in expected.iter().zip(&gradients(cached, &cached_loss)) {
        for (p, q) in u.iter().zip(v) {
            largest = largest.max((p - q).abs());
            assert!((p - q).abs() < 1e-5, "{name}: {p} whole, {q} cached");
        }
    }
    largest
}

#[test]
fn graphcl_with_gradient_caching_gives_the_full_batch_loss_and_gradients() {
    let all = graphs();
    let refs: Vec<&contrastive_graph::Graph> = all[..16].iter().collect();
    let shifted: Vec<&contrastive_graph::Graph> = all[16..32].iter().collect();
    let views = GraphViews {
        first: GraphBatch::new(&refs, &Device::Cpu).unwrap(),
        second: GraphBatch::new(&shifted, &Device::Cpu).unwrap(),
    };
    let sums = || {
        GraphCl::with_backbone(
            |vb| Ok(Sums(linear(33, 8, vb)?)),
            0.2,
            GraphClLoss::GraphCl,
            5,
            DType::F32,
            &Device::Cpu,
        )
        .unwrap()
    };
    let largest = compare(&mut sums(), &mut GradCache::new(sums(), 5).unwrap(), &views);
    eprintln!("no BatchNorm, chunks of 5: largest gradient difference {largest:e}");
    // GIN: one chunk of the whole batch normalises as the plain step does, and the running
    // statistics move once, as in the plain step (the first pass's updates are undone).
    let gin = || GraphCl::new(GraphClConfig::paper(33), 5, DType::F32, &Device::Cpu).unwrap();
    let (mut plain, mut cached) = (gin(), GradCache::new(gin(), 16).unwrap());
    compare(&mut plain, &mut cached, &views);
    let values = |m: &dyn Fn() -> Vec<(String, candle_core::Var)>| -> Vec<(String, Vec<f32>)> {
        m().into_iter().map(|(n, v)| (n, v.flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect()
    };
    let (a, b) = (values(&|| plain.params().all()), values(&|| cached.params().all()));
    assert!(a.iter().any(|(n, _)| n.contains("running_mean")));
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        for (u, v) in x.iter().zip(y) {
            assert!((u - v).abs() < 1e-6, "{name}: {u} plain, {v} cached");
        }
    }
}
