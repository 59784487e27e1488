//! Views other than two: a multi-crop loader (2 global + N local views, each set by its own
//! augmentation), an objective over all of them trained by the `Trainer`, and a batch source
//! written by hand (pairs of two "modalities" made by a seeded generator) trained and resumed
//! bit for bit.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{linear, Linear};
use contrastive_core::data::{BatchSource, CropSet, Loader, LoaderConfig, MultiCrop};
use contrastive_core::loss::nt_xent;
use contrastive_core::nn::{InitScheme, ParamStore};
use contrastive_core::optim::{OptimizerConfig, Schedule};
use contrastive_core::rng::sample_rng;
use contrastive_core::train::{read_history, Objective, Trainer, TrainerConfig};
use contrastive_core::Result;
use rand::{Rng, RngCore};

const DIM: usize = 6;

/// 96 points, 3 clusters at the corners of a simplex, spread 0.3 around them.
fn points() -> Vec<Vec<f32>> {
    (0..96)
        .map(|i| {
            let mut rng = sample_rng(99, 0, i);
            (0..DIM).map(|d| if d == i % 3 { 2.0 } else { 0.0 } + rng.random_range(-0.3f32..0.3)).collect()
        })
        .collect()
}

fn global(x: Vec<f32>, rng: &mut dyn RngCore) -> Result<Vec<f32>> {
    Ok(x.into_iter().map(|v| v + rng.random_range(-0.1f32..0.1)).collect())
}

/// A "small crop": keeps a random half of the coordinates, the rest zeroed.
fn local(x: Vec<f32>, rng: &mut dyn RngCore) -> Result<Vec<f32>> {
    Ok(x.into_iter().map(|v| if rng.random_bool(0.5) { v } else { 0.0 }).collect())
}

type Aug = fn(Vec<f32>, &mut dyn RngCore) -> Result<Vec<f32>>;
/// (global views, local views), each (views, N, DIM).
type Crops = (Vec<Tensor>, Vec<Tensor>);
type Col = fn(Vec<CropSet<Vec<f32>>>) -> Result<Crops>;

fn stack(samples: &[CropSet<Vec<f32>>], view: impl Fn(&CropSet<Vec<f32>>) -> &Vec<f32>) -> Result<Tensor> {
    let flat: Vec<f32> = samples.iter().flat_map(|s| view(s).iter().copied()).collect();
    Ok(Tensor::from_vec(flat, (samples.len(), DIM), &Device::Cpu)?)
}

fn collate_crops(samples: Vec<CropSet<Vec<f32>>>) -> Result<Crops> {
    let (g, l) = (samples[0].global.len(), samples[0].local.len());
    let global = (0..g).map(|v| stack(&samples, |s| &s.global[v])).collect::<Result<_>>()?;
    let local = (0..l).map(|v| stack(&samples, |s| &s.local[v])).collect::<Result<_>>()?;
    Ok((global, local))
}

fn crop_loader(threads: usize, locals: usize) -> Loader<Vec<Vec<f32>>, MultiCrop<Aug, Aug>, Col> {
    let crops = MultiCrop::new(global as Aug, local as Aug, 2, locals).unwrap();
    let config = LoaderConfig { batch_size: 16, seed: 4, shuffle: true, drop_last: true, threads };
    Loader::with_views(points(), crops, collate_crops as Col, config).unwrap()
}

#[test]
fn multi_crop_views_are_made_by_their_own_augmentation_whatever_the_thread_count() {
    let collect = |threads| {
        let crops = MultiCrop::new(global as Aug, local as Aug, 2, 4).unwrap();
        let config = LoaderConfig { batch_size: 16, seed: 4, shuffle: true, drop_last: true, threads };
        let keep = |s: Vec<CropSet<Vec<f32>>>| -> Result<Vec<CropSet<Vec<f32>>>> { Ok(s) };
        let loader = Loader::with_views(points(), crops, keep, config).unwrap();
        loader.epoch(0).collect::<Result<Vec<_>>>().unwrap()
    };
    let one = collect(1);
    assert_eq!(one, collect(3));
    assert_eq!(one.len(), 6);
    let data = points();
    for set in one.iter().flatten() {
        assert_eq!((set.global.len(), set.local.len()), (2, 4));
        let x = &data[set.index];
        // Global views: every coordinate moved by at most 0.1.
        for g in &set.global {
            assert!(g.iter().zip(x).all(|(a, b)| (a - b).abs() <= 0.1 + 1e-6));
        }
        // Local views: every coordinate kept exactly or zeroed.
        for l in &set.local {
            assert!(l.iter().zip(x).all(|(a, b)| *a == 0.0 || a == b));
        }
        assert_ne!(set.global[0], set.global[1]);
    }
    assert!(MultiCrop::new(global as Aug, local as Aug, 0, 4).unwrap_err().to_string().contains("globals"));
}

struct Mlp {
    store: ParamStore,
    l1: Linear,
    l2: Linear,
}

impl Mlp {
    fn new() -> Self {
        let store = ParamStore::new(3, InitScheme::PyTorch);
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        let l1 = linear(DIM, 16, vb.pp("l1")).unwrap();
        let l2 = linear(16, 8, vb.pp("l2")).unwrap();
        Self { store, l1, l2 }
    }
    fn embed(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.l2.forward(&self.l1.forward(x)?.relu()?)
    }
}

/// Multi-crop NT-Xent: each global view against every other view (SwAV's pairing, with InfoNCE).
struct MultiCropMlp(Mlp);

impl Objective for MultiCropMlp {
    type Batch = Crops;
    fn loss(&mut self, (global, local): &Crops) -> candle_core::Result<Tensor> {
        let g: Vec<Tensor> = global.iter().map(|x| self.0.embed(x)).collect::<candle_core::Result<_>>()?;
        let l: Vec<Tensor> = local.iter().map(|x| self.0.embed(x)).collect::<candle_core::Result<_>>()?;
        let mut terms = Vec::new();
        for (i, gi) in g.iter().enumerate() {
            for (j, other) in g.iter().chain(&l).enumerate() {
                if i != j {
                    terms.push(nt_xent(gi, other, 0.5)?);
                }
            }
        }
        Tensor::stack(&terms, 0)?.mean_all()
    }
    fn params(&self) -> &ParamStore {
        &self.0.store
    }
    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "method": "multi-crop-mlp" })
    }
}

fn trainer_config(epochs: usize, max_steps: Option<usize>) -> TrainerConfig {
    TrainerConfig {
        epochs,
        max_steps,
        lr: 3e-3,
        schedule: Schedule::Constant,
        optimizer: OptimizerConfig::adamw(),
        progress: false,
        ..Default::default()
    }
}

fn losses(dir: &std::path::Path) -> Vec<f64> {
    read_history(&dir.join("history.jsonl")).unwrap().iter().filter_map(|r| r.loss).collect()
}

#[test]
fn the_trainer_trains_on_multi_crop_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::new(trainer_config(8, None), MultiCropMlp(Mlp::new())).unwrap().with_run_dir(dir.path());
    let summary = trainer.fit(&crop_loader(2, 3)).unwrap();
    assert_eq!(summary.steps, 8 * 6);
    let l = losses(dir.path());
    let (first, last) = (l[..6].iter().sum::<f64>() / 6.0, l[l.len() - 6..].iter().sum::<f64>() / 6.0);
    assert!(last < first - 0.2, "multi-crop loss did not fall: {first} -> {last}");
}

/// Two "modalities" of one hidden item: a point and the point reversed and doubled, batch `b`
/// of epoch `e` generated from the stream `sample_rng(seed, e, b)`. No dataset, no loader.
struct PairedModalities {
    seed: u64,
    batches: usize,
    batch_size: usize,
}

impl BatchSource for PairedModalities {
    type Batch = (Tensor, Tensor);
    fn batches_per_epoch(&self) -> usize {
        self.batches
    }
    fn batch_len(&self, _batch: usize) -> usize {
        self.batch_size
    }
    fn batch_size(&self) -> usize {
        self.batch_size
    }
    fn seed(&self) -> u64 {
        self.seed
    }
    fn epoch_from(&self, epoch: usize, start: usize) -> impl Iterator<Item = Result<(Tensor, Tensor)>> {
        (start..self.batches).map(move |b| {
            let mut rng = sample_rng(self.seed, epoch, b);
            let n = self.batch_size;
            let a: Vec<f32> = (0..n * DIM)
                .map(|i| if i % DIM == (i / DIM) % 3 { 2.0 } else { 0.0 } + rng.random_range(-0.3f32..0.3))
                .collect();
            let other: Vec<f32> = a.chunks(DIM).flat_map(|row| row.iter().rev().map(|v| 2.0 * v)).collect();
            Ok((Tensor::from_vec(a, (n, DIM), &Device::Cpu)?, Tensor::from_vec(other, (n, DIM), &Device::Cpu)?))
        })
    }
}

/// Two towers, one per modality, under NT-Xent.
struct TwoTowers(Mlp, Mlp);

impl Objective for TwoTowers {
    type Batch = (Tensor, Tensor);
    fn loss(&mut self, (a, b): &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        nt_xent(&self.0.embed(a)?, &self.1.embed(b)?, 0.5)
    }
    fn params(&self) -> &ParamStore {
        &self.0.store
    }
    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "method": "two-towers" })
    }
}

fn two_towers() -> TwoTowers {
    let a = Mlp::new();
    // The second tower's weights live in the same store, under their own names.
    let vb = a.store.var_builder(DType::F32, &Device::Cpu);
    let b = Mlp {
        store: a.store.clone(),
        l1: linear(DIM, 16, vb.pp("b.l1")).unwrap(),
        l2: linear(16, 8, vb.pp("b.l2")).unwrap(),
    };
    TwoTowers(a, b)
}

#[test]
fn a_hand_written_batch_source_trains_and_resumes_bit_for_bit() {
    let source = PairedModalities { seed: 8, batches: 5, batch_size: 24 };
    let straight_dir = tempfile::tempdir().unwrap();
    let mut straight = Trainer::new(trainer_config(3, None), two_towers()).unwrap().with_run_dir(straight_dir.path());
    assert_eq!(straight.fit(&source).unwrap().steps, 15);
    let l = losses(straight_dir.path());
    assert!(l[12..].iter().sum::<f64>() < l[..3].iter().sum::<f64>() - 0.3, "loss did not fall: {l:?}");

    // 7 steps (mid-epoch), then a resume to the end: the same losses and weights.
    let dir = tempfile::tempdir().unwrap();
    let mut first = Trainer::new(trainer_config(3, Some(7)), two_towers()).unwrap().with_run_dir(dir.path());
    first.fit(&source).unwrap();
    drop(first);
    let mut second = Trainer::new(trainer_config(3, None), two_towers()).unwrap().with_run_dir(dir.path());
    assert!(second.resume().unwrap());
    second.fit(&source).unwrap();
    assert_eq!(losses(dir.path()), l);
    let bits = |t: &Trainer<TwoTowers>| -> Vec<u32> {
        t.objective()
            .params()
            .all()
            .iter()
            .flat_map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .map(f32::to_bits)
            .collect()
    };
    assert_eq!(bits(&second), bits(&straight));
    // Another batch size is refused on resume, as with a loader.
    let mut third = Trainer::new(trainer_config(4, None), two_towers()).unwrap().with_run_dir(dir.path());
    third.resume().unwrap();
    let err = third.fit(&PairedModalities { batch_size: 12, ..source }).unwrap_err().to_string();
    assert!(err.contains("batch size 24"), "{err}");
}
