//! The methods without negatives (BYOL, SimSiam, Barlow Twins, VICReg, DINO) end to end on a small
//! MLP over clustered points: each two-view method learns clusters hidden under nuisance dimensions without collapsing (the collapse monitor's
//! figures in the history), BYOL's and DINO's targets follow by the cosine momentum, DINO's last
//! layer waits out its first epoch and its centre moves, runs resume bit for bit, and heads that do
//! not fit are refused by name.

use candle_core::{Device, Module, Tensor};
use contrastive_core::collapse::Spread;
use contrastive_core::data::{CropSet, Loader, LoaderConfig, MultiCrop, TwoViews, ViewPair};
use contrastive_core::methods::{
    BarlowTwins, BarlowTwinsConfig, Byol, ByolConfig, Dino, DinoConfig, SimSiam, SimSiamConfig, VicReg, VicRegConfig,
};
use contrastive_core::nn::{cosine_momentum, linear, Linear, Momentum, ParamStore};
use contrastive_core::optim::{OptimizerConfig, Schedule};
use contrastive_core::train::{read_history, Objective, Progress, Trainer, TrainerConfig};
use contrastive_core::{Backbone, Result};
use rand::{Rng, RngCore, SeedableRng};

const SIGNAL: usize = 4;
const DIM: usize = 16;
const CLUSTERS: usize = 4;
const WIDTH: usize = 16;

/// 4 clusters of 48 points in 16-D: 4 dimensions of signal (centres in [-1, 1], spread 0.3) and
/// 12 of nuisance (uniform in [-1, 1]) that outweigh them, so that the raw points and an untrained
/// encoder's outputs mix the clusters (1-NN accuracy about 0.5).
fn clustered() -> Vec<(Vec<f32>, usize)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let centres: Vec<Vec<f32>> =
        (0..CLUSTERS).map(|_| (0..SIGNAL).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
    (0..CLUSTERS * 48)
        .map(|i| {
            let c = i % CLUSTERS;
            let signal: Vec<f32> = centres[c].iter().map(|v| v + rng.random_range(-0.3f32..0.3)).collect();
            let nuisance: Vec<f32> = (SIGNAL..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            (signal.into_iter().chain(nuisance).collect(), c)
        })
        .collect()
}

type Point = (Vec<f32>, usize);

/// A view: the signal jittered by up to `jitter`, the nuisance drawn afresh (what the methods
/// must learn to ignore).
fn view(x: Point, jitter: f32, rng: &mut dyn RngCore) -> Point {
    let v = (0..DIM)
        .map(|d| if d < SIGNAL { x.0[d] + rng.random_range(-jitter..jitter) } else { rng.random_range(-1.0f32..1.0) })
        .collect();
    (v, x.1)
}

fn noise(x: Point, rng: &mut dyn RngCore) -> Result<Point> {
    Ok(view(x, 0.2, rng))
}

fn strong_noise(x: Point, rng: &mut dyn RngCore) -> Result<Point> {
    Ok(view(x, 0.4, rng))
}

fn rows(points: &[&Point]) -> Tensor {
    let v: Vec<f32> = points.iter().flat_map(|p| p.0.iter().copied()).collect();
    Tensor::from_vec(v, (points.len(), DIM), &Device::Cpu).unwrap()
}

fn collate_pairs(samples: Vec<ViewPair<Point>>) -> Result<(Tensor, Tensor)> {
    let first: Vec<&Point> = samples.iter().map(|s| &s.first).collect();
    let second: Vec<&Point> = samples.iter().map(|s| &s.second).collect();
    Ok((rows(&first), rows(&second)))
}

fn collate_crops(samples: Vec<CropSet<Point>>) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
    let view = |f: &dyn Fn(&CropSet<Point>) -> &Point| rows(&samples.iter().map(f).collect::<Vec<_>>());
    let global = (0..2).map(|v| view(&|s| &s.global[v])).collect();
    let local = (0..samples[0].local.len()).map(|v| view(&|s| &s.local[v])).collect();
    Ok((global, local))
}

type Aug = fn(Point, &mut dyn RngCore) -> Result<Point>;

fn config() -> LoaderConfig {
    LoaderConfig { batch_size: 32, seed: 5, shuffle: true, drop_last: true, threads: 2 }
}

type PairLoader = Loader<Vec<Point>, TwoViews<Aug>, fn(Vec<ViewPair<Point>>) -> Result<(Tensor, Tensor)>>;

fn pairs() -> PairLoader {
    Loader::new(clustered(), noise as Aug, collate_pairs as _, config()).unwrap()
}

type CropLoader =
    Loader<Vec<Point>, MultiCrop<Aug, Aug>, fn(Vec<CropSet<Point>>) -> Result<(Vec<Tensor>, Vec<Tensor>)>>;

fn crops() -> CropLoader {
    let views = MultiCrop::new(noise as Aug, strong_noise as Aug, 2, 3).unwrap();
    Loader::with_views(clustered(), views, collate_crops as _, config()).unwrap()
}

/// The encoder: Linear-ReLU-Linear, 8 -> 32 -> 16.
struct Mlp(Linear, Linear);

impl Backbone for Mlp {
    type Input = Tensor;
    fn encode(&self, x: &Tensor, _train: bool) -> candle_core::Result<Tensor> {
        self.1.forward(&self.0.forward(x)?.relu()?)
    }
    fn dim(&self) -> usize {
        WIDTH
    }
}

fn mlp(vb: candle_nn::VarBuilder) -> Result<Mlp> {
    Ok(Mlp(linear(DIM, 32, vb.pp("0"))?, linear(32, WIDTH, vb.pp("1"))?))
}

fn trainer_config(epochs: usize) -> TrainerConfig {
    TrainerConfig {
        epochs,
        lr: 3e-3,
        schedule: Schedule::Constant,
        optimizer: OptimizerConfig::adamw(),
        progress: false,
        ..Default::default()
    }
}

fn clean_points() -> (Tensor, Vec<usize>) {
    let data = clustered();
    let refs: Vec<&Point> = data.iter().collect();
    (rows(&refs), data.iter().map(|p| p.1).collect())
}

/// Leave-one-out 1-NN accuracy (cosine) of the encoder's outputs for the clean points.
fn knn_accuracy(encoder: &Mlp) -> f64 {
    let (x, labels) = clean_points();
    let z = contrastive_core::similarity::l2_normalize(&encoder.encode(&x, false).unwrap()).unwrap();
    let sim = z.matmul(&z.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
    let n = labels.len();
    let correct = (0..n)
        .filter(|&i| {
            let nn = (0..n).filter(|&j| j != i).max_by(|&a, &b| sim[i][a].total_cmp(&sim[i][b])).unwrap();
            labels[nn] == labels[i]
        })
        .count();
    correct as f64 / n as f64
}

/// Trains `objective` for `epochs`, the collapse monitor on the clean points every epoch; returns
/// the trainer's objective, the step losses and the monitor's (std, rank) of the last epoch.
fn train<O: Objective + 'static>(
    objective: O,
    epochs: usize,
    encoder: fn(&O) -> &Mlp,
    source: &impl contrastive_core::data::BatchSource<Batch = O::Batch>,
) -> (O, Vec<f64>, (f64, f64)) {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::new(trainer_config(epochs), objective).unwrap().with_run_dir(dir.path());
    trainer.add_collapse_monitor(1, move |o: &mut O, _: &Progress| Ok(encoder(o).encode(&clean_points().0, false)?));
    trainer.fit(source).unwrap();
    let history = read_history(&dir.path().join("history.jsonl")).unwrap();
    let losses: Vec<f64> = history.iter().filter_map(|r| r.loss).collect();
    let monitors: Vec<_> = history.iter().filter(|r| !r.eval.is_empty()).collect();
    assert_eq!(monitors.len(), epochs, "one monitor line per epoch");
    let last = monitors.last().unwrap();
    (trainer.into_objective(), losses, (last.eval["embedding_std"], last.eval["effective_rank"]))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Checks what every two-view method must do on the clusters.
fn check_learns(name: &str, losses: &[f64], spread: (f64, f64), encoder: &Mlp) {
    let (first, last) = (mean(&losses[..6]), mean(&losses[losses.len() - 6..]));
    assert!(last < first, "{name}: the loss did not fall: {first} -> {last}");
    let (x, _) = clean_points();
    let measured = Spread::of(&encoder.encode(&x, false).unwrap()).unwrap();
    assert!((measured.scaled_std - spread.0).abs() < 1e-9, "{name}: the history holds the monitor's std");
    assert!(measured.collapse().is_none(), "{name}: collapsed: {measured:?}");
    assert!(spread.1 > 2.0, "{name}: effective rank {}", spread.1);
    // Untrained: 0.34 (measured 2026-12-06); trained 0.68 (SimSiam) to 0.95 (VICReg).
    let acc = knn_accuracy(encoder);
    assert!(acc >= 0.6, "{name}: kNN accuracy {acc}");
}

#[test]
fn byol_simsiam_barlow_twins_and_vicreg_learn_the_clusters_without_collapsing() {
    let dev = Device::Cpu;
    let epochs = 30;
    let (o, l, s) = train(
        Byol::new(mlp, ByolConfig::with_widths(WIDTH, 32, 16), 1, &dev).unwrap(),
        epochs,
        Byol::encoder,
        &pairs(),
    );
    check_learns("BYOL", &l, s, o.encoder());
    let (o, l, s) = train(
        SimSiam::new(mlp, SimSiamConfig::with_widths(WIDTH, 32, 16, 8), 1, &dev).unwrap(),
        epochs,
        SimSiam::encoder,
        &pairs(),
    );
    check_learns("SimSiam", &l, s, o.encoder());
    let (o, l, s) = train(
        BarlowTwins::new(mlp, BarlowTwinsConfig::with_widths(WIDTH, 64, 64), 1, &dev).unwrap(),
        epochs,
        BarlowTwins::encoder,
        &pairs(),
    );
    check_learns("Barlow Twins", &l, s, o.encoder());
    let (o, l, s) = train(
        VicReg::new(mlp, VicRegConfig::with_widths(WIDTH, 64, 64), 1, &dev).unwrap(),
        epochs,
        VicReg::encoder,
        &pairs(),
    );
    check_learns("VICReg", &l, s, o.encoder());
}

fn values(store: &ParamStore) -> Vec<(String, Vec<f32>)> {
    let mut all: Vec<_> =
        store.all().into_iter().map(|(n, v)| (n, v.flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

#[test]
fn byol_target_follows_the_online_network_by_the_cosine_momentum() {
    let dev = Device::Cpu;
    let byol: Byol<Mlp, (Tensor, Tensor)> = Byol::new(mlp, ByolConfig::with_widths(WIDTH, 32, 16), 1, &dev).unwrap();
    let before = values(byol.params());
    assert_eq!(
        values(byol.target_params()),
        before.iter().filter(|(n, _)| !n.starts_with("predictor.")).cloned().collect::<Vec<_>>(),
        "the target starts as a copy, without the predictor"
    );
    let total = 12;
    let mut trainer = Trainer::new(TrainerConfig { max_steps: Some(1), ..trainer_config(2) }, byol).unwrap();
    trainer.fit(&pairs()).unwrap();
    // One step of 12: target = m target + (1 - m) online, m the cosine schedule at step 0.
    assert_eq!(trainer.state().step, 1);
    let m = cosine_momentum(0.996, 0, total) as f32;
    let online: std::collections::HashMap<_, _> = values(trainer.objective().params()).into_iter().collect();
    let old: std::collections::HashMap<_, _> = before.into_iter().collect();
    let mut compared = 0;
    for (name, t) in values(trainer.objective().target_params()) {
        if name.contains("running") {
            continue; // BatchNorm statistics: each network keeps its own
        }
        for ((t, o), a) in t.iter().zip(&online[&name]).zip(&old[&name]) {
            let expected = m * a + (1.0 - m) * o;
            assert!((t - expected).abs() < 1e-6, "{name}: {t} against {expected}");
        }
        assert_ne!(online[&name], old[&name], "{name} trained");
        compared += 1;
    }
    assert!(compared >= 8, "{compared} variables compared");
}

#[test]
fn dino_freezes_its_last_layer_for_an_epoch_moves_its_centre_and_learns() {
    let dev = Device::Cpu;
    let config = DinoConfig { momentum: Momentum::Cosine { base: 0.9 }, ..DinoConfig::with_widths(WIDTH, 64, 16, 256) };
    let dino: Dino<Mlp, (Vec<Tensor>, Vec<Tensor>)> = Dino::new(mlp, config, 1, &dev).unwrap();
    let last = |d: &Dino<Mlp, (Vec<Tensor>, Vec<Tensor>)>| {
        d.params().get("head.last.weight").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let start = last(&dino);
    let centre =
        |d: &Dino<Mlp, (Vec<Tensor>, Vec<Tensor>)>| d.center().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(centre(&dino).iter().all(|&c| c == 0.0));
    let mut trainer = Trainer::new(trainer_config(1), dino).unwrap();
    trainer.fit(&crops()).unwrap();
    assert_eq!(last(trainer.objective()), start, "the last layer waits out epoch 1");
    assert!(centre(trainer.objective()).iter().any(|&c| c != 0.0), "the centre moved");
    let encoder_moved =
        values(trainer.objective().params()).into_iter().find(|(n, _)| n == "encoder.0.weight").unwrap();
    let dino = trainer.into_objective();
    // Its learning is checked on images (the dino example); here that the second epoch trains
    // the last layer and the encoder, and the monitor reports.
    let (dino, losses, (std, rank)) = train(dino, 2, Dino::encoder, &crops());
    assert_ne!(last(&dino), start, "the last layer trains after epoch 1");
    assert_ne!(values(dino.params()).into_iter().find(|(n, _)| n == "encoder.0.weight").unwrap(), encoder_moved);
    assert!(losses.iter().all(|l| l.is_finite()) && std > 0.0 && rank >= 1.0);
    // Views run through one head stacked, so a view of another batch size is named, not paired
    // with the wrong rows.
    let mut dino = dino;
    let view = |rows: usize| Tensor::ones((rows, DIM), candle_core::DType::F32, &dev).unwrap();
    let e = dino.loss(&(vec![view(6), view(6)], vec![view(5)])).unwrap_err().to_string();
    assert!(e.contains("view 2 has 5 rows and view 0 6"), "{e}");
}

fn weights(o: &impl Objective) -> Vec<u32> {
    values(o.params()).into_iter().flat_map(|(_, v)| v.into_iter().map(f32::to_bits)).collect()
}

fn extra(o: &impl Objective) -> Vec<(String, Vec<u32>)> {
    let mut t: Vec<_> = o
        .extra_state()
        .unwrap()
        .tensors
        .into_iter()
        .map(|(n, v)| (n, v.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(f32::to_bits).collect()))
        .collect();
    t.sort();
    t
}

/// Two epochs (12 steps) straight against a run stopped after step 7 (a stop requested at the
/// end of epoch 1) and resumed: the same run total, so the same momentum schedule.
fn resumes_exactly<O: Objective + 'static>(
    make: impl Fn() -> O,
    source: &impl contrastive_core::data::BatchSource<Batch = O::Batch>,
) {
    let mut straight = Trainer::new(trainer_config(2), make()).unwrap();
    straight.fit(source).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut first = Trainer::new(trainer_config(2), make()).unwrap().with_run_dir(dir.path());
    let stop = first.stop_handle();
    first.add_evaluation("stop", 1, move |_: &mut O, _: &Progress| {
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(0.0)
    });
    let summary = first.fit(source).unwrap();
    assert!(summary.interrupted && summary.steps == 7, "{summary:?}");
    drop(first);
    let mut resumed = Trainer::new(trainer_config(2), make()).unwrap().with_run_dir(dir.path());
    assert!(resumed.resume().unwrap());
    assert_eq!(resumed.fit(source).unwrap().steps, 12);
    assert_eq!(weights(resumed.objective()), weights(straight.objective()));
    assert_eq!(extra(resumed.objective()), extra(straight.objective()));
    assert!(!extra(straight.objective()).is_empty());
}

#[test]
fn byol_and_dino_resume_bit_for_bit_with_their_targets_and_centre() {
    let dev = Device::Cpu;
    resumes_exactly(|| Byol::new(mlp, ByolConfig::with_widths(WIDTH, 32, 16), 1, &dev).unwrap(), &pairs());
    resumes_exactly(|| Dino::new(mlp, DinoConfig::with_widths(WIDTH, 32, 8, 64), 1, &dev).unwrap(), &crops());
}

#[test]
fn heads_that_do_not_fit_are_refused_by_name() {
    let dev = Device::Cpu;
    let err = |r: Result<()>| r.unwrap_err().to_string();
    let mut byol = ByolConfig::with_widths(WIDTH, 32, 16);
    byol.predictor.input_dim = 12;
    let e = err(Byol::<Mlp, (Tensor, Tensor)>::new(mlp, byol, 1, &dev).map(|_| ()));
    assert!(e.contains("byol.predictor.input_dim") && e.contains("12"), "{e}");
    let e =
        err(SimSiam::<Mlp, (Tensor, Tensor)>::new(mlp, SimSiamConfig::with_widths(20, 32, 16, 8), 1, &dev).map(|_| ()));
    assert!(e.contains("simsiam.projector.input_dim") && e.contains("16 wide"), "{e}");
    let mut bt = BarlowTwinsConfig::with_widths(WIDTH, 32, 32);
    bt.lambda = f64::NAN;
    let e = err(BarlowTwins::<Mlp, (Tensor, Tensor)>::new(mlp, bt, 1, &dev).map(|_| ()));
    assert!(e.contains("barlow_twins.lambda"), "{e}");
    let mut vic = VicRegConfig::with_widths(WIDTH, 32, 32);
    vic.weights.variance = -1.0;
    let e = err(VicReg::<Mlp, (Tensor, Tensor)>::new(mlp, vic, 1, &dev).map(|_| ()));
    assert!(e.contains("vicreg.weights.variance"), "{e}");
    let mut dino = DinoConfig::with_widths(WIDTH, 32, 8, 64);
    dino.loss.output_dim = 65;
    let e = err(Dino::<Mlp, (Vec<Tensor>, Vec<Tensor>)>::new(mlp, dino, 1, &dev).map(|_| ()));
    assert!(e.contains("dino.loss.output_dim") && e.contains("64"), "{e}");
}

/// The monitor on embeddings that have collapsed to a point and on spread ones.
#[test]
fn the_collapse_monitor_records_the_spread_of_what_it_is_given() {
    let dev = Device::Cpu;
    for collapsed in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let model: VicReg<Mlp, (Tensor, Tensor)> =
            VicReg::new(mlp, VicRegConfig::with_widths(WIDTH, 32, 32), 1, &dev).unwrap();
        let mut trainer = Trainer::new(TrainerConfig { max_steps: Some(6), ..trainer_config(1) }, model)
            .unwrap()
            .with_run_dir(dir.path());
        trainer.add_collapse_monitor(1, move |_: &mut VicReg<Mlp, (Tensor, Tensor)>, _: &Progress| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
            let v: Vec<f32> = (0..64 * 24)
                .map(|i| if collapsed { (i % 24) as f32 } else { rng.random_range(-1.0f32..1.0) })
                .collect();
            Ok(Tensor::from_vec(v, (64, 24), &Device::Cpu)?)
        });
        trainer.fit(&pairs()).unwrap();
        let history = read_history(&dir.path().join("history.jsonl")).unwrap();
        let eval = &history.iter().find(|r| !r.eval.is_empty()).unwrap().eval;
        let (std, rank) = (eval["embedding_std"], eval["effective_rank"]);
        if collapsed {
            assert!(std < 1e-6 && (rank - 1.0).abs() < 1e-6, "{std} {rank}");
        } else {
            assert!(std > 0.5 && rank > 15.0, "{std} {rank}");
        }
    }
}
