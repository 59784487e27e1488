//! Data parallelism over MPI (feature `mpi`): two processes with batches of B train exactly as
//! one process with batches of 2B, and a process that fails stops the run instead of hanging it.
//!
//! Each test starts `mpirun -np 2` on this test binary itself, with `CONTRASTIVE_MPI_WORKER`
//! naming the part to run; the processes talk over loopback only (`--mca btl self,vader`, TCP on
//! `lo`, inside a network namespace with only `lo` where `unshare -n` is permitted). Without
//! mpirun the tests say so and pass, unless `CONTRASTIVE_REQUIRE_MPI=1` (CI), where they fail.
#![cfg(feature = "mpi")]

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{linear, Linear};
use contrastive_core::collective::{gather_labels, gather_rows, set_sync_batch_norm, Collective, Local, Mpi};
use contrastive_core::cross_modal::{Clip, ClipBatch, ClipConfig, LOG_SCALE};
use contrastive_core::data::{Loader, LoaderConfig, Shard, ViewPair};
use contrastive_core::loss::{nt_xent, supcon};
use contrastive_core::nn::{batch_norm, BatchNorm, InitScheme, ParamStore};
use contrastive_core::optim::{OptimizerConfig, Schedule};
use contrastive_core::train::{Objective, Trainer, TrainerConfig};
use contrastive_core::{Backbone, Result};
use rand::{Rng, RngCore, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[path = "support/mpirun.rs"]
mod support;
use support::{assert_same_run, checkpoint_values, sgd_steps, workers, OUT, WORKER};

const DIM: usize = 8;

fn points() -> Vec<Vec<f32>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    (0..96).map(|_| (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect()
}

fn noise(x: Vec<f32>, rng: &mut dyn RngCore) -> Result<Vec<f32>> {
    Ok(x.iter().map(|v| v + rng.random_range(-0.3f32..0.3)).collect())
}

fn collate(samples: Vec<ViewPair<Vec<f32>>>) -> Result<(Tensor, Tensor)> {
    let n = samples.len();
    let first: Vec<f32> = samples.iter().flat_map(|s| s.first.iter().copied()).collect();
    let second: Vec<f32> = samples.iter().flat_map(|s| s.second.iter().copied()).collect();
    Ok((Tensor::from_vec(first, (n, DIM), &Device::Cpu)?, Tensor::from_vec(second, (n, DIM), &Device::Cpu)?))
}

type Aug = fn(Vec<f32>, &mut dyn RngCore) -> Result<Vec<f32>>;
type Col = fn(Vec<ViewPair<Vec<f32>>>) -> Result<(Tensor, Tensor)>;

/// How a worker fails, on rank 1 at its third step.
#[derive(Clone, Copy, PartialEq)]
enum Failure {
    None,
    /// The loss returns an error (the trainer aborts the run).
    Error,
    /// The process exits on its own, without a word to MPI.
    Exit,
}

/// An MLP with BatchNorm under NT-Xent over the global batch: each process gathers every
/// process's embeddings, and BatchNorm's statistics span every process's batch (SyncBatchNorm).
struct GatheredMlp {
    store: ParamStore,
    l1: Linear,
    bn: BatchNorm,
    l2: Linear,
    collective: Arc<dyn Collective>,
    failure: Failure,
    calls: usize,
}

impl GatheredMlp {
    fn new(collective: Arc<dyn Collective>, failure: Failure) -> Self {
        // Each rank its own initialisation: the trainer's broadcast makes them rank 0's.
        let store = ParamStore::new(3 + collective.rank() as u64, InitScheme::PyTorch);
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        let l1 = linear(DIM, 16, vb.pp("l1")).unwrap();
        let bn = batch_norm(16, vb.pp("bn")).unwrap();
        let l2 = linear(16, 8, vb.pp("l2")).unwrap();
        Self { store, l1, bn, l2, collective, failure, calls: 0 }
    }
}

impl Objective for GatheredMlp {
    type Batch = (Tensor, Tensor);

    fn loss(&mut self, batch: &Self::Batch) -> candle_core::Result<Tensor> {
        self.calls += 1;
        if self.calls == 3 && self.collective.rank() == 1 {
            match self.failure {
                Failure::Error => candle_core::bail!("rank 1 fails on purpose"),
                Failure::Exit => std::process::exit(3),
                Failure::None => {}
            }
        }
        let embed = |x: &Tensor| self.l2.forward(&self.bn.forward_train(&self.l1.forward(x)?, true)?);
        let gather = |z: Tensor| gather_rows(&z, self.collective.as_ref()).map_err(candle_core::Error::wrap);
        nt_xent(&gather(embed(&batch.0)?)?, &gather(embed(&batch.1)?)?, 0.5)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }
}

/// Five steps of batches of `batch` per process, into `dir`.
fn train(collective: Arc<dyn Collective>, batch: usize, failure: Failure, dir: &Path) -> Result<()> {
    train_until(collective, batch, failure, dir, 5, false)
}

/// Steps up to `steps` of batches of `batch` per process, into `dir` (from its last checkpoint
/// when `resume`).
fn train_until(
    collective: Arc<dyn Collective>,
    batch: usize,
    failure: Failure,
    dir: &Path,
    steps: usize,
    resume: bool,
) -> Result<()> {
    let shard = Shard { rank: collective.rank(), world_size: collective.world_size() };
    let config = LoaderConfig { batch_size: batch, seed: 5, shuffle: true, drop_last: true, threads: 1 };
    let loader = Loader::new(points(), noise as Aug, collate as Col, config)?.with_shard(shard)?;
    let config = TrainerConfig {
        epochs: 1,
        max_steps: Some(steps),
        lr: 0.02,
        schedule: Schedule::WarmupCosine { warmup_steps: 2, total_steps: 5, final_fraction: 0.1 },
        // SGD, not Adam: Adam's steps do not change when every gradient is scaled alike, and
        // the test must see a gradient that is off by a factor.
        optimizer: OptimizerConfig::Sgd { momentum: 0.9, dampening: 0.0, nesterov: false, weight_decay: 1e-4 },
        clip_grad_norm: Some(50.0),
        progress: false,
        ..Default::default()
    };
    let objective = GatheredMlp::new(Arc::clone(&collective), failure);
    let mut trainer = Trainer::new(config, objective)?.with_collective(collective).with_run_dir(dir);
    if resume {
        assert!(trainer.resume()?, "a checkpoint to resume from");
    }
    trainer.fit(&loader)?;
    Ok(())
}

/// A tower of CLIP: one linear layer over feature rows.
struct Rows(Linear);

impl Backbone for Rows {
    type Input = Tensor;
    fn encode(&self, x: &Tensor, _train: bool) -> candle_core::Result<Tensor> {
        self.0.forward(x)
    }
    fn dim(&self) -> usize {
        4
    }
}

fn clip(collective: Arc<dyn Collective>) -> Clip<Rows, Rows> {
    let store = ParamStore::new(3, InitScheme::PyTorch);
    let vb = store.var_builder(DType::F32, &Device::Cpu);
    let (a, b) = (Rows(linear(DIM, 4, vb.pp("a")).unwrap()), Rows(linear(DIM, 4, vb.pp("b")).unwrap()));
    Clip::new(a, b, store, ClipConfig::default()).unwrap().with_collective(collective)
}

fn clip_pairs(samples: Vec<ViewPair<Vec<f32>>>) -> Result<ClipBatch<Tensor, Tensor>> {
    let (a, b) = collate(samples)?;
    Ok(ClipBatch { a, b })
}

/// Five SGD steps of CLIP (two linear towers, the learnable temperature) with batches of
/// `batch` per process, into `dir`.
fn train_clip(collective: Arc<dyn Collective>, batch: usize, dir: &Path) -> Result<()> {
    let shard = Shard { rank: collective.rank(), world_size: collective.world_size() };
    let config = LoaderConfig { batch_size: batch, seed: 5, shuffle: true, drop_last: true, threads: 1 };
    type ClipCol = fn(Vec<ViewPair<Vec<f32>>>) -> Result<ClipBatch<Tensor, Tensor>>;
    let loader = Loader::new(points(), noise as Aug, clip_pairs as ClipCol, config)?.with_shard(shard)?;
    let config = sgd_steps(1, 5, 0.1);
    let mut trainer =
        Trainer::new(config, clip(Arc::clone(&collective)))?.with_collective(collective).with_run_dir(dir);
    trainer.fit(&loader)?;
    Ok(())
}

/// SupCon over the global batch: a linear embedding of one view, labels from the sample index.
struct SupConLinear {
    store: ParamStore,
    layer: Linear,
    collective: Arc<dyn Collective>,
}

impl Objective for SupConLinear {
    type Batch = (Tensor, Tensor);

    fn loss(&mut self, (x, labels): &Self::Batch) -> candle_core::Result<Tensor> {
        let c = self.collective.as_ref();
        let z = gather_rows(&self.layer.forward(x)?, c).map_err(candle_core::Error::wrap)?;
        supcon(&z, &gather_labels(labels, c).map_err(candle_core::Error::wrap)?, 0.5)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }
}

fn supcon_model(collective: Arc<dyn Collective>) -> SupConLinear {
    let store = ParamStore::new(4, InitScheme::PyTorch);
    let layer = linear(DIM, 6, store.var_builder(DType::F32, &Device::Cpu).pp("layer")).unwrap();
    SupConLinear { store, layer, collective }
}

fn labelled(samples: Vec<ViewPair<Vec<f32>>>) -> Result<(Tensor, Tensor)> {
    let labels: Vec<u32> = samples.iter().map(|s| (s.index % 5) as u32).collect();
    let n = samples.len();
    let (first, _) = collate(samples)?;
    Ok((first, Tensor::from_vec(labels, n, &Device::Cpu)?))
}

/// Five SGD steps of SupCon with batches of `batch` per process, into `dir`.
fn train_supcon(collective: Arc<dyn Collective>, batch: usize, dir: &Path) -> Result<()> {
    let shard = Shard { rank: collective.rank(), world_size: collective.world_size() };
    let config = LoaderConfig { batch_size: batch, seed: 6, shuffle: true, drop_last: true, threads: 1 };
    let loader = Loader::new(points(), noise as Aug, labelled as Col, config)?.with_shard(shard)?;
    let config = sgd_steps(1, 5, 0.1);
    let model = supcon_model(Arc::clone(&collective));
    Trainer::new(config, model)?.with_collective(collective).with_run_dir(dir).fit(&loader)?;
    Ok(())
}

/// The worker a test starts under mpirun (does nothing when run as an ordinary test).
#[test]
fn mpi_worker() {
    let Ok(part) = std::env::var(WORKER) else { return };
    if part == "supcon" {
        let collective: Arc<dyn Collective> = Arc::new(Mpi::init().unwrap());
        return train_supcon(collective, 8, &PathBuf::from(std::env::var(OUT).unwrap())).unwrap();
    }
    if part == "clip" {
        let collective: Arc<dyn Collective> = Arc::new(Mpi::init().unwrap());
        return train_clip(collective, 8, &PathBuf::from(std::env::var(OUT).unwrap())).unwrap();
    }
    let failure = match part.as_str() {
        "error" => Failure::Error,
        "exit" => Failure::Exit,
        _ => Failure::None,
    };
    let collective: Arc<dyn Collective> = Arc::new(Mpi::init().unwrap());
    set_sync_batch_norm(Some(Arc::clone(&collective)));
    let dir = PathBuf::from(std::env::var(OUT).unwrap());
    match part.as_str() {
        "first3" => train_until(collective, 8, failure, &dir, 3, false).unwrap(),
        "resume" => train_until(collective, 8, failure, &dir, 5, true).unwrap(),
        _ => train(collective, 8, failure, &dir).unwrap(),
    }
    // The last handle goes, and MPI is finalised (mpirun counts a process that exits without it
    // as failed).
    set_sync_batch_norm(None);
}

fn final_params(dir: &Path) -> Vec<(String, Vec<f32>)> {
    checkpoint_values(&GatheredMlp::new(Arc::new(Local), Failure::None).store, dir)
}

/// SupCon over the gathered embeddings and labels: 2 x 8 train as 1 x 16.
#[test]
fn supcon_on_two_processes_trains_as_one_with_the_global_batch() {
    let one = tempfile::tempdir().unwrap();
    train_supcon(Arc::new(Local), 16, one.path()).unwrap();
    let two = tempfile::tempdir().unwrap();
    let Some(run) = workers(2, "supcon", two.path()) else { return };
    assert!(run.status.success(), "mpirun failed:\n{}", run.stderr);
    let state = |dir: &Path| checkpoint_values(&supcon_model(Arc::new(Local)).store, dir);
    assert_same_run("supcon", one.path(), two.path(), 5, 1e-5, state);
    assert_moved(&supcon_model(Arc::new(Local)).store, &state(one.path()));
}

/// CLIP's loss over both towers' gathered embeddings: 2 x 8 train as 1 x 16 (the towers and
/// the learnable temperature).
#[test]
fn clip_on_two_processes_trains_as_one_with_the_global_batch() {
    let one = tempfile::tempdir().unwrap();
    train_clip(Arc::new(Local), 16, one.path()).unwrap();
    let two = tempfile::tempdir().unwrap();
    let Some(run) = workers(2, "clip", two.path()) else { return };
    assert!(run.status.success(), "mpirun failed:\n{}", run.stderr);
    let state = |dir: &Path| checkpoint_values(&clip(Arc::new(Local)).into_parts().2, dir);
    assert!(state(one.path()).iter().any(|(k, _)| k == LOG_SCALE));
    assert_same_run("clip", one.path(), two.path(), 5, 1e-5, state);
    assert_moved(&clip(Arc::new(Local)).into_parts().2, &state(one.path()));
}

/// Training moved some variable of `start` by more than 1e-3 (a comparison is not of two
/// untrained models).
fn assert_moved(start: &ParamStore, trained: &[(String, Vec<f32>)]) {
    let mut moved = 0.0f32;
    for ((_, v), (_, x)) in start.all().into_iter().zip(trained) {
        let v = v.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        moved = v.iter().zip(x).map(|(p, q)| (p - q).abs()).fold(moved, f32::max);
    }
    assert!(moved > 1e-3, "the variables moved by at most {moved}");
}

/// A run resumes on another number of processes that keeps the global batch: 3 steps on 2
/// processes of 8 then 2 on one of 16, and 3 on one then 2 on two, both end where 5 steps on
/// one process of 16 do; a resume that changes the global batch is refused, naming it.
#[test]
fn a_run_resumes_on_another_number_of_processes() {
    let straight = tempfile::tempdir().unwrap();
    train(Arc::new(Local), 16, Failure::None, straight.path()).unwrap();
    let two_then_one = tempfile::tempdir().unwrap();
    let Some(run) = workers(2, "first3", two_then_one.path()) else { return };
    assert!(run.status.success(), "mpirun failed:\n{}", run.stderr);
    train_until(Arc::new(Local), 16, Failure::None, two_then_one.path(), 5, true).unwrap();
    let one_then_two = tempfile::tempdir().unwrap();
    train_until(Arc::new(Local), 16, Failure::None, one_then_two.path(), 3, false).unwrap();
    let run = workers(2, "resume", one_then_two.path()).unwrap();
    assert!(run.status.success(), "mpirun failed:\n{}", run.stderr);
    for (what, dir) in [("2 then 1", &two_then_one), ("1 then 2", &one_then_two)] {
        assert_same_run(what, straight.path(), dir.path(), 5, 1e-5, final_params);
    }
    // One process of 8 would make another global batch.
    let e = train_until(Arc::new(Local), 8, Failure::None, two_then_one.path(), 7, true).unwrap_err().to_string();
    assert!(e.contains("batch size 16 on 1 process") && e.contains("must stay 16"), "{e}");
}

#[test]
fn two_processes_with_batch_b_train_as_one_with_batch_2b() {
    let one = tempfile::tempdir().unwrap();
    train(Arc::new(Local), 16, Failure::None, one.path()).unwrap();
    let two = tempfile::tempdir().unwrap();
    let Some(run) = workers(2, "train", two.path()) else { return };
    assert!(run.status.success(), "mpirun failed:\n{}", run.stderr);
    // Rank 0 alone wrote the run's files.
    assert_same_run("mlp", one.path(), two.path(), 5, 1e-5, final_params);
    let p = final_params(one.path());
    // The parameters did move from their start (the comparison is not of two untrained models).
    let start = ParamStore::new(3, InitScheme::PyTorch);
    let vb = start.var_builder(DType::F32, &Device::Cpu);
    let l1 = linear(DIM, 16, vb.pp("l1")).unwrap();
    let before = l1.weight().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let after = &p.iter().find(|(k, _)| k == "l1.weight").unwrap().1;
    assert!(before.iter().zip(after).any(|(u, v)| (u - v).abs() > 1e-3));
}

#[test]
fn a_process_that_fails_stops_the_run() {
    for worker in ["error", "exit"] {
        let dir = tempfile::tempdir().unwrap();
        let Some(run) = workers(2, worker, dir.path()) else { return };
        assert!(!run.status.success(), "{worker}: the run succeeded:\n{}", run.stderr);
        if worker == "error" {
            let text = &run.stderr;
            assert!(text.contains("rank 1 of 2: ") && text.contains("rank 1 fails on purpose"), "{text}");
        }
        eprintln!("{worker}: stopped after {:.1} s", run.took.as_secs_f64());
    }
}
