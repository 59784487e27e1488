//! The trainer end to end on a small MLP: learning, determinism, exact resume, NaN stop, stop
//! request, mismatched checkpoints, history.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{linear, Linear};
use contrastive_core::data::{Loader, LoaderConfig, TwoViews, ViewPair};
use contrastive_core::loss::nt_xent;
use contrastive_core::nn::{InitScheme, ParamStore};
use contrastive_core::optim::{OptimizerConfig, Schedule};
use contrastive_core::train::{list_checkpoints, read_history, Objective, Progress, Trainer, TrainerConfig};
use contrastive_core::{Error, Result};
use rand::{Rng, RngCore, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const DIM: usize = 8;
const CLUSTERS: usize = 4;

/// 4 clusters of 48 points in 8-D: centres at distance ~2.8, points spread 0.6 around them.
fn clustered() -> Vec<(Vec<f32>, usize)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let centres: Vec<Vec<f32>> =
        (0..CLUSTERS).map(|_| (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
    (0..CLUSTERS * 48)
        .map(|i| {
            let c = i % CLUSTERS;
            (centres[c].iter().map(|v| v + rng.random_range(-0.6f32..0.6)).collect(), c)
        })
        .collect()
}

fn noise(x: (Vec<f32>, usize), rng: &mut dyn RngCore) -> Result<(Vec<f32>, usize)> {
    Ok((x.0.iter().map(|v| v + rng.random_range(-0.3f32..0.3)).collect(), x.1))
}

fn collate(samples: Vec<ViewPair<(Vec<f32>, usize)>>) -> Result<(Tensor, Tensor)> {
    let n = samples.len();
    let first: Vec<f32> = samples.iter().flat_map(|s| s.first.0.iter().copied()).collect();
    let second: Vec<f32> = samples.iter().flat_map(|s| s.second.0.iter().copied()).collect();
    Ok((Tensor::from_vec(first, (n, DIM), &Device::Cpu)?, Tensor::from_vec(second, (n, DIM), &Device::Cpu)?))
}

type Aug = fn((Vec<f32>, usize), &mut dyn RngCore) -> Result<(Vec<f32>, usize)>;
type Col = fn(Vec<ViewPair<(Vec<f32>, usize)>>) -> Result<(Tensor, Tensor)>;

type PointLoader = Loader<Vec<(Vec<f32>, usize)>, TwoViews<Aug>, Col>;

fn loader(threads: usize) -> PointLoader {
    let config = LoaderConfig { batch_size: 32, seed: 5, shuffle: true, drop_last: true, threads };
    Loader::new(clustered(), noise as Aug, collate as Col, config).unwrap()
}

/// A 2-layer MLP under NT-Xent; optionally returns NaN from a given call, or requests a stop.
struct Mlp {
    store: ParamStore,
    l1: Linear,
    l2: Linear,
    hidden: usize,
    calls: usize,
    nan_at: Option<usize>,
    nan_grad_at: Option<usize>,
    stop_at: Option<(usize, Arc<AtomicBool>)>,
}

impl Mlp {
    fn new(hidden: usize) -> Self {
        let store = ParamStore::new(3, InitScheme::PyTorch);
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        let l1 = linear(DIM, hidden, vb.pp("l1")).unwrap();
        let l2 = linear(hidden, 16, vb.pp("l2")).unwrap();
        Self { store, l1, l2, hidden, calls: 0, nan_at: None, nan_grad_at: None, stop_at: None }
    }

    fn embed(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.l2.forward(&self.l1.forward(x)?.relu()?)
    }
}

impl Objective for Mlp {
    type Batch = (Tensor, Tensor);

    fn loss(&mut self, batch: &Self::Batch) -> candle_core::Result<Tensor> {
        self.calls += 1;
        if let Some((at, flag)) = &self.stop_at {
            if self.calls == *at {
                flag.store(true, Ordering::SeqCst);
            }
        }
        let loss = nt_xent(&self.embed(&batch.0)?, &self.embed(&batch.1)?, 0.5)?;
        if self.nan_at == Some(self.calls) {
            return loss * f64::NAN;
        }
        if self.nan_grad_at == Some(self.calls) {
            // sqrt(w - w) is 0 forward, but its gradient is 1/(2 sqrt(0)) = inf.
            let w = self.l1.weight();
            return loss + (w - w.detach())?.sqrt()?.sum_all()?;
        }
        Ok(loss)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    /// A figure of the step: the first weight (it moves every step).
    fn step_figures(&self) -> candle_core::Result<Vec<(&'static str, f64)>> {
        Ok(vec![(
            "first_weight",
            self.l1.weight().flatten_all()?.get(0)?.to_dtype(candle_core::DType::F64)?.to_scalar()?,
        )])
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "method": "mlp-nt-xent", "hidden": self.hidden, "temperature": 0.5 })
    }
}

fn config(epochs: usize) -> TrainerConfig {
    TrainerConfig {
        epochs,
        lr: 3e-3,
        schedule: Schedule::WarmupCosine { warmup_steps: 5, total_steps: 60, final_fraction: 0.1 },
        optimizer: OptimizerConfig::adamw(),
        clip_grad_norm: Some(5.0),
        progress: false,
        ..Default::default()
    }
}

fn weights(store: &ParamStore) -> Vec<Vec<u32>> {
    store
        .all()
        .iter()
        .map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect())
        .collect()
}

fn losses(dir: &std::path::Path) -> Vec<u64> {
    read_history(&dir.join("history.jsonl")).unwrap().iter().filter_map(|r| r.loss.map(f64::to_bits)).collect()
}

/// Leave-one-out 1-NN accuracy (cosine) of the embeddings of the clean points.
fn knn_accuracy(mlp: &Mlp) -> f64 {
    let data = clustered();
    let x: Vec<f32> = data.iter().flat_map(|(v, _)| v.iter().copied()).collect();
    let x = Tensor::from_vec(x, (data.len(), DIM), &Device::Cpu).unwrap();
    let z = contrastive_core::similarity::l2_normalize(&mlp.embed(&x).unwrap()).unwrap();
    let sim = z.matmul(&z.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
    let correct = (0..data.len())
        .filter(|&i| {
            let nn = (0..data.len()).filter(|&j| j != i).max_by(|&a, &b| sim[i][a].total_cmp(&sim[i][b])).unwrap();
            data[nn].1 == data[i].1
        })
        .count();
    correct as f64 / data.len() as f64
}

#[test]
fn a_small_mlp_learns_clusters_and_the_history_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::new(config(10), Mlp::new(32)).unwrap().with_run_dir(dir.path());
    trainer.add_evaluation("knn", 5, |mlp: &mut Mlp, _: &Progress| Ok(knn_accuracy(mlp)));
    let summary = trainer.fit(&loader(2)).unwrap();
    assert_eq!(summary.steps, 60);
    let history = read_history(&dir.path().join("history.jsonl")).unwrap();
    let l: Vec<f64> = history.iter().filter_map(|r| r.loss).collect();
    assert_eq!(l.len(), 60);
    let first: f64 = l[..6].iter().sum::<f64>() / 6.0;
    let last: f64 = l[54..].iter().sum::<f64>() / 6.0;
    assert!(last < first - 0.3, "loss did not fall: {first} -> {last}");
    let evals: Vec<&contrastive_core::train::HistoryRecord> = history.iter().filter(|r| !r.eval.is_empty()).collect();
    assert_eq!(evals.iter().map(|r| r.epoch).collect::<Vec<_>>(), vec![4, 9]);
    let acc = knn_accuracy(trainer.objective());
    assert!(acc >= 0.95, "kNN accuracy {acc}");
    assert_eq!(evals[1].eval["knn"], acc);
    let r = &history[10];
    assert!(r.lr.unwrap() > 0.0 && r.samples_per_s.unwrap() > 0.0 && r.elapsed_s > 0.0);
    // A checkpoint at the end with everything a resume needs.
    let ckpt = summary.checkpoint.unwrap();
    for f in [
        "model.safetensors",
        "optimizer.safetensors",
        "optimizer.json",
        "state.json",
        "config.json",
        "extra.safetensors",
        "extra.json",
        "SHA256SUMS",
    ] {
        assert!(ckpt.join(f).exists(), "{f}");
    }
}

fn run_in_pool(threads: usize, f: impl FnOnce() -> (Vec<Vec<u32>>, Vec<u64>) + Send) -> (Vec<Vec<u32>>, Vec<u64>) {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

#[test]
fn same_seed_gives_bit_identical_runs_with_one_and_two_threads() {
    for threads in [1, 2] {
        let run = || {
            let dir = tempfile::tempdir().unwrap();
            let mut t = Trainer::new(TrainerConfig { max_steps: Some(12), ..config(2) }, Mlp::new(16))
                .unwrap()
                .with_run_dir(dir.path());
            t.fit(&loader(threads)).unwrap();
            (weights(t.objective().params()), losses(dir.path()))
        };
        let a = run_in_pool(threads, run);
        let b = run_in_pool(threads, run);
        assert_eq!(a, b, "{threads} threads");
        assert_eq!(a.1.len(), 12);
    }
}

#[test]
fn resume_continues_bit_for_bit() {
    let k = 9; // not a multiple of the 6 batches per epoch: resumes mid-epoch
    let straight_dir = tempfile::tempdir().unwrap();
    let mut straight = Trainer::new(TrainerConfig { max_steps: Some(2 * k), ..config(5) }, Mlp::new(16))
        .unwrap()
        .with_run_dir(straight_dir.path());
    straight.fit(&loader(2)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut first =
        Trainer::new(TrainerConfig { max_steps: Some(k), ..config(5) }, Mlp::new(16)).unwrap().with_run_dir(dir.path());
    first.fit(&loader(2)).unwrap();
    drop(first);
    let mut second = Trainer::new(TrainerConfig { max_steps: Some(2 * k), ..config(5) }, Mlp::new(16))
        .unwrap()
        .with_run_dir(dir.path());
    assert!(second.resume().unwrap());
    assert_eq!(second.state().step, k);
    second.fit(&loader(2)).unwrap();
    assert_eq!(weights(second.objective().params()), weights(straight.objective().params()));
    assert_eq!(losses(dir.path()), losses(straight_dir.path()));
}

#[test]
fn a_nan_loss_stops_with_the_step_named_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut mlp = Mlp::new(16);
    mlp.nan_at = Some(8); // the 8th step, index 7
    let cfg = TrainerConfig { checkpoint_every: Some(3), keep_last: 5, ..config(3) };
    let mut t = Trainer::new(cfg, mlp).unwrap().with_run_dir(dir.path());
    match t.fit(&loader(2)) {
        Err(e @ Error::NonFiniteLoss { .. }) => {
            let Error::NonFiniteLoss { step, epoch, value, checkpoint } = &e else { unreachable!() };
            assert_eq!((*step, *epoch), (7, 1));
            assert!(value.is_nan());
            // The newest checkpoint before the bad step (saved after step 6), named in the message.
            let newest = checkpoint.clone().expect("a checkpoint was saved");
            assert!(newest.ends_with("checkpoint-00000006"), "{newest:?}");
            assert!(e.to_string().contains(&newest.display().to_string()), "{e}");
        }
        other => panic!("expected a NonFiniteLoss error, got {other:?}"),
    }
    let names: Vec<String> = list_checkpoints(dir.path())
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["checkpoint-00000003", "checkpoint-00000006"]);
    // The kept checkpoint loads.
    let mut again = Trainer::new(TrainerConfig { checkpoint_every: Some(3), keep_last: 5, ..config(3) }, Mlp::new(16))
        .unwrap()
        .with_run_dir(dir.path());
    assert!(again.resume().unwrap());
    assert_eq!(again.state().step, 6);
}

#[test]
fn an_infinite_gradient_with_a_finite_loss_stops_naming_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let mut mlp = Mlp::new(16);
    mlp.nan_grad_at = Some(8);
    let mut t = Trainer::new(config(3), mlp).unwrap().with_run_dir(dir.path());
    let before = weights(t.objective().params());
    let e = t.fit(&loader(2)).unwrap_err();
    let Error::NonFiniteGradient { step, epoch, parameter, loss, checkpoint } = &e else { panic!("{e:?}") };
    assert_eq!((*step, *epoch, parameter.as_str()), (7, 1, "l1.weight"));
    assert!(loss.is_finite());
    // No step was taken with the bad gradient: the weights are those after step 7 (index 6),
    // finite, and the epoch-end checkpoint (step 6) is the one named.
    let after = weights(t.objective().params());
    assert_ne!(before, after);
    assert!(t.objective().params().all().iter().all(|(_, v)| v
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|x| x.is_finite())));
    assert!(checkpoint.as_ref().unwrap().ends_with("checkpoint-00000006"), "{checkpoint:?}");
    let text = e.to_string();
    assert!(text.contains("l1.weight") && text.contains("step 7") && text.contains("checkpoint-00000006"), "{text}");
}

#[test]
fn a_checkpoint_is_saved_at_every_epoch_end_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let mut t =
        Trainer::new(TrainerConfig { keep_last: 5, ..config(3) }, Mlp::new(16)).unwrap().with_run_dir(dir.path());
    t.fit(&loader(2)).unwrap();
    let steps: Vec<String> = list_checkpoints(dir.path())
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(steps, vec!["checkpoint-00000006", "checkpoint-00000012", "checkpoint-00000018"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainerConfig { keep_last: 5, checkpoint_each_epoch: false, ..config(3) };
    Trainer::new(cfg, Mlp::new(16)).unwrap().with_run_dir(dir.path()).fit(&loader(2)).unwrap();
    assert_eq!(list_checkpoints(dir.path()).unwrap().len(), 1, "only the final one");
}

#[test]
fn damaged_checkpoint_files_are_found_by_their_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || TrainerConfig { max_steps: Some(2), ..config(1) };
    let summary = Trainer::new(cfg(), Mlp::new(16)).unwrap().with_run_dir(dir.path()).fit(&loader(1)).unwrap();
    let ckpt = summary.checkpoint.unwrap();
    let sums = std::fs::read_to_string(ckpt.join("SHA256SUMS")).unwrap();
    let listed: Vec<&str> = sums.lines().map(|l| l.split_once("  ").unwrap().1).collect();
    assert!(listed.contains(&"model.safetensors") && listed.contains(&"state.json") && listed.len() == 7, "{sums}");
    let resume = || Trainer::new(cfg(), Mlp::new(16)).unwrap().with_run_dir(dir.path()).resume();
    assert!(resume().unwrap());
    // One flipped bit in the middle of a weight: the file is named, nothing loads.
    let model = ckpt.join("model.safetensors");
    let mut bytes = std::fs::read(&model).unwrap();
    let mid = bytes.len() - 20;
    bytes[mid] ^= 0x04;
    std::fs::write(&model, &bytes).unwrap();
    let e = resume().unwrap_err().to_string();
    assert!(e.contains("model.safetensors") && e.contains("SHA-256") && e.contains("damaged"), "{e}");
    bytes[mid] ^= 0x04;
    std::fs::write(&model, &bytes).unwrap();
    assert!(resume().unwrap());
    // A listed file that is gone.
    std::fs::rename(ckpt.join("extra.json"), dir.path().join("moved.json")).unwrap();
    let e = resume().unwrap_err().to_string();
    assert!(e.contains("extra.json") && e.contains("missing"), "{e}");
    std::fs::rename(dir.path().join("moved.json"), ckpt.join("extra.json")).unwrap();
    // A checksum file that is not one.
    std::fs::write(ckpt.join("SHA256SUMS"), "not a checksum\n").unwrap();
    let e = resume().unwrap_err().to_string();
    assert!(e.contains("SHA256SUMS") && e.contains("line 1"), "{e}");
    // Without SHA256SUMS (a checkpoint from before they were written) a state.json that disagrees
    // with its folder's step is still refused.
    std::fs::remove_file(ckpt.join("SHA256SUMS")).unwrap();
    let state = std::fs::read_to_string(ckpt.join("state.json")).unwrap();
    std::fs::write(ckpt.join("state.json"), state.replace("\"step\": 2", "\"step\": 5")).unwrap();
    let e = resume().unwrap_err().to_string();
    assert!(e.contains("state.json") && e.contains("step 5") && e.contains("step 2"), "{e}");
}

#[test]
fn a_stop_request_saves_and_a_resume_finishes_the_same_run() {
    let straight_dir = tempfile::tempdir().unwrap();
    let mut straight = Trainer::new(config(2), Mlp::new(16)).unwrap().with_run_dir(straight_dir.path());
    straight.fit(&loader(2)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(config(2), Mlp::new(16)).unwrap().with_run_dir(dir.path());
    let handle = t.stop_handle();
    t.objective_mut().stop_at = Some((4, handle));
    let summary = t.fit(&loader(2)).unwrap();
    assert!(summary.interrupted);
    assert_eq!(summary.steps, 4);
    assert!(summary.checkpoint.unwrap().ends_with("checkpoint-00000004"));
    let mut resumed = Trainer::new(config(2), Mlp::new(16)).unwrap().with_run_dir(dir.path());
    assert!(resumed.resume().unwrap());
    let done = resumed.fit(&loader(2)).unwrap();
    assert!(!done.interrupted && done.steps == 12);
    assert_eq!(weights(resumed.objective().params()), weights(straight.objective().params()));
    // keep_last = 2 by default.
    assert_eq!(list_checkpoints(dir.path()).unwrap().len(), 2);
}

#[test]
fn mismatched_checkpoints_and_configs_are_refused_with_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut t =
        Trainer::new(TrainerConfig { max_steps: Some(2), ..config(1) }, Mlp::new(16)).unwrap().with_run_dir(dir.path());
    t.fit(&loader(1)).unwrap();
    // Another batch size: the resumed run would not be the same run.
    let mut other = Trainer::new(config(1), Mlp::new(16)).unwrap().with_run_dir(dir.path());
    assert!(other.resume().unwrap());
    let config16 = LoaderConfig { batch_size: 16, seed: 5, shuffle: true, drop_last: true, threads: 1 };
    let e = other.fit(&Loader::new(clustered(), noise as Aug, collate as Col, config16).unwrap()).unwrap_err();
    let e = e.to_string();
    assert!(e.contains("loader.batch_size") && e.contains("batch size 32") && e.contains("has 16"), "{e}");
    // Another objective config.
    let mut wider = Trainer::new(config(1), Mlp::new(24)).unwrap().with_run_dir(dir.path());
    let e = wider.resume().unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("objective.hidden"), "{e}");
    // Another optimiser.
    let cfg = TrainerConfig { optimizer: OptimizerConfig::sgd(0.9), ..config(1) };
    let e = Trainer::new(cfg, Mlp::new(16)).unwrap().with_run_dir(dir.path()).resume().unwrap_err().to_string();
    assert!(e.contains("trainer.optimizer"), "{e}");
    // Wrong shapes in the weights, with the config made to agree (and the checksums, which would
    // refuse any edited file, removed as in a checkpoint from before they were written).
    let ckpt = list_checkpoints(dir.path()).unwrap().pop().unwrap();
    std::fs::remove_file(ckpt.join("SHA256SUMS")).unwrap();
    let mut cfg_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("config.json")).unwrap()).unwrap();
    cfg_json["objective"]["hidden"] = serde_json::json!(24);
    std::fs::write(ckpt.join("config.json"), cfg_json.to_string()).unwrap();
    let e = Trainer::new(config(1), Mlp::new(24)).unwrap().with_run_dir(dir.path()).resume().unwrap_err().to_string();
    assert!(e.contains("model.safetensors") && e.contains("l1.bias") && e.contains("[16]"), "{e}");
    // A truncated state file.
    std::fs::write(ckpt.join("state.json"), "{\"step\": 2,").unwrap();
    cfg_json["objective"]["hidden"] = serde_json::json!(16);
    std::fs::write(ckpt.join("config.json"), cfg_json.to_string()).unwrap();
    let e = Trainer::new(config(1), Mlp::new(16)).unwrap().with_run_dir(dir.path()).resume().unwrap_err().to_string();
    assert!(e.contains("state.json"), "{e}");
    // A missing file.
    std::fs::remove_file(ckpt.join("optimizer.safetensors")).unwrap();
    let e = Trainer::new(config(1), Mlp::new(16)).unwrap().with_run_dir(dir.path()).resume().unwrap_err().to_string();
    assert!(e.contains("optimizer.safetensors"), "{e}");
    // Invalid configs name the field.
    let e = Trainer::new(TrainerConfig { lr: 0.0, ..config(1) }, Mlp::new(16)).err().unwrap().to_string();
    assert!(e.contains("trainer.lr"), "{e}");
    let e = Trainer::new(TrainerConfig { keep_last: 0, ..config(1) }, Mlp::new(16)).err().unwrap().to_string();
    assert!(e.contains("trainer.keep_last"), "{e}");
}

#[test]
fn evaluations_are_recorded_once_across_a_resume_at_an_epoch_end() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |steps| TrainerConfig { max_steps: Some(steps), checkpoint_every: Some(6), ..config(3) };
    let mut first = Trainer::new(cfg(6), Mlp::new(16)).unwrap().with_run_dir(dir.path());
    first.add_evaluation("knn", 1, |mlp: &mut Mlp, _: &Progress| Ok(knn_accuracy(mlp)));
    first.fit(&loader(2)).unwrap();
    let mut second = Trainer::new(cfg(18), Mlp::new(16)).unwrap().with_run_dir(dir.path());
    second.add_evaluation("knn", 1, |mlp: &mut Mlp, _: &Progress| Ok(knn_accuracy(mlp)));
    assert!(second.resume().unwrap());
    second.fit(&loader(2)).unwrap();
    let history = read_history(&dir.path().join("history.jsonl")).unwrap();
    let epochs: Vec<usize> = history.iter().filter(|r| !r.eval.is_empty()).map(|r| r.epoch).collect();
    assert_eq!(epochs, vec![0, 1, 2]);
    assert_eq!(history.iter().filter(|r| r.loss.is_some()).count(), 18);
}

/// Records every `Progress` the trainer hands to `after_step`.
struct Recorder {
    mlp: Mlp,
    seen: Vec<contrastive_core::train::Progress>,
}

impl Objective for Recorder {
    type Batch = (Tensor, Tensor);

    fn loss(&mut self, batch: &Self::Batch) -> candle_core::Result<Tensor> {
        self.mlp.loss(batch)
    }

    fn params(&self) -> &ParamStore {
        self.mlp.params()
    }

    fn after_step(&mut self, progress: &contrastive_core::train::Progress) -> candle_core::Result<()> {
        self.seen.push(*progress);
        Ok(())
    }
}

#[test]
fn after_step_knows_the_step_the_total_and_the_epoch() {
    // 6 batches per epoch, 3 epochs, but max_steps 14: the run has 14 steps.
    let cfg = TrainerConfig { max_steps: Some(14), ..config(3) };
    let mut t = Trainer::new(cfg, Recorder { mlp: Mlp::new(16), seen: Vec::new() }).unwrap();
    let evaluated = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = std::rc::Rc::clone(&evaluated);
    t.add_evaluation("steps", 1, move |_: &mut Recorder, p: &Progress| {
        log.borrow_mut().push(*p);
        Ok(p.step as f64)
    });
    t.fit(&loader(1)).unwrap();
    // Evaluations at the ends of the two whole epochs, after their last steps (5 and 11).
    let ends: Vec<(usize, usize, usize)> =
        evaluated.borrow().iter().map(|p| (p.step, p.total_steps, p.epoch)).collect();
    assert_eq!(ends, vec![(5, 14, 0), (11, 14, 1)]);
    let seen = &t.objective().seen;
    assert_eq!(seen.len(), 14);
    for (i, p) in seen.iter().enumerate() {
        assert_eq!((p.step, p.total_steps, p.epoch), (i, 14, i / 6));
    }
    assert_eq!(seen[13].fraction(), 1.0);
    assert!((seen[6].fraction() - 0.5).abs() < 1e-12);
}

/// The scalar series `tensorboard` (PyPI) reads from `dir` (tests/golden/read_tensorboard.py), or
/// None when python3 has no tensorboard and CONTRASTIVE_REQUIRE_TENSORBOARD is not 1 (CI sets it
/// and installs tensorboard).
fn tensorboard_scalars(dir: &std::path::Path) -> Option<std::collections::BTreeMap<String, Vec<(i64, f32)>>> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/read_tensorboard.py");
    let out = std::process::Command::new("python3").arg(script).arg(dir).output();
    let required = std::env::var("CONTRASTIVE_REQUIRE_TENSORBOARD").is_ok_and(|v| v == "1");
    match out {
        Ok(o) if o.status.success() => {
            let series: std::collections::BTreeMap<String, Vec<(i64, f64)>> =
                serde_json::from_slice(&o.stdout).unwrap();
            Some(series.into_iter().map(|(k, v)| (k, v.into_iter().map(|(s, x)| (s, x as f32)).collect())).collect())
        }
        Ok(o) if o.status.code() == Some(3) && !required => {
            eprintln!("skipped: python3 has no tensorboard (pip install tensorboard)");
            None
        }
        other => panic!("read_tensorboard.py: {other:?}"),
    }
}

/// Every history record is also a TensorBoard event (train/loss, train/lr, train/samples_per_s,
/// train/step_s, the method's figures as train/<name>, eval/<name>), checksummed records that TensorBoard's own reader loads; a run resumed from an
/// earlier checkpoint than its last step drops the later records in TensorBoard as in
/// history.jsonl, so each series holds every step once with the resumed run's values.
#[test]
fn tensorboard_events_mirror_the_history_across_a_resume() {
    use contrastive_core::train::tensorboard::{masked_crc32c, read_events, What};
    // tensorboard.summary.writer.record_writer.masked_crc32c(b"123456789") == 0xc78ab0e5,
    // (b"") == 0xa282ead8, (b"contrastive") == 0x78180d85 (tensorboard 2.21.0).
    assert_eq!(
        [masked_crc32c(b"123456789"), masked_crc32c(b""), masked_crc32c(b"contrastive")],
        [0xc78a_b0e5, 0xa282_ead8, 0x7818_0d85]
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = |steps| TrainerConfig { max_steps: Some(steps), checkpoint_every: Some(6), ..config(3) };
    let mut first = Trainer::new(cfg(9), Mlp::new(16)).unwrap().with_run_dir(dir.path());
    first.add_evaluation("knn", 1, |mlp: &mut Mlp, _: &Progress| Ok(knn_accuracy(mlp)));
    first.fit(&loader(2)).unwrap();
    drop(first);
    // As if the run had gone on past its checkpoint of step 6 and died at step 9.
    std::fs::remove_dir_all(dir.path().join("checkpoint-00000009")).unwrap();
    let mut second = Trainer::new(cfg(12), Mlp::new(16)).unwrap().with_run_dir(dir.path());
    second.add_evaluation("knn", 1, |mlp: &mut Mlp, _: &Progress| Ok(knn_accuracy(mlp)));
    assert!(second.resume().unwrap());
    assert_eq!(second.state().step, 6);
    second.fit(&loader(2)).unwrap();

    let history = read_history(&dir.path().join("history.jsonl")).unwrap();
    // TensorBoard keeps f32 (and JSON may move an f64 by its last bit): compared as f32.
    let expected = |pick: &dyn Fn(&contrastive_core::train::HistoryRecord) -> Option<f64>| -> Vec<(i64, f32)> {
        history.iter().filter_map(|r| pick(r).map(|v| (r.step as i64, v as f32))).collect()
    };
    let loss = expected(&|r| r.loss);
    assert_eq!(loss.iter().map(|s| s.0).collect::<Vec<_>>(), (1..=12).collect::<Vec<_>>());
    // Our own reader: two files, each record's checksums good, the second starting at step 6.
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains("tfevents"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 2);
    let second_file = read_events(&files[1]).unwrap();
    assert!(matches!(&second_file[0].what, Some(What::FileVersion(v)) if v == "brain.Event:2"));
    assert!(matches!(&second_file[1].what, Some(What::SessionLog(s)) if s.status == 1) && second_file[1].step == 6);
    let mut damaged = std::fs::read(&files[1]).unwrap();
    let last = damaged.len() - 6;
    damaged[last] ^= 1;
    let bad = dir.path().join("bad").join("events.out.tfevents.0.bad");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, &damaged).unwrap();
    assert!(read_events(&bad).unwrap_err().to_string().contains("checksum does not match"));

    let Some(scalars) = tensorboard_scalars(dir.path()) else { return };
    assert_eq!(scalars["train/loss"], loss);
    assert_eq!(scalars["train/lr"], expected(&|r| r.lr));
    assert_eq!(scalars["train/samples_per_s"], expected(&|r| r.samples_per_s));
    assert_eq!(scalars["train/step_s"], expected(&|r| r.step_s));
    assert_eq!(scalars["train/first_weight"], expected(&|r| r.method.get("first_weight").copied()));
    assert_eq!(scalars["train/first_weight"].len(), 12);
    assert_eq!(scalars["eval/knn"], expected(&|r| r.eval.get("knn").copied()));
    assert_eq!(scalars["eval/knn"].iter().map(|s| s.0).collect::<Vec<_>>(), vec![6, 12]);
}
