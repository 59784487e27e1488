//! The first thing to run: SimCLR on the UCI digits embedded in the binary (no download), then
//! kNN and linear-probe accuracy of the learned encoder beside raw pixels and the same encoder
//! untrained.
//!
//!     cargo run --release -p contrastive-examples --bin quickstart

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use clap::Parser;
use contrastive_core::augment::{Compose, RandomApply};
use contrastive_core::data::{BatchSource, Loader, LoaderConfig};
use contrastive_core::nn::ProjectionHeadConfig;
use contrastive_core::optim::{OptimizerConfig, Schedule};
use contrastive_core::train::{Objective, Summary, Trainer, TrainerConfig};
use contrastive_eval::{stratified_split, Knn, LinearProbe, Vote};
use contrastive_examples::flags::{CommonFlags, GradCacheFlags};
use contrastive_examples::image_data::image_items;
use contrastive_examples::image_eval::{raw_pixels, score};
use contrastive_examples::pretrained::resolve_init;
use contrastive_examples::processes;
use contrastive_examples::report::{finish, plot_run, save_embeddings, write_views, Shown};
use contrastive_vision::augment::{ColorJitter, GaussianBlur, Normalize, RandomResizedCrop, ViewAugmentation};
use contrastive_vision::{
    load_encoder_weights, uci_digits, CollateViews, ConvNetConfig, EncoderConfig, ImageEmbedder, ImageSet, SimClr,
    SimClrConfig, ViewBatch,
};
use serde_json::json;
use std::time::Instant;

/// SimCLR on the 1,797 UCI digits (8x8): a 3-block ConvNet trained on 4/5 of them, evaluated on
/// the held-out fifth. `--data` is not used: the digits are built in.
#[derive(Parser, Debug, serde::Serialize)]
#[command(about)]
struct Cli {
    #[command(flatten)]
    #[serde(flatten)]
    common: CommonFlags,
    #[command(flatten)]
    #[serde(flatten)]
    grad_cache: GradCacheFlags,
}

fn run(cli: Cli) -> contrastive_core::Result<serde_json::Value> {
    let flags = &cli.common;
    flags.setup()?;
    flags.check_paths("quickstart", &cli)?;
    // Under mpirun (feature mpi) NT-Xent sees every process's batch; rank 0 evaluates and reports.
    let processes = processes::collective()?;
    let leader = processes.rank() == 0;
    if flags.data.is_some() && leader {
        eprintln!("quickstart: --data is ignored, the digits are built in (see the simclr example for your own data)");
    }
    let started = Instant::now();
    let digits = uci_digits()?;
    let (train_idx, test_idx) = stratified_split(&digits.labels, 5, flags.seed);
    let (train, test) = (digits.select(&train_idx)?, digits.select(&test_idx)?);
    if leader {
        eprintln!("UCI digits: {} training and {} held-out images of 8x8", train.labels.len(), test.labels.len());
    }

    let normalize = Normalize::fit(&train)?;
    // Views for 8x8 digits: crops that keep most of the digit, no flip (a mirrored 2 is not a 2),
    // brightness and contrast, a light blur.
    let augmentation = ViewAugmentation(Compose(vec![
        Box::new(RandomResizedCrop { size: (8, 8), scale: (0.5, 1.0), ratio: (0.75, 4.0 / 3.0) }),
        Box::new(RandomApply {
            p: 0.8,
            inner: Box::new(ColorJitter { brightness: 0.4, contrast: 0.4, saturation: 0.0, hue: 0.0 }),
        }),
        Box::new(GaussianBlur { kernel: 3, sigma: (0.1, 1.0), p: 0.3 }),
        Box::new(normalize.clone()),
    ]));
    let encoder =
        EncoderConfig::ConvNet(ConvNetConfig { in_channels: 1, widths: vec![32, 64, 128], strides: vec![1, 2, 2] });
    let head = ProjectionHeadConfig {
        input_dim: 128,
        hidden_dim: 128,
        output_dim: 32,
        layers: 2,
        batch_norm: true,
        output_batch_norm: false,
    };
    let device = flags.device()?;
    let model =
        SimClr::new(SimClrConfig { encoder, head, temperature: 0.2 }, flags.seed, &device)?.with_collective(processes);
    if let Some(init) = &flags.init {
        let path = resolve_init(init)?;
        load_encoder_weights(model.params(), &path, "encoder.")?;
    }

    let knn = Knn { k: 20, vote: Vote::Weighted { temperature: 0.1 }, ..Knn::default() };
    let probe = LinearProbe { seed: flags.seed, ..LinearProbe::default() };
    let features = |m: &SimClr, x: &contrastive_vision::InMemoryImages| {
        contrastive_core::embed(&ImageEmbedder::new(m.encoder(), &normalize, &device), x, 512)
    };
    let baselines = if leader {
        let raw = score(&raw_pixels(&train)?, &train.labels, &raw_pixels(&test)?, &test.labels, &knn, &probe)?;
        let untrained =
            score(&features(&model, &train)?, &train.labels, &features(&model, &test)?, &test.labels, &knn, &probe)?;
        Some((raw, untrained))
    } else {
        None
    };

    let epochs = flags.epochs.unwrap_or(if flags.quick { 5 } else { 60 });
    let batch_size = flags.batch_size.unwrap_or(256);
    let config = TrainerConfig {
        epochs,
        max_steps: flags.max_steps,
        lr: 2e-3,
        schedule: Schedule::Constant,
        optimizer: OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-6 },
        checkpoint_every: None,
        progress: true,
        ..TrainerConfig::default()
    };
    let loader_config =
        LoaderConfig { batch_size, seed: flags.seed, shuffle: true, drop_last: true, threads: flags.threads() };
    let loader = Loader::new(train.clone(), augmentation, CollateViews { device: device.clone() }, loader_config)?
        .with_shard(processes::shard()?)?;
    let fit_started = Instant::now();
    let (summary, model) = match cli.grad_cache.grad_cache_chunk {
        Some(chunk) => {
            let (summary, cached) = fit(flags, config, cli.grad_cache.wrap(model, chunk)?, &loader)?;
            (summary, cached.into_inner())
        }
        None => fit(flags, config, model, &loader)?,
    };
    let train_seconds = fit_started.elapsed().as_secs_f64();
    let Some((raw, untrained)) = baselines else {
        // Rank 0 evaluates and reports.
        return Ok(json!({}));
    };
    let (train_f, test_f) = (features(&model, &train)?, features(&model, &test)?);
    let trained = score(&train_f, &train.labels, &test_f, &test.labels, &knn, &probe)?;

    println!("UCI digits, {} held-out images: accuracy (%)", test.labels.len());
    println!("{:<28} {:>8} {:>14}", "features", "kNN", "linear probe");
    for (name, s) in
        [("raw pixels (64)", raw), ("untrained ConvNet (128)", untrained), ("SimCLR ConvNet (128)", trained)]
    {
        println!("{name:<28} {:>8.2} {:>14.2}", s.knn, s.linear);
    }
    println!(
        "trained {} steps in {:.1} s; final loss {:.3}",
        summary.steps,
        train_seconds,
        summary.last_loss.unwrap_or(f64::NAN)
    );
    if let Some(path) = &flags.save_embeddings {
        save_embeddings(path, &test_f, &test.labels)?;
    }
    if let Some(dir) = flags.run_dir() {
        plot_run(&dir, Some((&test_f, &test.labels, "SimCLR digits, held-out embeddings (PCA)")))?;
    }
    let figures = json!({
        "example": "quickstart",
        "epochs": epochs,
        "batch_size": batch_size,
        "grad_cache_chunk": cli.grad_cache.grad_cache_chunk,
        "grad_cache_batch_norm": cli.grad_cache.batch_norm_in_use(),
        "steps": summary.steps,
        "train_seconds": (train_seconds * 10.0).round() / 10.0,
        "last_loss": summary.last_loss,
        "raw_pixels": raw,
        "untrained": untrained,
        "trained": trained,
        "wall_seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    let test_set = ImageSet::Memory(test.clone());
    let items = |rows: &[usize]| image_items(&test_set, rows);
    write_views(flags, &figures, Some(Shown { name: "held_out_digits", embeddings: &test_f, items: &items }))?;
    Ok(figures)
}

/// The training run: (summary, trained objective).
fn fit<O: Objective<Batch = ViewBatch>>(
    flags: &CommonFlags,
    config: TrainerConfig,
    model: O,
    loader: &impl BatchSource<Batch = ViewBatch>,
) -> contrastive_core::Result<(Summary, O)> {
    let mut trainer = flags.start(Trainer::new(config, model)?)?;
    let summary = trainer.fit(loader)?;
    flags.stop_if_interrupted(&summary)?;
    Ok((summary, trainer.into_objective()))
}

fn main() {
    finish(run(Cli::parse()));
}
