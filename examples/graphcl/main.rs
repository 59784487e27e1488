//! GraphCL on a TU dataset: pretrain a GIN on augmented views, then score its frozen embeddings by
//! 10-fold cross-validated logistic regression beside the untrained GIN and a histogram baseline.
//!
//!     cargo run --release -p contrastive-examples --bin graphcl -- --out runs/graphcl

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use candle_core::DType;
use clap::Parser;
use contrastive_core::data::{BatchSource, Loader, LoaderConfig};
use contrastive_core::grad_cache::GradCache;
use contrastive_core::optim::{OptimizerConfig, Schedule};
use contrastive_core::train::{Objective, Summary, Trainer, TrainerConfig};
use contrastive_core::Result;
use contrastive_eval::{spread_indices, CrossValidation, Items, LinearProbe, MeanStd};
use contrastive_examples::flags::{at_least_one_u64, below_one, positive, CommonFlags, GradCacheFlags};
use contrastive_examples::processes;
use contrastive_examples::report::{finish, plot_run, save_embeddings, write_views, Shown};
use contrastive_graph::augment::AugmentationSet;
use contrastive_graph::{
    label_degree_histogram, load_tu, load_tu_aligned, CollateGraphs, Graph, GraphCl, GraphClConfig, GraphClLoss,
    GraphViews, NodeFeatures, TuOptions,
};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// GraphCL (You et al. 2020) with the reference recipe: GIN 3 x 32, sum readouts concatenated,
/// T = 0.2, Adam 0.01, batch 128, 20 epochs, augmentation ratio 0.2, seeds 0-4.
#[derive(Parser, Debug, serde::Serialize)]
#[command(about)]
struct Cli {
    #[command(flatten)]
    #[serde(flatten)]
    common: CommonFlags,
    /// TU dataset folder to pretrain on (default: the evaluation set itself, --data).
    #[arg(long, value_name = "DIR")]
    pretrain_data: Option<PathBuf>,
    /// Augmentations: random2, random3, random4, node-drop, edge-perturb, subgraph, attr-mask.
    #[arg(long, default_value = "random2")]
    aug: AugmentationSet,
    /// Augmentation ratio.
    #[arg(long, default_value_t = 0.2, value_parser = below_one)]
    aug_ratio: f64,
    /// Seeds to repeat the run over (pretraining and folds).
    #[arg(long, default_value_t = 5, value_parser = at_least_one_u64())]
    seeds: u64,
    /// Learning rate (Adam).
    #[arg(long, default_value_t = 0.01, value_parser = positive)]
    lr: f64,
    /// Temperature.
    #[arg(long, default_value_t = 0.2, value_parser = positive)]
    temperature: f64,
    /// Plain NT-Xent instead of GraphCL's loss.
    #[arg(long)]
    nt_xent: bool,
    #[command(flatten)]
    #[serde(flatten)]
    grad_cache: GradCacheFlags,
    /// Under mpirun: GIN's BatchNorm over every process's nodes (SyncBatchNorm), so N processes
    /// of --batch-size B train as one of N x B.
    #[arg(long)]
    sync_batch_norm: bool,
}

fn run(cli: Cli) -> Result<serde_json::Value> {
    let flags = &cli.common;
    flags.setup()?;
    let device = flags.device()?;
    flags.check_outputs()?;
    flags.claim_run_dir("graphcl", &cli)?;
    let started = Instant::now();
    let data_dir = flags
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../graph/data/BZR163")));
    // Pretraining on another dataset: both are read with one node-feature width.
    let (eval_set, pretrain_set) = match &cli.pretrain_data {
        Some(p) => {
            let [eval, pretrain] = load_tu_aligned([&data_dir, p])?;
            (eval, pretrain)
        }
        None => {
            let set = load_tu(&data_dir, TuOptions::default())?;
            (set.clone(), set)
        }
    };
    let labels = eval_set.labels();
    let input_dim = eval_set.graphs.first().map_or(1, |g| g.feature_dim);
    // Under mpirun (feature mpi) every process contrasts against the global batch; rank 0 alone
    // evaluates, plots and reports.
    let processes = processes::collective_with_batch_norm(cli.sync_batch_norm)?;
    let leader = processes.rank() == 0;
    if leader {
        eprintln!(
            "graphcl: pretrain on {} ({} graphs), evaluate on {} ({} graphs, {} classes), {} node features",
            pretrain_set.name,
            pretrain_set.graphs.len(),
            eval_set.name,
            eval_set.graphs.len(),
            labels.iter().max().map_or(0, |m| m + 1),
            input_dim
        );
    }
    let epochs = flags.epochs.unwrap_or(if flags.quick { 2 } else { 20 });
    let batch_size = flags.batch_size.unwrap_or(128);
    let seeds: Vec<u64> = (0..if flags.quick { 1 } else { cli.seeds.max(1) }).map(|s| flags.seed + s).collect();
    // Each seed's run folder (seed-N below the run folder when there are several).
    let run_dir_of =
        |seed: u64| flags.run_dir().map(|d| if seeds.len() > 1 { d.join(format!("seed-{seed}")) } else { d });
    if flags.resume.is_some() {
        for &seed in &seeds {
            CommonFlags::require_checkpoint(&run_dir_of(seed).unwrap_or_default())?;
        }
    }
    let probe =
        LinearProbe { c_grid: vec![1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0], folds: 5, ..LinearProbe::default() };
    let cv = |seed: u64| CrossValidation { folds: 10, seed, probe: probe.clone() };
    let classes = match eval_set.features {
        NodeFeatures::LabelOneHot(c) => c,
        _ => 1,
    };
    let hist = label_degree_histogram(&eval_set.graphs, classes)?;
    let (mut trained, mut untrained, mut baseline, mut graphs_per_s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut steps, mut last_losses) = (Vec::new(), Vec::new());
    let mut last_embeddings = None;
    for &seed in &seeds {
        let config = GraphClConfig {
            temperature: cli.temperature,
            loss: if cli.nt_xent { GraphClLoss::NtXent } else { GraphClLoss::GraphCl },
            ..GraphClConfig::paper(input_dim)
        };
        let model = GraphCl::new(config, seed, DType::F32, &device)?.with_collective(processes.clone());
        if leader {
            let before = contrastive_core::embed(model.encoder(), &eval_set.graphs, 512)?;
            untrained.push(cv(seed).evaluate(&before, &labels)?.mean);
            baseline.push(cv(seed).evaluate(&hist, &labels)?.mean);
        }
        // A last batch of one graph has no negative: drop it only then (several processes take
        // full shares of every global batch, so they always drop it).
        let n = pretrain_set.graphs.len();
        let drop_last = n % batch_size == 1 || processes.world_size() > 1;
        let loader_config = LoaderConfig { batch_size, seed, shuffle: true, drop_last, threads: flags.threads() };
        let loader = Loader::new(
            pretrain_set.graphs.clone(),
            cli.aug.build(cli.aug_ratio),
            CollateGraphs { device: device.clone() },
            loader_config,
        )?
        .with_shard(processes::shard()?)?;
        let trainer_config = TrainerConfig {
            epochs,
            max_steps: flags.max_steps,
            lr: cli.lr,
            schedule: Schedule::Constant,
            optimizer: OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
            checkpoint_every: None,
            progress: true,
            ..TrainerConfig::default()
        };
        let run_dir = run_dir_of(seed);
        // The collapse statistics and uniformity of (at most 2,000 of) the evaluation graphs,
        // every epoch, on rank 0.
        let monitored: Vec<Graph> = match leader {
            true => {
                spread_indices(eval_set.graphs.len(), 2000).into_iter().map(|i| eval_set.graphs[i].clone()).collect()
            }
            false => Vec::new(),
        };
        let t = Instant::now();
        let (summary, model) = match cli.grad_cache.grad_cache_chunk {
            Some(chunk) => {
                let cached = cli.grad_cache.wrap(model, chunk)?;
                let (summary, cached) =
                    fit(flags, trainer_config, cached, GradCache::inner, &monitored, &run_dir, &loader)?;
                (summary, cached.into_inner())
            }
            None => fit(flags, trainer_config, model, |m| m, &monitored, &run_dir, &loader)?,
        };
        let global_batch = loader.batch_len(0) * processes.world_size();
        graphs_per_s.push((summary.steps as f64 * global_batch as f64) / t.elapsed().as_secs_f64());
        steps.push(summary.steps);
        last_losses.push(summary.last_loss);
        if !leader {
            continue;
        }
        let after = contrastive_core::embed(model.encoder(), &eval_set.graphs, 512)?;
        let report = cv(seed).evaluate(&after, &labels)?;
        eprintln!(
            "seed {seed}: GraphCL {:.2}% ± {:.2} (10-fold), untrained {:.2}%, histogram {:.2}%, loss {:.3}",
            100.0 * report.mean,
            100.0 * report.std,
            100.0 * untrained.last().copied().unwrap_or(0.0),
            100.0 * baseline.last().copied().unwrap_or(0.0),
            summary.last_loss.unwrap_or(f64::NAN)
        );
        trained.push(report.mean);
        if let Some(dir) = &run_dir {
            plot_run(dir, Some((&after, &labels, "GraphCL graph embeddings (PCA)")))?;
            // Every seed's embeddings, for other classifiers (the reference's SVC protocol).
            save_embeddings(&dir.join("embeddings.safetensors"), &after, &labels)?;
        }
        last_embeddings = Some(after);
    }
    if !leader {
        return Ok(json!({}));
    }
    if let (Some(path), Some(e)) = (&flags.save_embeddings, &last_embeddings) {
        save_embeddings(path, e, &labels)?;
    }
    let majority = CrossValidation { folds: 10, seed: 0, probe: probe.clone() }.evaluate(&hist, &labels)?.majority_rate;
    println!(
        "{} ({} graphs): 10-fold accuracy (%), mean ± std over {} seed(s)",
        eval_set.name,
        labels.len(),
        seeds.len()
    );
    for (name, v) in [("GraphCL GIN", &trained), ("untrained GIN", &untrained), ("label histogram", &baseline)] {
        let s = MeanStd::of(v);
        println!("{name:<18} {:>6.2} ± {:.2}", 100.0 * s.mean, 100.0 * s.std);
    }
    println!("majority class     {:>6.2}", 100.0 * majority);
    let figures = json!({
        "example": "graphcl",
        "pretrain": pretrain_set.name,
        "eval": eval_set.name,
        "epochs": epochs,
        "batch_size": batch_size,
        "grad_cache_chunk": cli.grad_cache.grad_cache_chunk,
        "grad_cache_batch_norm": cli.grad_cache.batch_norm_in_use(),
        "seeds": seeds,
        // Per seed: each seed is one training run.
        "steps": steps,
        "last_loss": last_losses,
        "graphcl": MeanStd::of(&trained),
        "untrained": MeanStd::of(&untrained),
        "histogram": MeanStd::of(&baseline),
        "majority_rate": majority,
        "train_graphs_per_second": MeanStd::of(&graphs_per_s),
        "wall_seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    let items = |rows: &[usize]| Ok(Items::labelled(&rows.iter().map(|&r| labels[r]).collect::<Vec<_>>()));
    let shown = last_embeddings.as_ref().map(|e| Shown { name: "graphs", embeddings: e, items: &items });
    write_views(flags, &figures, shown)?;
    Ok(figures)
}

/// One seed's training run: (summary, trained objective).
fn fit<O: Objective<Batch = GraphViews> + 'static>(
    flags: &CommonFlags,
    config: TrainerConfig,
    model: O,
    graphcl: fn(&O) -> &GraphCl,
    monitored: &[Graph],
    run_dir: &Option<PathBuf>,
    loader: &impl BatchSource<Batch = GraphViews>,
) -> Result<(Summary, O)> {
    let mut trainer = flags.start_in(Trainer::new(config, model)?, run_dir.clone())?;
    if monitored.len() >= 2 {
        let graphs = monitored.to_vec();
        trainer
            .add_collapse_monitor(1, move |o: &mut O, _| contrastive_core::embed(graphcl(o).encoder(), &graphs, 512));
    }
    let summary = trainer.fit(loader)?;
    flags.stop_if_interrupted(&summary)?;
    Ok((summary, trainer.into_objective()))
}

fn main() {
    finish(run(Cli::parse()));
}
