//! CLIP across crates: a GIN from `contrastive-graph` reads a molecule's graph, a small
//! transformer from `contrastive-text` reads its SMILES string (a BPE tokenizer trained on the
//! training split), and the core's `Clip` objective trains the two to agree. Scored by retrieval
//! on held-out molecules, both ways, against chance and the untrained towers.
//!
//!     scripts/fetch-assets wehi10k
//!     cargo run --release -p contrastive-examples --bin molecule_clip -- --out runs/molecule_clip

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use candle_core::{DType, Device, Module, Tensor};
use clap::Parser;
use contrastive_core::augment::Identity;
use contrastive_core::collective::Collective;
use contrastive_core::cross_modal::{Clip, ClipBatch, ClipConfig};
use contrastive_core::data::{BatchSource, Collate, Loader, LoaderConfig, ViewPair};
use contrastive_core::embed::{embed, BackboneEmbedder};
use contrastive_core::grad_cache::GradCache;
use contrastive_core::nn::{linear, InitScheme, Linear, ParamStore};
use contrastive_core::optim::{OptimizerConfig, Schedule};
use contrastive_core::rng::named_rng;
use contrastive_core::train::{ExtraState, Objective, Summary, Trainer, TrainerConfig};
use contrastive_core::Backbone;
use contrastive_core::{Error, Result};
use contrastive_eval::{paired_retrieval, Content, Items, RetrievalReport};
use contrastive_examples::assets::Asset;
use contrastive_examples::flags::{at_least_one, positive, CommonFlags, GradCacheFlags};
use contrastive_examples::processes;
use contrastive_examples::report::{finish, plot_run, save_embeddings, write_views, Shown};
use contrastive_graph::{load_tu, Epsilon, Gin, GinConfig, Graph, GraphBatch, Readout, TuOptions};
use contrastive_text::{Activation, Bert, BertConfig, Pooling, TokenBatch, Tokenizer};
use rand::seq::SliceRandom;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// CLIP between molecule graphs and SMILES strings on WEHI10K.
#[derive(Parser, Debug, serde::Serialize)]
#[command(about)]
struct Cli {
    #[command(flatten)]
    #[serde(flatten)]
    common: CommonFlags,
    /// Molecules held out for the retrieval figures.
    #[arg(long, default_value_t = 1000, value_parser = at_least_one())]
    holdout: usize,
    /// Width of the shared embedding space.
    #[arg(long, default_value_t = 128, value_parser = at_least_one())]
    dim: usize,
    /// BPE vocabulary size of the SMILES tokenizer.
    #[arg(long, default_value_t = 512, value_parser = at_least_one())]
    vocab_size: usize,
    /// Longest SMILES in tokens (longer ones are truncated, and the log says so once).
    #[arg(long, default_value_t = 96, value_parser = at_least_one())]
    max_length: usize,
    /// Peak learning rate (AdamW, one epoch of warmup, then linear decay).
    #[arg(long, default_value_t = 1e-3, value_parser = positive)]
    lr: f64,
    /// Keep the temperature at CLIP's initial 0.07 instead of learning it.
    #[arg(long)]
    fixed_temperature: bool,
    // Gradient caching (--grad-cache-chunk N: N molecules through both towers at a time; the
    // SMILES BERT's dropout masks are those of the whole batch, replayed).
    #[command(flatten)]
    #[serde(flatten)]
    grad_cache: GradCacheFlags,
    /// Under mpirun: the GIN's BatchNorm over every process's nodes (SyncBatchNorm), so N
    /// processes of --batch-size B train as one of N x B.
    #[arg(long)]
    sync_batch_norm: bool,
}

/// One molecule: its graph and its SMILES string.
#[derive(Clone)]
struct Molecule {
    graph: Graph,
    smiles: String,
}

/// The graph side: a GIN (sum readouts of every layer, concatenated) and a linear projection.
struct GraphTower {
    gin: Gin,
    projection: Linear,
}

impl Backbone for GraphTower {
    type Input = GraphBatch;

    fn encode(&self, batch: &GraphBatch, train: bool) -> candle_core::Result<Tensor> {
        self.projection.forward(&self.gin.forward_t(batch, train)?)
    }

    fn dim(&self) -> usize {
        self.projection.weight().dims()[0]
    }
}

/// The SMILES side: a small BERT over BPE tokens, mean-pooled, and a linear projection. In
/// training on several processes it pads to the global batch's longest SMILES and draws its
/// dropout masks as one process with the global batch would.
struct SmilesTower {
    bert: Bert,
    projection: Linear,
    processes: Arc<dyn Collective>,
}

impl Backbone for SmilesTower {
    type Input = TokenBatch;

    fn encode(&self, t: &TokenBatch, train: bool) -> candle_core::Result<Tensor> {
        let encode = |t: &TokenBatch| {
            let states = self.bert.forward_t(&t.ids, &t.type_ids, &t.attention_mask, train)?;
            self.projection.forward(&Pooling::Mean.forward_t(&states, &t.attention_mask, train)?)
        };
        if !train {
            return encode(t);
        }
        let (t, rows) = t.in_global_batch(self.processes.as_ref()).map_err(candle_core::Error::wrap)?;
        contrastive_core::nn::in_global_batch(rows, || encode(&t))
    }

    fn dim(&self) -> usize {
        self.projection.weight().dims()[0]
    }

    fn extra_state(&self) -> Result<ExtraState> {
        Ok(ExtraState { tensors: Default::default(), json: self.bert.dropout_state() })
    }

    fn load_extra_state(&mut self, state: ExtraState) -> Result<()> {
        self.bert.load_dropout_state(&state.json)
    }
}

type MoleculeClip = Clip<GraphTower, SmilesTower>;

/// A batch of molecules as a graph batch and a token batch, row i of each the same molecule.
struct CollateMolecules {
    tokenizer: Arc<Tokenizer>,
    device: Device,
}

impl Collate<ViewPair<Molecule>> for CollateMolecules {
    type Batch = ClipBatch<GraphBatch, TokenBatch>;

    fn collate(&self, samples: Vec<ViewPair<Molecule>>) -> Result<Self::Batch> {
        // No augmentation: the pair is the molecule's two modalities, not two views.
        let graphs: Vec<&Graph> = samples.iter().map(|s| &s.first.graph).collect();
        let smiles: Vec<&str> = samples.iter().map(|s| s.first.smiles.as_str()).collect();
        Ok(ClipBatch { a: GraphBatch::new(&graphs, &self.device)?, b: self.tokenizer.encode(&smiles, &self.device)? })
    }
}

/// Both towers' embeddings (eval mode) of `molecules`, 250 at a time.
fn embed_both(
    model: &MoleculeClip,
    tokenizer: &Tokenizer,
    molecules: &[Molecule],
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let graphs = |ms: Vec<Molecule>| GraphBatch::new(&ms.iter().map(|m| &m.graph).collect::<Vec<_>>(), device);
    let smiles =
        |ms: Vec<Molecule>| tokenizer.encode(&ms.iter().map(|m| m.smiles.as_str()).collect::<Vec<_>>(), device);
    Ok((
        embed(&BackboneEmbedder { backbone: model.tower_a(), input: graphs }, molecules, 250)?,
        embed(&BackboneEmbedder { backbone: model.tower_b(), input: smiles }, molecules, 250)?,
    ))
}

/// The retrieval cut-offs reported: recall@1 and recall@10.
const KS: [usize; 2] = [1, 10];

fn figures(r: &RetrievalReport) -> serde_json::Value {
    json!({ "recall_at_1": r.recall(1), "recall_at_10": r.recall(10), "mrr": r.mrr })
}

fn build(
    cli: &Cli,
    input_dim: usize,
    tokenizer: &Tokenizer,
    seed: u64,
    device: &Device,
    processes: Arc<dyn Collective>,
) -> Result<MoleculeClip> {
    let store = ParamStore::new(seed, InitScheme::PyTorch);
    let vb = store.var_builder(DType::F32, device);
    let gin_config = GinConfig {
        input_dim,
        hidden_dim: 64,
        layers: 3,
        epsilon: Epsilon::Fixed(0.0),
        readout: Readout::Sum,
        concat_layers: true,
    };
    let gin = Gin::new(&gin_config, vb.pp("graph.gin"))?;
    let graph = GraphTower { projection: linear(gin_config.output_dim(), cli.dim, vb.pp("graph.projection"))?, gin };
    let bert_config = BertConfig {
        vocab_size: tokenizer.vocab_size(),
        hidden_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 256,
        hidden_act: Activation::Gelu,
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
        max_position_embeddings: cli.max_length,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        model_type: Default::default(),
        pad_token_id: None,
        relative_attention_num_buckets: 32,
    };
    let bert = Bert::new(&bert_config, vb.pp("smiles.bert"), seed)?;
    let projection = linear(128, cli.dim, vb.pp("smiles.projection"))?;
    let smiles = SmilesTower { projection, bert, processes: Arc::clone(&processes) };
    let config = ClipConfig { learnable: !cli.fixed_temperature, ..ClipConfig::default() };
    Ok(Clip::new(graph, smiles, store, config)?.with_collective(processes))
}

fn run(cli: Cli) -> Result<serde_json::Value> {
    let flags = &cli.common;
    flags.setup()?;
    flags.check_paths("molecule_clip", &cli)?;
    let started = Instant::now();
    let dir = match &flags.data {
        Some(d) => d.clone(),
        None => Asset::Wehi10k.require("--data with a TU folder (the shipped examples/molecule_clip/data/WEHI1200)")?,
    };
    if !dir.is_dir() {
        return Err(Error::config(
            "--data",
            format!(
                "{}: no such folder. Pass a TU folder that has a {{name}}_graph_sources.tsv \
                 (`scripts/fetch-assets wehi10k`, or the 1,200 molecules of examples/molecule_clip/data/WEHI1200)",
                dir.display()
            ),
        ));
    }
    let data = load_tu(&dir, TuOptions::default())?;
    let sources = dir.join(format!("{}_graph_sources.tsv", data.name));
    let smiles = contrastive_graph::read_tu_smiles(&sources, data.graphs.len())?;
    let input_dim = data.graphs.first().map_or(1, |g| g.feature_dim);
    let mut molecules: Vec<Molecule> =
        data.graphs.into_iter().zip(smiles).map(|(graph, smiles)| Molecule { graph, smiles }).collect();
    molecules.shuffle(&mut named_rng(flags.seed, "molecule-clip-split"));
    let holdout_n = if flags.quick { cli.holdout.min(200) } else { cli.holdout };
    if holdout_n < 10 || holdout_n + 64 > molecules.len() {
        return Err(Error::config(
            "--holdout",
            format!("{holdout_n} of {} molecules leaves too few on one side", molecules.len()),
        ));
    }
    let holdout = molecules.split_off(molecules.len() - holdout_n);
    let train = molecules;

    let texts: Vec<&str> = train.iter().map(|m| m.smiles.as_str()).collect();
    let tokenizer = Arc::new(Tokenizer::train_bpe(&texts, cli.vocab_size, cli.max_length)?);
    let mut tokens = 0;
    for s in &texts {
        tokens += tokenizer.encode(&[s], &Device::Cpu)?.ids.dim(1)?;
    }
    let mean_tokens = tokens as f64 / texts.len() as f64;
    // Under mpirun (feature mpi) both towers' embeddings are gathered: every process contrasts
    // against the global batch; rank 0 alone evaluates and reports.
    let processes = processes::collective_with_batch_norm(cli.sync_batch_norm)?;
    let leader = processes.rank() == 0;
    if leader {
        eprintln!(
            "molecule_clip: {} ({} train, {} held out), {input_dim} node features; BPE vocabulary {} trained on the \
         train split ({mean_tokens:.1} tokens per SMILES with [CLS] and [SEP])",
            data.name,
            train.len(),
            holdout.len(),
            tokenizer.vocab_size()
        );
    }
    let device = flags.device()?;
    let model = build(&cli, input_dim, &tokenizer, flags.seed, &device, processes.clone())?;
    let untrained = if leader {
        let (g0, s0) = embed_both(&model, &tokenizer, &holdout, &device)?;
        Some(paired_retrieval(&g0, &s0, &KS)?)
    } else {
        None
    };

    let batch_size = flags.batch_size.unwrap_or(256);
    let epochs = flags.epochs.unwrap_or(if flags.quick { 1 } else { 30 });
    let loader_config =
        LoaderConfig { batch_size, seed: flags.seed, shuffle: true, drop_last: true, threads: flags.threads() };
    let loader = Loader::new(
        train.clone(),
        Identity,
        CollateMolecules { tokenizer: Arc::clone(&tokenizer), device: device.clone() },
        loader_config,
    )?
    .with_shard(processes::shard()?)?;
    let steps_per_epoch = loader.batches_per_epoch();
    let mut trainer_config = TrainerConfig {
        epochs,
        max_steps: flags.max_steps,
        lr: cli.lr,
        optimizer: OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.98, eps: 1e-6, weight_decay: 0.1 },
        clip_grad_norm: Some(1.0),
        checkpoint_every: Some(steps_per_epoch * 5),
        keep_last: 2,
        progress: true,
        ..TrainerConfig::default()
    };
    // The schedule spans the run: --max-steps shortens it as it shortens the run.
    let total_steps = trainer_config.total_steps(steps_per_epoch);
    trainer_config.schedule = Schedule::WarmupLinear { warmup_steps: steps_per_epoch.min(total_steps), total_steps };
    let monitor = (Arc::clone(&tokenizer), holdout.clone(), device.clone());
    let (summary, model, train_seconds) = match cli.grad_cache.grad_cache_chunk {
        Some(chunk) => {
            let cached = cli.grad_cache.wrap(model, chunk)?;
            let (summary, cached, seconds) = fit(flags, trainer_config, cached, GradCache::inner, monitor, &loader)?;
            (summary, cached.into_inner(), seconds)
        }
        None => fit(flags, trainer_config, model, |m| m, monitor, &loader)?,
    };
    let (Some(untrained), true) = (untrained, leader) else {
        // Rank 0 evaluates, saves and reports.
        return Ok(json!({}));
    };
    let (g, s) = embed_both(&model, &tokenizer, &holdout, &device)?;
    let trained = paired_retrieval(&g, &s, &KS)?;
    if let Some(run_dir) = flags.run_dir() {
        plot_run(&run_dir, None)?;
        tokenizer.save(&run_dir.join("smiles_tokenizer.json"))?;
    }
    if let Some(path) = &flags.save_embeddings {
        // Rows 0..n: graph embeddings (label 0); rows n..2n: SMILES embeddings (label 1); row i
        // and row n + i are one molecule.
        let labels: Vec<u32> = (0..2 * holdout_n).map(|i| u32::from(i >= holdout_n)).collect();
        save_embeddings(path, &Tensor::cat(&[&g, &s], 0)?, &labels)?;
    }

    let chance = figures(&RetrievalReport::chance(holdout_n, &KS)?);
    println!("{}: {holdout_n} held-out molecules          R@1     R@10    MRR", data.name);
    for (direction, t, u) in
        [("graph -> SMILES", &trained.0, &untrained.0), ("SMILES -> graph", &trained.1, &untrained.1)]
    {
        for (name, f) in [("CLIP-trained", figures(t)), ("untrained", figures(u)), ("chance", chance.clone())] {
            println!(
                "{direction}  {name:<13} {:>7.2}% {:>7.2}% {:>7.4}",
                100.0 * f["recall_at_1"].as_f64().unwrap_or(f64::NAN),
                100.0 * f["recall_at_10"].as_f64().unwrap_or(f64::NAN),
                f["mrr"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    let figures = json!({
        "example": "molecule_clip",
        "dataset": data.name,
        "train_molecules": train.len(),
        "holdout_molecules": holdout_n,
        "epochs": epochs,
        "steps": summary.steps,
        "batch_size": batch_size,
        "grad_cache_chunk": cli.grad_cache.grad_cache_chunk,
        "grad_cache_batch_norm": cli.grad_cache.batch_norm_in_use(),
        "last_loss": summary.last_loss,
        "temperature": model.temperature()?,
        "graph_to_smiles": { "trained": figures(&trained.0), "untrained": figures(&untrained.0), "chance": chance },
        "smiles_to_graph": { "trained": figures(&trained.1), "untrained": figures(&untrained.1), "chance": chance },
        "train_seconds": (train_seconds * 10.0).round() / 10.0,
        "wall_seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    // Both towers' embeddings of the held-out molecules on one map: rows 0..n graphs, n..2n SMILES.
    let both = Tensor::cat(&[&g, &s], 0)?;
    let items = |rows: &[usize]| {
        Ok(Items {
            labels: Some(rows.iter().map(|&r| u32::from(r >= holdout_n)).collect()),
            class_names: vec!["graph".into(), "SMILES".into()],
            content: Content::Smiles(rows.iter().map(|&r| holdout[r % holdout_n].smiles.clone()).collect()),
        })
    };
    write_views(flags, &figures, Some(Shown { name: "molecules", embeddings: &both, items: &items }))?;
    Ok(figures)
}

/// The training run, with held-out graph-to-SMILES recall@1 after every epoch in the history:
/// (summary, trained objective, seconds). `clip` finds the CLIP model in the objective.
fn fit<O: Objective<Batch = ClipBatch<GraphBatch, TokenBatch>> + 'static>(
    flags: &CommonFlags,
    config: TrainerConfig,
    model: O,
    clip: fn(&O) -> &MoleculeClip,
    (tokenizer, holdout, device): (Arc<Tokenizer>, Vec<Molecule>, Device),
    loader: &impl BatchSource<Batch = ClipBatch<GraphBatch, TokenBatch>>,
) -> Result<(Summary, O, f64)> {
    let mut trainer = Trainer::new(config, model)?;
    let (t, h, d) = (Arc::clone(&tokenizer), holdout.clone(), device.clone());
    trainer.add_evaluation("holdout_graph_to_smiles_r1", 1, move |model, _| {
        let (g, s) = embed_both(clip(model), &t, &h, &d)?;
        Ok(paired_retrieval(&g, &s, &[1])?.0.recall_at[0].1)
    });
    // Alignment of each held-out molecule's two embeddings (its positive pair), and the graph
    // tower's collapse statistics and uniformity.
    let (t, h, d) = (Arc::clone(&tokenizer), holdout.clone(), device.clone());
    trainer.add_evaluation("alignment", 1, move |model, _| {
        let (g, s) = embed_both(clip(model), &t, &h, &d)?;
        contrastive_eval::alignment(&g, &s, 2.0)
    });
    if holdout.len() >= 2 {
        trainer.add_collapse_monitor(1, move |model: &mut O, _| {
            Ok(embed_both(clip(model), &tokenizer, &holdout, &device)?.0)
        });
    }
    let mut trainer = flags.start(trainer)?;
    let fit_started = Instant::now();
    let summary = trainer.fit(loader)?;
    flags.stop_if_interrupted(&summary)?;
    Ok((summary, trainer.into_objective(), fit_started.elapsed().as_secs_f64()))
}

fn main() {
    finish(run(Cli::parse()));
}
