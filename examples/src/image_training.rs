//! The run the image examples share: baselines, training with checkpoints and a kNN monitor,
//! final evaluation, exports and the figures.

use crate::flags::CommonFlags;
use crate::image_eval::{raw_pixels, score, Scores};
use crate::pretrained::resolve_init;
use crate::report::{plot_run, save_embeddings};
use candle_core::{Device, Tensor};
use contrastive_core::data::{Loader, LoaderConfig};
use contrastive_core::optim::{OptimizerConfig, Schedule};
use contrastive_core::train::{Objective, Trainer, TrainerConfig};
use contrastive_core::Result;
use contrastive_eval::{Knn, LinearProbe};
use contrastive_vision::augment::{Normalize, ViewAugmentation};
use contrastive_vision::{
    load_encoder_weights, CollateViews, Encoder, ImageEmbedder, ImageSplit, InMemoryImages, ViewBatch,
};
use serde_json::json;
use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

/// A method's defaults for the shared run.
pub struct RunSpec {
    /// Method name in the figures.
    pub method: &'static str,
    /// Epochs without `--epochs`.
    pub epochs: usize,
    /// Batch size without `--batch-size`.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
}

/// The evaluation protocols: kNN (k 200, temperature 0.1) and a logistic-regression probe with C
/// = 1 on standardised features (`quick`: fewer iterations).
pub fn protocols(quick: bool) -> (Knn, LinearProbe) {
    let probe = LinearProbe { c_grid: vec![1.0], max_iter: if quick { 100 } else { 500 }, ..LinearProbe::default() };
    (Knn::default(), probe)
}

fn features(encoder: &Encoder, images: &InMemoryImages, normalize: &Normalize) -> Result<Tensor> {
    contrastive_core::embed(&ImageEmbedder::new(encoder, normalize, &Device::Cpu), images, 500)
}

/// Trains `objective` on `data` and evaluates its encoder; returns the run's figures.
#[allow(clippy::too_many_arguments)]
pub fn train_and_evaluate<O>(
    flags: &CommonFlags,
    spec: &RunSpec,
    data: ImageSplit,
    mut objective: O,
    encoder: fn(&O) -> &Encoder,
    after_init: fn(&mut O) -> Result<()>,
    augmentation: ViewAugmentation,
    normalize: Normalize,
) -> Result<serde_json::Value>
where
    O: Objective<Batch = ViewBatch> + 'static,
{
    let started = Instant::now();
    let (train, test) =
        if flags.quick { (data.train.head(2000), data.test.head(500)) } else { (data.train, data.test) };
    let epochs = flags.epochs.unwrap_or(if flags.quick { 1 } else { spec.epochs });
    let batch_size = flags.batch_size.unwrap_or(if flags.quick { 64 } else { spec.batch_size });
    eprintln!(
        "{}: {} training and {} evaluation images of {}x{}x{} from {}",
        spec.method,
        train.labels.len(),
        test.labels.len(),
        train.channels,
        train.height,
        train.width,
        data.source
    );
    if let Some(init) = &flags.init {
        let path = resolve_init(init)?;
        let report = load_encoder_weights(objective.params(), &path, "encoder.")?;
        after_init(&mut objective)?;
        eprintln!(
            "initial weights: {} tensors from {} ({} left out)",
            report.loaded,
            path.display(),
            report.ignored.len()
        );
    }
    let (knn, probe) = protocols(flags.quick);
    // A folder of fewer training images than kNN's k still evaluates: k is cut to the set.
    let knn = Knn { k: knn.k.min(train.labels.len()), ..knn };
    let baseline = |x: &Tensor, y: &Tensor| score(x, &train.labels, y, &test.labels, &knn, &probe);
    let raw = baseline(&raw_pixels(&train)?, &raw_pixels(&test)?)?;
    eprintln!("raw pixels: kNN {:.2}%, linear {:.2}%", raw.knn, raw.linear);
    let initial = baseline(
        &features(encoder(&objective), &train, &normalize)?,
        &features(encoder(&objective), &test, &normalize)?,
    )?;
    let initial_name = if flags.init.is_some() { "initial" } else { "untrained" };
    eprintln!("{initial_name} encoder: kNN {:.2}%, linear {:.2}%", initial.knn, initial.linear);

    let config = TrainerConfig {
        epochs,
        max_steps: flags.max_steps,
        lr: spec.lr,
        schedule: Schedule::Constant,
        optimizer: OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-6 },
        checkpoint_every: Some(200),
        keep_last: 2,
        progress: true,
        ..TrainerConfig::default()
    };
    let loader_config =
        LoaderConfig { batch_size, seed: flags.seed, shuffle: true, drop_last: true, threads: flags.threads() };
    let loader = Loader::new(train.clone(), augmentation, CollateViews { device: Device::Cpu }, loader_config)?;
    let mut trainer = flags.start(Trainer::new(config, objective)?)?;
    // The kNN monitor runs on a subset after every epoch; its time is kept out of the training time.
    let monitor_time = Rc::new(Cell::new(0.0));
    {
        let (mon_train, mon_test) = (train.head(10_000), test.head(2_000));
        let norm = normalize.clone();
        let spent = Rc::clone(&monitor_time);
        let knn = Knn { k: knn.k.min(mon_train.labels.len()), ..knn };
        trainer.add_evaluation("knn_monitor", 1, move |o: &mut O, progress| {
            let epoch = progress.epoch;
            let t = Instant::now();
            let (a, b) = (features(encoder(o), &mon_train, &norm)?, features(encoder(o), &mon_test, &norm)?);
            let acc = knn.accuracy(&a, &mon_train.labels, &b, &mon_test.labels)?.top1;
            eprintln!(
                "epoch {}: kNN monitor {:.2}% ({} train / {} test images)",
                epoch + 1,
                100.0 * acc,
                mon_train.labels.len(),
                mon_test.labels.len()
            );
            spent.set(spent.get() + t.elapsed().as_secs_f64());
            Ok(100.0 * acc)
        });
    }
    let steps_before = trainer.state().step;
    let fit_started = Instant::now();
    let summary = trainer.fit(&loader)?;
    flags.stop_if_interrupted(&summary)?;
    let train_seconds = fit_started.elapsed().as_secs_f64() - monitor_time.get();
    let steps = summary.steps - steps_before;
    let objective = trainer.into_objective();
    let (train_f, test_f) =
        (features(encoder(&objective), &train, &normalize)?, features(encoder(&objective), &test, &normalize)?);
    let trained: Scores = score(&train_f, &train.labels, &test_f, &test.labels, &knn, &probe)?;
    eprintln!("trained encoder: kNN {:.2}%, linear {:.2}%", trained.knn, trained.linear);
    if let Some(path) = &flags.save_embeddings {
        save_embeddings(path, &test_f, &test.labels)?;
        eprintln!("embeddings of the {} evaluation images: {}", test.labels.len(), path.display());
    }
    if let Some(dir) = flags.run_dir() {
        let title = format!("{} test embeddings (PCA)", spec.method);
        for f in plot_run(&dir, Some((&test_f, &test.labels, &title)))? {
            eprintln!("plot: {}", f.display());
        }
    }
    let images = steps * batch_size;
    Ok(json!({
        "method": spec.method,
        "data": data.source,
        "train_images": train.labels.len(),
        "test_images": test.labels.len(),
        "epochs": epochs,
        "batch_size": batch_size,
        "steps": steps,
        "last_loss": summary.last_loss,
        "train_seconds": (train_seconds * 10.0).round() / 10.0,
        "seconds_per_epoch": if steps > 0 { ((train_seconds / (steps as f64 / loader.batches_per_epoch() as f64)) * 10.0).round() / 10.0 } else { 0.0 },
        "images_per_second": if train_seconds > 0.0 { (images as f64 / train_seconds).round() } else { 0.0 },
        "raw_pixels": raw,
        initial_name: initial,
        "trained": trained,
        "checkpoint": summary.checkpoint.map(|p| p.display().to_string()),
        "wall_seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    }))
}
