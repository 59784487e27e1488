//! The run the image examples share: baselines, training with checkpoints and a kNN monitor,
//! final evaluation, exports and the figures.

use crate::flags::CommonFlags;
use crate::image_data::{fit_normalize, image_items, load_image_data, sample_of, ImageFlags};
use crate::image_eval::{raw_pixels, score, Scores};
use crate::pretrained::resolve_init;
use crate::recipe::Recipe;
use crate::report::{plot_run, save_embeddings, saves_shards, write_views, Shown, ROWS_PER_SHARD};
use candle_core::{Device, Tensor};
use contrastive_core::augment::Augment;
use contrastive_core::collapse::Spread;
use contrastive_core::data::{Collate, Dataset, Loader, LoaderConfig, MultiCrop, TwoViews, Views};
use contrastive_core::optim::{OptimizerConfig, Schedule};
use contrastive_core::rng::keyed_rng;
use contrastive_core::train::{Objective, Trainer, TrainerConfig};
use contrastive_core::{Backbone, Result};
use contrastive_eval::{Knn, LinearProbe, ShardWriter};
use contrastive_vision::augment::{Normalize, ViewAugmentation};
use contrastive_vision::{
    load_encoder_weights, stack_images, CollateViews, Encoder, Image, ImageEmbedder, ImageSet, ImageSplit,
    InMemoryImages, Resized,
};
use serde_json::json;
use std::cell::Cell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
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

fn features(
    encoder: &Encoder,
    images: &ImageSet,
    normalize: &Normalize,
    size: (usize, usize),
    device: &Device,
) -> Result<Tensor> {
    // Resized as each file is read: a batch never holds the files at their own size.
    contrastive_core::embed(&ImageEmbedder::new(encoder, normalize, device), &Resized { images, size }, 500)
}

/// The key of the alignment monitor's views (`keyed_rng`): apart from every training view.
const ALIGNMENT_KEY: u64 = 0xa119;

/// Embeddings of views already normalised by the recipe, 128 at a time.
fn embed_views(encoder: &Encoder, views: &[Image], device: &Device) -> Result<Tensor> {
    let parts = views
        .chunks(128)
        .map(|chunk| Ok(encoder.encode(&stack_images(&chunk.iter().collect::<Vec<_>>(), device)?, false)?))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&parts, 0)?)
}

/// Writes the embeddings of `images` to `path`: a `.safetensors` file (computed whole), or a
/// folder of shards written a batch at a time.
fn save_image_embeddings(
    encoder: &Encoder,
    images: &ImageSet,
    normalize: &Normalize,
    size: (usize, usize),
    device: &Device,
    path: &Path,
) -> Result<()> {
    let labels = images.labels();
    if !saves_shards(path) {
        return save_embeddings(path, &features(encoder, images, normalize, size, device)?, &labels);
    }
    let mut writer = ShardWriter::create(path, ROWS_PER_SHARD)?;
    let model = ImageEmbedder::new(encoder, normalize, device);
    let labelled = images.labelled();
    contrastive_core::embed_each(&model, &Resized { images, size }, 500, |start, z| {
        let n = z.dim(0)?;
        writer.push(&z, labelled.then(|| &labels[start..start + n]))
    })?;
    writer.finish()?;
    Ok(())
}

/// The raw-pixel baseline: the images themselves as features, or for image files of any size,
/// 32x32 thumbnails of at most 10,000 (train) and 2,000 (test) of them, since every pixel of a
/// large set would not fit in memory.
fn raw_baseline(train: &ImageSet, test: &ImageSet, knn: &Knn, probe: &LinearProbe) -> Result<Scores> {
    let flat = |set: &ImageSet, cap: usize| -> Result<InMemoryImages> {
        match set {
            ImageSet::Memory(m) => Ok(m.clone()),
            ImageSet::Files(_) => sample_of(set, cap)?.to_memory(Some((32, 32))),
        }
    };
    let (a, b) = (flat(train, 10_000)?, flat(test, 2_000)?);
    score(&raw_pixels(&a)?, &a.labels, &raw_pixels(&b)?, &b.labels, knn, probe)
}

/// The images of a run and how its views are made, as `--data`, `--image-size` and the recipe
/// say: what every image method prepares alike. `V` makes a sample's views: two by the recipe
/// (the default), or multi-crop ([`ImageRun::multi_crop`]).
pub struct ImageRun<V = TwoViews<ViewAugmentation>> {
    /// Training and evaluation images.
    pub data: ImageSplit,
    /// The views' size (the global views' under multi-crop).
    pub size: (usize, usize),
    /// What makes each sample's views.
    pub views: V,
    /// The normalisation fitted on the training images (inside the augmentation too).
    pub normalize: Normalize,
    /// The augmentation recipe.
    pub recipe: Recipe,
}

impl ImageRun {
    /// Reads `--data` (or the default Fashion-MNIST) and builds `recipe` at the run's image size.
    pub fn prepare(flags: &CommonFlags, image_flags: &ImageFlags, recipe: Recipe) -> Result<Self> {
        let data = load_image_data(flags.data.as_deref(), image_flags.unreadable())?;
        let size = image_flags.size(&data, recipe);
        let normalize = fit_normalize(&data.train)?;
        let views = TwoViews(recipe.build(size, normalize.clone()));
        Ok(Self { data, size, views, normalize, recipe })
    }

    /// Multi-crop instead of two views (DINO, after Caron et al. 2021): `globals` views of the
    /// run's size cropped from 40-100% of the image and `locals` of `local_side` pixels from
    /// 5-40%, each then through the rest of the recipe.
    pub fn multi_crop(
        self,
        globals: usize,
        locals: usize,
        local_side: usize,
    ) -> Result<ImageRun<MultiCrop<ViewAugmentation, ViewAugmentation>>> {
        let global = self.recipe.build_cropped(self.size, (0.4, 1.0), self.normalize.clone());
        let local = self.recipe.build_cropped((local_side, local_side), (0.05, 0.4), self.normalize.clone());
        let views = MultiCrop::new(global, local, globals, locals)?;
        Ok(ImageRun { data: self.data, size: self.size, views, normalize: self.normalize, recipe: self.recipe })
    }
}

/// Trains `objective` on the run's images and evaluates its encoder (`encoder` finds it in the
/// objective; `after_init` runs after `--init` weights are loaded); returns the run's figures.
pub fn train_and_evaluate<O, V>(
    flags: &CommonFlags,
    image_flags: &ImageFlags,
    spec: &RunSpec,
    run: ImageRun<V>,
    mut objective: O,
    encoder: fn(&O) -> &Encoder,
    after_init: fn(&mut O) -> Result<()>,
) -> Result<serde_json::Value>
where
    O: Objective + 'static,
    V: Views<(Image, u32)> + 'static,
    CollateViews: Collate<V::Out, Batch = O::Batch>,
{
    let ImageRun { data, size, views, normalize, recipe } = run;
    let started = Instant::now();
    // The model's device (its variables are there); each batch moves to it once, after collation.
    let device = flags.device()?;
    let (train, test) = if flags.quick {
        (sample_of(&data.train, 2000)?, sample_of(&data.test, 500)?)
    } else {
        (data.train, data.test)
    };
    let epochs = flags.epochs.unwrap_or(if flags.quick { 1 } else { spec.epochs });
    let batch_size = flags.batch_size.unwrap_or(if flags.quick { 64 } else { spec.batch_size });
    let stored = match train.size() {
        Some((h, w)) => format!("{}x{}x{} in memory", train.channels(), h, w),
        None => format!("files of any size read as {} channels, views {}x{}", train.channels(), size.0, size.1),
    };
    eprintln!(
        "{}: {} training and {} evaluation images ({stored}) from {}",
        spec.method,
        train.len(),
        test.len(),
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
    // What the evaluations see: every image unless --eval-images caps them.
    let (eval_train, eval_test) = match image_flags.eval_images {
        Some(n) => (sample_of(&train, n)?, sample_of(&test, (n / 4).max(1))?),
        None => (train.clone(), test.clone()),
    };
    // Under mpirun every process trains; rank 0 alone evaluates, plots and saves.
    let leader = crate::processes::is_leader();
    let labelled = eval_train.labelled() && !eval_test.is_empty() && leader;
    let (knn, probe) = protocols(flags.quick);
    // A folder of fewer training images than kNN's k still evaluates: k is cut to the set.
    let knn = Knn { k: knn.k.min(eval_train.len()), ..knn };
    let (train_labels, test_labels) = (eval_train.labels(), eval_test.labels());
    let score_features = |enc: &Encoder| -> Result<(Scores, Tensor)> {
        let (a, b) = (
            features(enc, &eval_train, &normalize, size, &device)?,
            features(enc, &eval_test, &normalize, size, &device)?,
        );
        Ok((score(&a, &train_labels, &b, &test_labels, &knn, &probe)?, b))
    };
    let initial_name = if flags.init.is_some() { "initial" } else { "untrained" };
    let (raw, initial) = if labelled {
        let raw = raw_baseline(&eval_train, &eval_test, &knn, &probe)?;
        eprintln!("raw pixels: kNN {:.2}%, linear {:.2}%", raw.knn, raw.linear);
        let initial = score_features(encoder(&objective))?.0;
        eprintln!("{initial_name} encoder: kNN {:.2}%, linear {:.2}%", initial.knn, initial.linear);
        (Some(raw), Some(initial))
    } else {
        if leader {
            eprintln!("the images have no labels: training only, no kNN or linear evaluation");
        }
        (None, None)
    };

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
    let loader = Loader::with_views(train.clone(), views, CollateViews { device: device.clone() }, loader_config)?
        .with_prefetch(image_flags.prefetch)?
        .with_shard(crate::processes::shard()?)?;
    let mut trainer = flags.start(Trainer::new(config, objective)?)?;
    // The kNN monitor runs on a subset after every epoch; its time is kept out of the training time.
    let monitor_time = Rc::new(Cell::new(0.0));
    if labelled {
        let (mon_train, mon_test) = (sample_of(&eval_train, 10_000)?, sample_of(&eval_test, 2_000)?);
        let (mon_train_labels, mon_test_labels) = (mon_train.labels(), mon_test.labels());
        let (norm, dev) = (normalize.clone(), device.clone());
        let spent = Rc::clone(&monitor_time);
        let knn = Knn { k: knn.k.min(mon_train.len()), ..knn };
        trainer.add_evaluation("knn_monitor", 1, move |o: &mut O, progress| {
            let epoch = progress.epoch;
            let t = Instant::now();
            let (a, b) = (
                features(encoder(o), &mon_train, &norm, size, &dev)?,
                features(encoder(o), &mon_test, &norm, size, &dev)?,
            );
            let acc = knn.accuracy(&a, &mon_train_labels, &b, &mon_test_labels)?.top1;
            eprintln!(
                "epoch {}: kNN monitor {:.2}% ({} train / {} test images)",
                epoch + 1,
                100.0 * acc,
                mon_train.len(),
                mon_test.len()
            );
            spent.set(spent.get() + t.elapsed().as_secs_f64());
            Ok(100.0 * acc)
        });
    }
    // Collapse, the failure of the methods without negatives, is watched in every run: the
    // spread of the encoder's features for a fixed sample of training images, every epoch.
    let spread_sample = sample_of(&train, 2000)?;
    if leader {
        let sample = spread_sample.clone();
        let (norm, dev) = (normalize.clone(), device.clone());
        let spent = Rc::clone(&monitor_time);
        trainer.add_collapse_monitor(1, move |o: &mut O, progress| {
            let t = Instant::now();
            let z = features(encoder(o), &sample, &norm, size, &dev)?;
            let spread = Spread::of(&z)?;
            eprintln!(
                "epoch {}: embeddings' std x sqrt(D) {:.3}, effective rank {:.1} of {} ({} training images)",
                progress.epoch + 1,
                spread.scaled_std,
                spread.effective_rank,
                spread.max_rank,
                sample.len()
            );
            spent.set(spent.get() + t.elapsed().as_secs_f64());
            Ok(z)
        });
    }
    // Alignment (Wang and Isola 2020, alpha 2): two views of 256 of those images by the run's
    // recipe, the same views every epoch, so the figure moves with the encoder alone.
    if leader {
        let pairs = sample_of(&spread_sample, 256)?;
        let augment = recipe.build(size, normalize.clone());
        let (dev, seed) = (device.clone(), flags.seed);
        let spent = Rc::clone(&monitor_time);
        trainer.add_evaluation("alignment", 1, move |o: &mut O, _| {
            let t = Instant::now();
            let mut views: [Vec<Image>; 2] = [Vec::new(), Vec::new()];
            for i in 0..pairs.len() {
                let (image, _) = pairs.get(i)?;
                for (v, out) in views.iter_mut().enumerate() {
                    out.push(augment.apply(image.clone(), &mut keyed_rng(seed, &[ALIGNMENT_KEY, i as u64, v as u64]))?);
                }
            }
            let [a, b] = views.map(|v| embed_views(encoder(o), &v, &dev));
            let alignment = contrastive_eval::alignment(&a?, &b?, 2.0)?;
            spent.set(spent.get() + t.elapsed().as_secs_f64());
            Ok(alignment)
        });
    }
    let steps_before = trainer.state().step;
    let fit_started = Instant::now();
    let summary = trainer.fit(&loader)?;
    flags.stop_if_interrupted(&summary)?;
    let train_seconds = fit_started.elapsed().as_secs_f64() - monitor_time.get();
    let steps = summary.steps - steps_before;
    let objective = trainer.into_objective();
    let (trained, exported) = if labelled {
        let (trained, test_f) = score_features(encoder(&objective))?;
        eprintln!("trained encoder: kNN {:.2}%, linear {:.2}%", trained.knn, trained.linear);
        (Some(trained), Some(test_f))
    } else {
        (None, None)
    };
    // The trained encoder's spread, as the monitor measures it (in the JSON).
    let spread_z =
        if leader { Some(features(encoder(&objective), &spread_sample, &normalize, size, &device)?) } else { None };
    let spread = match &spread_z {
        Some(z) => {
            let s = Spread::of(z)?;
            Some(json!({ "embedding_std": s.scaled_std, "effective_rank": s.effective_rank }))
        }
        None => None,
    };
    if let Some(path) = flags.save_embeddings.as_ref().filter(|_| leader) {
        match &exported {
            Some(test_f) => save_embeddings(path, test_f, &test_labels)?,
            // Without labels nothing was embedded yet: the training images are, as they are
            // written (a folder of shards never holds them all).
            None => save_image_embeddings(encoder(&objective), &eval_train, &normalize, size, &device, path)?,
        }
        let (which, n) = if labelled { ("evaluation", test_labels.len()) } else { ("training", eval_train.len()) };
        eprintln!("embeddings of the {n} {which} images: {}", path.display());
    }
    if let Some(dir) = flags.run_dir().filter(|_| leader) {
        let title = format!("{} test embeddings (PCA)", spec.method);
        let scatter = exported.as_ref().map(|x| (x, test_labels.as_slice(), title.as_str()));
        for f in plot_run(&dir, scatter)? {
            eprintln!("plot: {}", f.display());
        }
    }
    let skipped: BTreeSet<PathBuf> = train.skipped().into_iter().chain(test.skipped()).collect();
    if !skipped.is_empty() {
        eprintln!("{} unreadable image files were skipped (each named in a warning above)", skipped.len());
    }
    let images = steps * batch_size * loader.shard().world_size;
    let figures = json!({
        "method": spec.method,
        "data": data.source,
        "train_images": train.len(),
        "test_images": test.len(),
        "image_size": [size.0, size.1],
        "skipped_files": skipped.len(),
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
        "spread": spread,
        "checkpoint": summary.checkpoint.map(|p| p.display().to_string()),
        "wall_seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    // The projector and the report show the evaluation images' embeddings, or without labels
    // the sample the collapse statistics come from.
    let shown = match (&exported, &spread_z) {
        (Some(test_f), _) => Some((test_f, &eval_test, "evaluation_images")),
        (None, Some(z)) => Some((z, &spread_sample, "training_images")),
        (None, None) => None,
    };
    let items = |rows: &[usize]| image_items(shown.map_or(&eval_test, |s| s.1), rows);
    let shown = shown.map(|(embeddings, _, name)| Shown { name, embeddings, items: &items });
    for f in write_views(flags, &figures, shown)? {
        eprintln!("view: {}", f.display());
    }
    Ok(figures)
}
