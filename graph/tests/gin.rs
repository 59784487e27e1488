//! One GIN layer against PyTorch Geometric's GINConv, and the block-diagonal batch layout.

use candle_core::{DType, Device, Tensor};
use contrastive_core::nn::{InitScheme, ParamStore};
use contrastive_graph::{Epsilon, Gin, GinConfig, Graph, GraphBatch, Readout};
use std::collections::HashMap;

fn two_graphs() -> (Graph, Graph) {
    let x = |n: usize| (0..3).map(move |f| ((n * 3 + f) % 5) as f32 / 4.0);
    let triangle = Graph::new((0..3).flat_map(x).collect(), 3, &[(0, 1, 0), (1, 2, 0), (0, 2, 0)], 0).unwrap();
    let path = Graph::new((3..6).flat_map(x).collect(), 3, &[(0, 1, 0), (1, 2, 0)], 1).unwrap();
    (triangle, path)
}

// tests/golden/gin_conv.py (torch_geometric 2.8.1):
//   conv = GINConv(Sequential(Linear(3, 4), ReLU(), Linear(4, 4)), eps=0.3), weights set after
//   with W1[i, j] = 0.1 (i - j) + 0.05, b1[i] = 0.02 i, W2[i, j] = 0.3 sin(1 + i + 2j),
//   b2[i] = 0.05 cos(i); h = relu(conv(x, edge_index)) / sqrt(1 + 1e-5); global_add_pool(h, batch)
const GOLDEN: [[f64; 4]; 2] = [
    [0.26623254388631945, 0.7755901532974901, 0.5718737525841964, 0.0],
    [0.2577576556384532, 0.7168674379753436, 0.5168926038412744, 0.0],
];

#[test]
fn one_gin_layer_matches_pytorch_geometric() {
    let store = ParamStore::new(0, InitScheme::PyTorch);
    let config = GinConfig {
        input_dim: 3,
        hidden_dim: 4,
        layers: 1,
        epsilon: Epsilon::Fixed(0.3),
        readout: Readout::Sum,
        concat_layers: false,
    };
    let gin = Gin::new(&config, store.var_builder(DType::F64, &Device::Cpu)).unwrap();
    let w1: Vec<f64> = (0..4).flat_map(|i| (0..3).map(move |j| 0.1 * (i as f64 - j as f64) + 0.05)).collect();
    let w2: Vec<f64> = (0..4).flat_map(|i| (0..4).map(move |j| 0.3 * ((1 + i + 2 * j) as f64).sin())).collect();
    let dev = Device::Cpu;
    let mut w = HashMap::new();
    w.insert("mlps.0.0.weight".to_string(), Tensor::from_vec(w1, (4, 3), &dev).unwrap());
    w.insert(
        "mlps.0.0.bias".to_string(),
        Tensor::from_vec((0..4).map(|i| 0.02 * i as f64).collect::<Vec<_>>(), 4, &dev).unwrap(),
    );
    w.insert("mlps.0.2.weight".to_string(), Tensor::from_vec(w2, (4, 4), &dev).unwrap());
    w.insert(
        "mlps.0.2.bias".to_string(),
        Tensor::from_vec((0..4).map(|i| 0.05 * (i as f64).cos()).collect::<Vec<_>>(), 4, &dev).unwrap(),
    );
    for (k, v) in [("bns.0.weight", 1.0), ("bns.0.bias", 0.0), ("bns.0.running_mean", 0.0), ("bns.0.running_var", 1.0)]
    {
        w.insert(k.to_string(), (Tensor::ones(4, DType::F64, &dev).unwrap() * v).unwrap());
    }
    store.set_all(&w, std::path::Path::new("golden")).unwrap();
    let (a, b) = two_graphs();
    let batch = GraphBatch::new(&[&a, &b], &dev).unwrap();
    let out = gin.forward_t(&batch, false).unwrap().to_vec2::<f64>().unwrap();
    for (g, (row, want)) in out.iter().zip(GOLDEN).enumerate() {
        for (k, (o, w)) in row.iter().zip(want).enumerate() {
            // Our features are f32 in the batch (exact here: multiples of 1/4), the layer f64.
            assert!((o - w).abs() < 1e-12, "graph {g} column {k}: {o} vs {w}");
        }
    }
}

#[test]
fn batches_are_block_diagonal_and_symmetric() {
    let (a, b) = two_graphs();
    let batch = GraphBatch::new(&[&a, &b], &Device::Cpu).unwrap();
    assert_eq!(batch.node_counts, [3, 3]);
    assert_eq!(batch.batch.to_vec1::<u32>().unwrap(), [0, 0, 0, 1, 1, 1]);
    let src = batch.src.to_vec1::<u32>().unwrap();
    let dst = batch.dst.to_vec1::<u32>().unwrap();
    assert_eq!(src.len(), 10);
    let pairs: std::collections::BTreeSet<(u32, u32)> = src.iter().copied().zip(dst.iter().copied()).collect();
    for &(u, v) in &pairs {
        assert!(pairs.contains(&(v, u)), "edge {u}->{v} without its reverse");
        assert_eq!(u < 3, v < 3, "edge {u}->{v} crosses graphs");
    }
    let err = GraphBatch::new(&[&a, &Graph::new(vec![1.0; 4], 4, &[], 0).unwrap()], &Device::Cpu).unwrap_err();
    assert!(
        matches!(&err, contrastive_core::Error::Shape { what, expected, found }
            if what.contains("graph 1") && expected == "(N, 3) as graph 0" && found == &[1, 4]),
        "{err}"
    );
}
