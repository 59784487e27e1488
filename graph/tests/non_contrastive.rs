//! The two-view methods without negatives on graphs: VICReg and BYOL train GIN on BZR163 with
//! GraphCL's augmentations (`GraphViews` as `ViewPairs`): the loss falls and the graph
//! embeddings stay spread (the collapse monitor's figures in the history).

use candle_core::Device;
use contrastive_core::data::{Loader, LoaderConfig};
use contrastive_core::methods::{Byol, ByolConfig, VicReg, VicRegConfig};
use contrastive_core::optim::{OptimizerConfig, Schedule};
use contrastive_core::train::{read_history, Objective, Progress, Trainer, TrainerConfig};
use contrastive_core::Backbone;
use contrastive_graph::augment::AugmentationSet;
use contrastive_graph::{load_tu, CollateGraphs, Gin, GinConfig, Graph, GraphBatch, GraphViews, TuOptions};
use std::path::Path;

fn graphs() -> Vec<Graph> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/BZR163");
    load_tu(&dir, TuOptions { node_label_classes: Some(33) }).unwrap().graphs
}

fn gin(vb: candle_nn::VarBuilder) -> contrastive_core::Result<Gin> {
    Gin::new(&GinConfig { hidden_dim: 32, layers: 3, ..GinConfig::graphcl(33) }, vb)
}

/// Trains for 8 epochs (5 batches of 32 graphs each) with the collapse monitor on every graph;
/// returns the step losses and the last (std, effective rank).
fn train<O>(objective: O, encoder: fn(&O) -> &Gin) -> (Vec<f64>, f64, f64)
where
    O: Objective<Batch = GraphViews> + 'static,
{
    let all = graphs();
    let refs: Vec<&Graph> = all.iter().collect();
    let every = GraphBatch::new(&refs, &Device::Cpu).unwrap();
    let config = LoaderConfig { batch_size: 32, seed: 2, shuffle: true, drop_last: true, threads: 2 };
    let loader =
        Loader::new(all.clone(), AugmentationSet::Random4.build(0.2), CollateGraphs { device: Device::Cpu }, config)
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let trainer_config = TrainerConfig {
        epochs: 8,
        lr: 1e-3,
        schedule: Schedule::Constant,
        optimizer: OptimizerConfig::adamw(),
        progress: false,
        ..Default::default()
    };
    let mut trainer = Trainer::new(trainer_config, objective).unwrap().with_run_dir(dir.path());
    trainer.add_collapse_monitor(1, move |o: &mut O, _: &Progress| Ok(encoder(o).encode(&every, false)?));
    trainer.fit(&loader).unwrap();
    let history = read_history(&dir.path().join("history.jsonl")).unwrap();
    let losses: Vec<f64> = history.iter().filter_map(|r| r.loss).collect();
    let last = &history.iter().rev().find(|r| !r.eval.is_empty()).unwrap().eval;
    (losses, last["embedding_std"], last["effective_rank"])
}

fn check(name: &str, (losses, std, rank): (Vec<f64>, f64, f64)) {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (first, last) = (mean(&losses[..5]), mean(&losses[losses.len() - 5..]));
    assert!(last < first, "{name}: the loss did not fall: {first} -> {last}");
    assert!(std > 0.1 && rank > 1.5, "{name}: collapsed: std {std}, effective rank {rank}");
}

#[test]
fn vicreg_and_byol_train_gin_on_graph_views() {
    let dev = Device::Cpu;
    let width = GinConfig { hidden_dim: 32, layers: 3, ..GinConfig::graphcl(33) }.output_dim();
    let vicreg: VicReg<Gin, GraphViews> =
        VicReg::new(gin, VicRegConfig::with_widths(width, 128, 128), 0, &dev).unwrap();
    check("VICReg", train(vicreg, VicReg::encoder));
    let byol: Byol<Gin, GraphViews> = Byol::new(gin, ByolConfig::with_widths(width, 128, 64), 0, &dev).unwrap();
    check("BYOL", train(byol, Byol::encoder));
}
