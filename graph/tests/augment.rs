//! Augmentation properties: ratios honoured, indices valid, edges symmetric and unique, p = 0
//! identity, the subgraph reaching several hops, same seed same view; and a tiny GraphCL run.

use candle_core::{DType, Device};
use contrastive_core::augment::{Augment, RandomChoice};
use contrastive_core::data::{Loader, LoaderConfig};
use contrastive_core::optim::{OptimizerConfig, Schedule};
use contrastive_core::rng::sample_rng;
use contrastive_core::train::{read_history, Trainer, TrainerConfig};
use contrastive_graph::augment::{AttrMask, EdgePerturb, NodeDrop, Subgraph};
use contrastive_graph::{load_tu, CollateGraphs, Graph, GraphCl, GraphClConfig, TuOptions};
use std::path::Path;

/// A path of `n` nodes with one-hot features of the node index modulo 4.
fn path(n: usize) -> Graph {
    let mut f = vec![0f32; n * 4];
    for i in 0..n {
        f[i * 4 + i % 4] = 1.0;
    }
    let edges: Vec<(usize, usize, u32)> = (1..n).map(|i| (i - 1, i, 0)).collect();
    Graph::new(f, 4, &edges, 0).unwrap()
}

fn check_valid(g: &Graph) {
    let n = g.num_nodes();
    let mut seen = std::collections::BTreeSet::new();
    for (u, v, _) in g.edges() {
        assert!(u < v && v < n, "edge ({u}, {v}) in a graph of {n} nodes");
        assert!(seen.insert((u, v)), "edge ({u}, {v}) twice");
    }
    assert_eq!(g.features.len(), n * g.feature_dim);
}

#[test]
fn ratios_are_honoured_and_graphs_stay_valid() {
    let g = path(40);
    for i in 0..30 {
        let rng = &mut sample_rng(1, 0, i);
        let dropped = NodeDrop { ratio: 0.25 }.apply(g.clone(), rng).unwrap();
        assert_eq!(dropped.num_nodes(), 30);
        check_valid(&dropped);
        let removed = EdgePerturb { ratio: 0.2, add: false }.apply(g.clone(), rng).unwrap();
        assert_eq!((removed.num_nodes(), removed.num_edges()), (40, 39 - 7));
        check_valid(&removed);
        let perturbed = EdgePerturb { ratio: 0.2, add: true }.apply(g.clone(), rng).unwrap();
        assert_eq!(perturbed.num_edges(), 39);
        assert_ne!(perturbed.edges(), g.edges());
        check_valid(&perturbed);
        let masked = AttrMask { ratio: 0.5, mean: 0.5, std: 0.5 }.apply(g.clone(), rng).unwrap();
        let changed = (0..40).filter(|&k| masked.feature_row(k) != g.feature_row(k)).count();
        assert_eq!(changed, 20);
        assert_eq!(masked.edges(), g.edges());
        let sub = Subgraph { ratio: 0.2 }.apply(g.clone(), rng).unwrap();
        assert_eq!(sub.num_nodes(), 9);
        check_valid(&sub);
        // Induced from a connected grow: a path of 9 nodes keeps 8 edges.
        assert_eq!(sub.num_edges(), 8);
    }
}

#[test]
fn subgraph_reaches_many_hops() {
    // On a path, one hop from the start gives at most 3 nodes; 21 nodes need 10 or more hops.
    let g = path(60);
    let sub = Subgraph { ratio: 1.0 / 3.0 }.apply(g, &mut sample_rng(0, 0, 3)).unwrap();
    assert_eq!(sub.num_nodes(), 21);
    assert_eq!(sub.num_edges(), 20, "the kept nodes form one connected stretch");
}

#[test]
fn ratio_zero_is_identity_and_seeds_repeat() {
    let g = path(12);
    let augs: Vec<Box<dyn Augment<Graph>>> = vec![
        Box::new(NodeDrop { ratio: 0.0 }),
        Box::new(EdgePerturb { ratio: 0.0, add: true }),
        Box::new(AttrMask { ratio: 0.0, mean: 0.5, std: 0.5 }),
    ];
    for a in &augs {
        let out = a.apply(g.clone(), &mut sample_rng(0, 0, 0)).unwrap();
        assert_eq!((out.edges(), out.features.clone()), (g.edges(), g.features.clone()));
    }
    let choice = RandomChoice::<Graph>(vec![
        Box::new(NodeDrop { ratio: 0.2 }),
        Box::new(EdgePerturb { ratio: 0.2, add: true }),
        Box::new(Subgraph { ratio: 0.2 }),
        Box::new(AttrMask { ratio: 0.2, mean: 0.5, std: 0.5 }),
    ]);
    let view = |i| choice.apply(path(30), &mut sample_rng(5, 0, i)).unwrap();
    let (a, b) = (view(7), view(7));
    assert_eq!((a.edges(), a.features.clone()), (b.edges(), b.features.clone()));
    let differ = (0..20)
        .filter(|&i| view(i).features != view(i + 50).features || view(i).edges() != view(i + 50).edges())
        .count();
    assert!(differ >= 15, "{differ} of 20");
    assert!(NodeDrop { ratio: 1.5 }.apply(path(3), &mut sample_rng(0, 0, 0)).is_err());
}

#[test]
fn graphcl_overfits_bzr163() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/BZR163");
    let graphs = load_tu(&dir, TuOptions { node_label_classes: Some(33) }).unwrap().graphs;
    let aug = RandomChoice::<Graph>(vec![Box::new(NodeDrop { ratio: 0.1 }), Box::new(Subgraph { ratio: 0.9 })]);
    let config = LoaderConfig { batch_size: 64, seed: 0, shuffle: true, drop_last: true, threads: 2 };
    let loader = Loader::new(graphs, aug, CollateGraphs { device: Device::Cpu }, config).unwrap();
    let run = |dir: &Path| {
        let model = GraphCl::new(GraphClConfig::paper(33), 0, DType::F32, &Device::Cpu).unwrap();
        let tc = TrainerConfig {
            epochs: 15,
            lr: 0.01,
            schedule: Schedule::Constant,
            optimizer: OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
            checkpoint_every: None,
            progress: false,
            ..TrainerConfig::default()
        };
        let mut trainer = Trainer::new(tc, model).unwrap().with_run_dir(dir);
        trainer.fit(&loader).unwrap();
        read_history(&dir.join("history.jsonl")).unwrap().iter().filter_map(|r| r.loss).collect::<Vec<f64>>()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (la, lb) = (run(a.path()), run(b.path()));
    assert_eq!(la, lb, "same seed, same losses");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (first, last) = (mean(&la[..4]), mean(&la[la.len() - 4..]));
    assert!(last < first - 0.5, "loss did not fall: {first:.3} -> {last:.3}");
}

#[test]
fn augmentation_sets_parse_by_name_and_hold_their_members() {
    use contrastive_graph::augment::AugmentationSet;
    for set in AugmentationSet::ALL {
        assert_eq!(set.name().parse::<AugmentationSet>().unwrap(), set);
        // The serialised name (run records, configs) is the same name.
        assert_eq!(serde_json::to_value(set).unwrap(), serde_json::json!(set.name()));
    }
    let members = |s: AugmentationSet| s.build(0.2).0.len();
    assert_eq!(
        AugmentationSet::ALL.map(members),
        [2, 3, 4, 1, 1, 1, 1],
        "random2, random3, random4, then the single augmentations"
    );
    let err = "random5".parse::<AugmentationSet>().unwrap_err().to_string();
    assert!(err.contains("`random5`") && err.contains("random2, random3"), "{err}");
}
