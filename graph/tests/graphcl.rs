//! GraphCL against a fixture dumped from the PyTorch reference's model (`bench/pytorch/graphcl_torch.py`): forward,
//! loss, every gradient and one Adam step in f64; gradient flow; a tiny overfit run.

use candle_core::{DType, Device, Tensor};
use contrastive_core::nn::check_gradients;
use contrastive_core::optim::{Optimizer, OptimizerConfig};
use contrastive_core::train::Objective;
use contrastive_graph::{GinConfig, GraphBatch, GraphCl, GraphClConfig, GraphViews};
use std::collections::HashMap;
use std::path::Path;

fn fixture() -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/graphcl_fixture_f64.safetensors");
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn batch(fx: &HashMap<String, Tensor>, v: usize) -> GraphBatch {
    let b: Vec<i64> = fx[&format!("in.b{v}")].to_vec1().unwrap();
    let graphs = (*b.last().unwrap() + 1) as usize;
    let mut counts = vec![0usize; graphs];
    b.iter().for_each(|&g| counts[g as usize] += 1);
    let ei = fx[&format!("in.ei{v}")].to_dtype(DType::U32).unwrap();
    GraphBatch {
        x: fx[&format!("in.x{v}")].clone(),
        src: ei.get(0).unwrap(),
        dst: ei.get(1).unwrap(),
        batch: fx[&format!("in.b{v}")].to_dtype(DType::U32).unwrap(),
        node_counts: counts,
    }
}

/// PyTorch names (`encoder.mlps.0.0.weight`, `proj_head.2.bias`) are ours as they stand.
fn load(model: &GraphCl, fx: &HashMap<String, Tensor>, prefix: &str) {
    let mut w = HashMap::new();
    for (k, v) in fx {
        if let Some(name) = k.strip_prefix(prefix) {
            if !name.ends_with("num_batches_tracked") {
                w.insert(name.to_string(), v.clone());
            }
        }
    }
    model.params().set_all(&w, Path::new("graphcl_fixture_f64.safetensors")).unwrap();
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn graphcl_matches_the_pytorch_reference_in_f64() {
    let fx = fixture();
    let mut model = GraphCl::new(GraphClConfig::paper(33), 0, DType::F64, &Device::Cpu).unwrap();
    load(&model, &fx, "params.");
    let views = GraphViews { first: batch(&fx, 1), second: batch(&fx, 2) };
    let h1 = model.encoder().forward_t(&views.first, true).unwrap();
    let h2 = model.encoder().forward_t(&views.second, true).unwrap();
    assert!(max_diff(&h1, &fx["out.h1"]) < 1e-9 && max_diff(&h2, &fx["out.h2"]) < 1e-9);
    // Reload (the passes above moved the running statistics), then the objective's own path.
    load(&model, &fx, "params.");
    let (z1, z2) = model.project(&views).unwrap();
    assert!(max_diff(&z1, &fx["out.z1"]) < 1e-9 && max_diff(&z2, &fx["out.z2"]) < 1e-9);
    let loss = model.loss_of(&z1, &z2).unwrap();
    let want = fx["out.loss"].to_vec1::<f64>().unwrap()[0];
    assert!((loss.to_scalar::<f64>().unwrap() - want).abs() < 1e-10, "loss {loss} vs {want}");
    let grads = loss.backward().unwrap();
    for (name, var) in model.params().trainable() {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        let d = max_diff(g, &fx[&format!("grad.{name}")]);
        assert!(d < 1e-9, "gradient of {name} differs by {d}");
    }
    // One Adam step (lr 0.01, no weight decay), and the running statistics of the two passes.
    let mut opt = Optimizer::new(
        OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
        model.params().trainable(),
    )
    .unwrap();
    opt.step(&grads, 0.01).unwrap();
    // Adam's first step is lr·g/(|g| + 1e-8): where a gradient is near 1e-16 (a bias behind a
    // BatchNorm), its last-bit rounding moves the step by up to about 1e-8, hence 1e-7 here.
    for (name, var) in model.params().all() {
        let d = max_diff(var.as_tensor(), &fx[&format!("step1.{name}")]);
        assert!(d < 1e-7, "{name} after one step differs by {d}");
    }
    let _ = model.loss(&views).unwrap();
}

#[test]
fn every_variable_learns_with_each_readout_and_epsilon() {
    use contrastive_graph::{Epsilon, GraphClLoss, Readout};
    let fx = fixture();
    let views = GraphViews { first: batch(&fx, 1), second: batch(&fx, 2) };
    for readout in [Readout::Sum, Readout::Mean, Readout::Max] {
        for (epsilon, concat) in [(Epsilon::Learnable, true), (Epsilon::Fixed(0.1), false)] {
            let gin = GinConfig { input_dim: 33, hidden_dim: 16, layers: 2, epsilon, readout, concat_layers: concat };
            let config = GraphClConfig { gin, temperature: 0.5, loss: GraphClLoss::NtXent };
            let mut model = GraphCl::new(config, 1, DType::F64, &Device::Cpu).unwrap();
            let grads = model.loss(&views).unwrap().backward().unwrap();
            check_gradients(model.params(), &grads).unwrap_or_else(|e| panic!("{readout:?} {epsilon:?}: {e}"));
        }
    }
}

/// A graph encoder of the test's own: a linear map of the node features, ReLU, and a sum per
/// graph. No GIN layer, no message passing: GraphCL trains it all the same.
struct NodeBag(candle_nn::Linear);

impl contrastive_core::Backbone for NodeBag {
    type Input = GraphBatch;
    fn encode(&self, batch: &GraphBatch, _train: bool) -> candle_core::Result<Tensor> {
        use candle_core::Module;
        let h = self.0.forward(&batch.x)?.relu()?;
        Tensor::zeros((batch.num_graphs(), h.dim(1)?), h.dtype(), h.device())?.index_add(&batch.batch, &h, 0)
    }
    fn dim(&self) -> usize {
        8
    }
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "node_bag": [33, 8] })
    }
}

#[test]
fn graphcl_trains_a_graph_backbone_defined_in_the_test() {
    use contrastive_graph::GraphClLoss;
    let fx = fixture();
    let views = GraphViews { first: batch(&fx, 1), second: batch(&fx, 2) };
    let build = |vb: candle_nn::VarBuilder| Ok(NodeBag(candle_nn::linear(33, 8, vb.pp("lin"))?));
    let mut model = GraphCl::with_backbone(build, 0.5, GraphClLoss::NtXent, 2, DType::F64, &Device::Cpu).unwrap();
    let names: Vec<String> = model.params().all().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"encoder.lin.weight".to_string()) && names.contains(&"proj_head.2.bias".to_string()));
    assert_eq!(model.config()["graphcl"]["gin"], serde_json::json!({ "node_bag": [33, 8] }));
    let mut opt = Optimizer::new(OptimizerConfig::adamw(), model.params().trainable()).unwrap();
    let first = model.loss(&views).unwrap().to_scalar::<f64>().unwrap();
    let mut last = first;
    for _ in 0..30 {
        let loss = model.loss(&views).unwrap();
        last = loss.to_scalar::<f64>().unwrap();
        opt.step(&loss.backward().unwrap(), 1e-2).unwrap();
    }
    assert!(last < first - 0.1, "loss did not fall: {first} -> {last}");
    assert!(GraphCl::with_backbone(build, 0.0, GraphClLoss::NtXent, 2, DType::F64, &Device::Cpu).is_err());
}
