//! SimCLR and MoCo: parity with the PyTorch reference recipe's forward pass, torchvision ResNet
//! weights, MoCo's key network and queue, tiny overfit runs, determinism and resume.

use candle_core::{DType, Device, ModuleT, Tensor};
use contrastive_core::augment::Compose;
use contrastive_core::data::{Dataset, Loader, LoaderConfig, TwoViews};
use contrastive_core::loss::nt_xent;
use contrastive_core::nn::{InitScheme, ParamStore, ProjectionHeadConfig};
use contrastive_core::optim::{OptimizerConfig, Schedule};
use contrastive_core::train::{read_history, Objective, Progress, Trainer, TrainerConfig};
use contrastive_vision::augment::{HorizontalFlip, Normalize, ViewAugmentation};
use contrastive_vision::*;
use std::collections::HashMap;
use std::path::Path;

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// `bench/pytorch/simclr_fmnist_torch.py --dump-parity`: PyTorch's seeded init of the reference
/// ConvNet and head, 8 Fashion-MNIST images, two augmented views, and the model's outputs on them.
#[test]
fn simclr_forward_and_loss_match_the_pytorch_reference() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/simclr_fmnist_parity.safetensors");
    let fx = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let model = SimClr::new(SimClrConfig::default(), 0, &Device::Cpu).unwrap();
    // PyTorch's names to ours: the encoder's match; head.0 Linear, head.1 BatchNorm, head.3 Linear.
    let mut weights = HashMap::new();
    for (name, t) in &fx {
        let Some(n) = name.strip_prefix("init.") else { continue };
        if n.ends_with("num_batches_tracked") {
            continue;
        }
        let ours = n.replacen("head.0.", "head.0.linear.", 1).replacen("head.1.", "head.0.bn.", 1).replacen(
            "head.3.",
            "head.1.linear.",
            1,
        );
        weights.insert(ours, t.clone());
    }
    model.params().set_all(&weights, &path).unwrap();
    // The dump was taken after PyTorch's two training passes, so its running statistics are
    // those passes' updates of the initial 0 and 1: start from 0 and 1 and let ours make them.
    let saved: HashMap<String, Tensor> = model.params().tensors();
    for (name, v) in model.params().all() {
        if name.ends_with("running_mean") {
            v.set(&v.zeros_like().unwrap()).unwrap();
        } else if name.ends_with("running_var") {
            v.set(&v.ones_like().unwrap()).unwrap();
        }
    }
    let (h1, z1) = model.forward_t(&fx["v1"], true).unwrap();
    let (h2, z2) = model.forward_t(&fx["v2"], true).unwrap();
    for (name, ours) in [("h1_train", &h1), ("z1_train", &z1), ("h2_train", &h2), ("z2_train", &z2)] {
        let d = max_abs_diff(ours, &fx[name]);
        assert!(d < 1e-4, "{name} differs by {d}");
    }
    let loss = nt_xent(&z1, &z2, 0.5).unwrap().to_scalar::<f32>().unwrap();
    let want = fx["loss"].to_vec1::<f32>().unwrap()[0];
    assert!((loss - want).abs() < 1e-5, "loss {loss} vs PyTorch {want}");
    for (name, v) in model.params().all() {
        if name.contains("running_") {
            let d = max_abs_diff(v.as_tensor(), &saved[&name]);
            assert!(d < 1e-4, "running statistic {name} differs by {d}");
        }
    }
    // Eval mode uses the running statistics the two training passes left.
    let ms = fx["mean_std"].to_vec1::<f32>().unwrap();
    let x = fx["x"].affine(1.0 / ms[1] as f64, -(ms[0] / ms[1]) as f64).unwrap();
    let d = max_abs_diff(&model.encoder().forward_t(&x, false).unwrap(), &fx["h_eval"]);
    assert!(d < 1e-4, "h_eval differs by {d}");
}

#[derive(serde::Deserialize)]
struct ResNetGolden {
    names: Vec<String>,
    imagenet_64: Vec<f32>,
    cifar_32: Vec<f32>,
}

/// tests/golden/resnet.py fills torchvision's resnet18 state dict by a formula, runs it in eval
/// mode, and records the pooled features; here the same formula is written under torchvision's
/// names to a safetensors file, with a classifier and `num_batches_tracked` that must be ignored.
#[test]
fn torchvision_resnet18_weights_load_and_match_its_output() {
    let golden: ResNetGolden = serde_json::from_str(include_str!("golden/resnet.json")).unwrap();
    for (stem, side, want) in [(Stem::ImageNet, 64, &golden.imagenet_64), (Stem::Cifar, 32, &golden.cifar_32)] {
        let store = ParamStore::new(5, InitScheme::PyTorch);
        let net = ResNet::new(&ResNetConfig::resnet18(stem), store.var_builder(DType::F32, &Device::Cpu).pp("encoder"))
            .unwrap();
        let mut file = HashMap::new();
        for (j, name) in golden.names.iter().enumerate() {
            let var = store.get(&format!("encoder.{name}")).unwrap_or_else(|| panic!("no variable {name}"));
            let (a, b) = if name.ends_with("running_mean") {
                (0.0, 0.1)
            } else if name.ends_with("running_var") {
                (1.0, 0.3)
            } else if var.rank() == 4 {
                (0.0, (3.0 / (var.elem_count() / var.dims()[0]) as f64).sqrt())
            } else if name.ends_with("weight") {
                (1.0, 0.2)
            } else {
                (0.0, 0.1)
            };
            let v: Vec<f32> =
                (0..var.elem_count()).map(|i| (a + b * (0.37 * i as f64 + 1.3 * j as f64).sin()) as f32).collect();
            file.insert(name.clone(), Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap());
        }
        file.insert("fc.weight".into(), Tensor::zeros((1000, 512), DType::F32, &Device::Cpu).unwrap());
        file.insert("bn1.num_batches_tracked".into(), Tensor::new(&[3i64], &Device::Cpu).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resnet18.safetensors");
        candle_core::safetensors::save(&file, &path).unwrap();
        let report = load_encoder_weights(&store, &path, "encoder.").unwrap();
        assert_eq!(report.loaded, golden.names.len());
        assert_eq!(report.ignored, ["bn1.num_batches_tracked", "fc.weight"]);
        let n = 2 * 3 * side * side;
        let x: Vec<f32> = (0..n).map(|i| (0.1 * i as f64).sin() as f32).collect();
        let x = Tensor::from_vec(x, (2, 3, side, side), &Device::Cpu).unwrap();
        let y = net.forward_t(&x, false).unwrap();
        let want = Tensor::from_vec(want.clone(), (2, 512), &Device::Cpu).unwrap();
        let d = max_abs_diff(&y, &want);
        assert!(d < 1e-4, "{stem:?}: pooled features differ from torchvision by {d}");
    }
}

#[test]
fn weight_errors_name_the_tensor_and_shapes() {
    let store = ParamStore::new(5, InitScheme::PyTorch);
    let _net =
        ConvNet::new(&ConvNetConfig::default(), store.var_builder(DType::F32, &Device::Cpu).pp("encoder")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let mut file = store.tensors();
    file.insert("encoder.net.0.weight".into(), Tensor::zeros((32, 3, 3, 3), DType::F32, &Device::Cpu).unwrap());
    candle_core::safetensors::save(&file, &path).unwrap();
    let err = load_encoder_weights(&store, &path, "encoder.").unwrap_err().to_string();
    assert!(err.contains("net.0.weight") && err.contains("[32, 3, 3, 3]") && err.contains("[32, 1, 3, 3]"), "{err}");
    assert!(err.contains("w.safetensors"), "{err}");
    file.remove("encoder.net.0.weight");
    candle_core::safetensors::save(&file, &path).unwrap();
    let err = load_encoder_weights(&store, &path, "encoder.").unwrap_err().to_string();
    assert!(err.contains("net.0.weight") && err.contains("missing"), "{err}");
}

fn tiny_convnet() -> EncoderConfig {
    EncoderConfig::ConvNet(ConvNetConfig { in_channels: 1, widths: vec![8, 16], strides: vec![1, 2] })
}

fn tiny_head(output_dim: usize) -> ProjectionHeadConfig {
    ProjectionHeadConfig {
        input_dim: 16,
        hidden_dim: 32,
        output_dim,
        layers: 2,
        batch_norm: true,
        output_batch_norm: false,
    }
}

fn digits(n: usize) -> InMemoryImages {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv.gz");
    let all = load_pixel_csv(&path, 8, 8, 16.0).unwrap();
    all.select(&(0..n).collect::<Vec<_>>()).unwrap()
}

/// The reference recipe's augmentation, or (`overfit`) flips only, so that a tiny network can
/// drive the loss down within a few dozen steps.
fn loader(
    data: InMemoryImages,
    batch: usize,
    seed: u64,
    overfit: bool,
) -> Loader<InMemoryImages, TwoViews<ViewAugmentation>, CollateViews> {
    let normalize = Normalize { mean: vec![0.3], std: vec![0.35] };
    let aug = if overfit {
        ViewAugmentation(Compose(vec![Box::new(HorizontalFlip { p: 0.5 }), Box::new(normalize)]))
    } else {
        ViewAugmentation::small_images((8, 8), normalize)
    };
    let config = LoaderConfig { batch_size: batch, seed, shuffle: true, drop_last: true, threads: 2 };
    Loader::new(data, aug, CollateViews { device: Device::Cpu }, config).unwrap()
}

fn trainer_config(epochs: usize) -> TrainerConfig {
    TrainerConfig {
        epochs,
        lr: 1e-2,
        schedule: Schedule::Constant,
        optimizer: OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-6 },
        checkpoint_every: None,
        progress: false,
        ..TrainerConfig::default()
    }
}

fn losses(dir: &Path) -> Vec<f64> {
    read_history(&dir.join("history.jsonl")).unwrap().iter().filter_map(|r| r.loss).collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn simclr_overfits_a_few_digits_and_repeats_by_seed() {
    let run = |dir: &Path| {
        let config = SimClrConfig { encoder: tiny_convnet(), head: tiny_head(16), temperature: 0.2 };
        let model = SimClr::new(config, 3, &Device::Cpu).unwrap();
        let mut trainer = Trainer::new(trainer_config(25), model).unwrap().with_run_dir(dir);
        trainer.fit(&loader(digits(64), 32, 3, true)).unwrap();
        losses(dir)
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (la, lb) = (run(a.path()), run(b.path()));
    assert_eq!(la.len(), 50);
    // Same seed, same machine: the same losses, bit for bit.
    assert_eq!(la, lb);
    let (first, last) = (mean(&la[..4]), mean(&la[la.len() - 4..]));
    assert!(last < first - 1.0, "loss did not fall: {first:.3} -> {last:.3}");
}

/// An encoder that is not this crate's: an MLP on the flattened 8x8 digits, as a user writes one.
struct FlatMlp {
    hidden: candle_nn::Linear,
    out: candle_nn::Linear,
}

impl FlatMlp {
    fn new(vb: candle_nn::VarBuilder) -> contrastive_core::Result<Self> {
        Ok(Self { hidden: candle_nn::linear(64, 48, vb.pp("hidden"))?, out: candle_nn::linear(48, 16, vb.pp("out"))? })
    }
}

impl contrastive_core::Backbone for FlatMlp {
    type Input = Tensor;
    fn encode(&self, x: &Tensor, _train: bool) -> candle_core::Result<Tensor> {
        use candle_core::Module;
        self.out.forward(&self.hidden.forward(&x.flatten_from(1)?)?.relu()?)
    }
    fn dim(&self) -> usize {
        16
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "flat_mlp": [64, 48, 16] })
    }
}

#[test]
fn simclr_trains_an_encoder_defined_here_and_resumes_it() {
    let build = || SimClr::with_backbone(FlatMlp::new, tiny_head(16), 0.2, 3, &Device::Cpu).unwrap();
    let (straight, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut trainer = Trainer::new(trainer_config(20), build()).unwrap().with_run_dir(straight.path());
    trainer.fit(&loader(digits(64), 32, 3, true)).unwrap();
    let l = losses(straight.path());
    assert_eq!(l.len(), 40);
    let (first, last) = (mean(&l[..4]), mean(&l[l.len() - 4..]));
    assert!(last < first - 1.0, "loss did not fall: {first:.3} -> {last:.3}");
    // The encoder's variables are the method's: `encoder.hidden.weight` and the rest.
    let names: Vec<String> = trainer.objective().params().all().into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&"encoder.hidden.weight".to_string()) && names.contains(&"head.0.linear.weight".to_string())
    );
    // Checkpoints carry it: 9 steps, then a resume to 40, equal to the straight run.
    let mut first = Trainer::new(TrainerConfig { max_steps: Some(9), ..trainer_config(20) }, build())
        .unwrap()
        .with_run_dir(dir.path());
    first.fit(&loader(digits(64), 32, 3, true)).unwrap();
    let mut second = Trainer::new(trainer_config(20), build()).unwrap().with_run_dir(dir.path());
    assert!(second.resume().unwrap());
    second.fit(&loader(digits(64), 32, 3, true)).unwrap();
    assert_eq!(losses(dir.path()), l);
    // The description is compared on resume: another encoder is refused by name.
    let saved = std::fs::read_to_string(list_last(dir.path()).join("config.json")).unwrap();
    assert!(saved.contains("flat_mlp"), "{saved}");
    let mut other = Trainer::new(
        trainer_config(20),
        SimClr::new(SimClrConfig { encoder: tiny_convnet(), head: tiny_head(16), temperature: 0.2 }, 3, &Device::Cpu)
            .unwrap(),
    )
    .unwrap()
    .with_run_dir(dir.path());
    let e = other.resume().unwrap_err().to_string();
    assert!(e.contains("objective.simclr.encoder"), "{e}");
}

#[test]
fn moco_trains_an_encoder_defined_here() {
    let settings =
        MoCoSettings { head: tiny_head(8), queue_size: 64, momentum: 0.9, bn_groups: 2, ..MoCoSettings::default() };
    let moco = MoCo::with_backbone(FlatMlp::new, settings, 5, &Device::Cpu).unwrap();
    for (name, q) in moco.params().all() {
        assert_eq!(max_abs_diff(q.as_tensor(), moco.key_params().get(&name).unwrap().as_tensor()), 0.0, "{name}");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::new(trainer_config(15), moco).unwrap().with_run_dir(dir.path());
    trainer.fit(&loader(digits(64), 32, 5, true)).unwrap();
    let l = losses(dir.path());
    assert_eq!(l.len(), 30);
    let (first, last) = (mean(&l[..4]), mean(&l[l.len() - 4..]));
    assert!(last < first - 0.5, "loss did not fall: {first:.3} -> {last:.3}");
    let moco = trainer.into_objective();
    assert_eq!(moco.queue().keys().unwrap().dims(), &[64, 8]);
    let saved = std::fs::read_to_string(list_last(dir.path()).join("config.json")).unwrap();
    assert!(saved.contains("flat_mlp") && saved.contains("queue_size"), "{saved}");
}

fn list_last(dir: &Path) -> std::path::PathBuf {
    contrastive_core::train::list_checkpoints(dir).unwrap().pop().unwrap()
}

#[test]
fn moco_key_network_queue_and_momentum() {
    let config = MoCoConfig {
        encoder: tiny_convnet(),
        moco: MoCoSettings {
            head: tiny_head(8),
            queue_size: 40,
            temperature: 0.2,
            momentum: 0.9,
            symmetric: false,
            bn_groups: 2,
            shuffle_bn: true,
        },
    };
    let mut moco = MoCo::new(config, 1, &Device::Cpu).unwrap();
    // The key network starts as a copy of the query network.
    for (name, q) in moco.params().all() {
        assert_eq!(max_abs_diff(q.as_tensor(), moco.key_params().get(&name).unwrap().as_tensor()), 0.0, "{name}");
    }
    let data = loader(digits(96), 16, 1, false);
    let mut opt =
        contrastive_core::optim::Optimizer::new(OptimizerConfig::sgd(0.0), moco.params().trainable()).unwrap();
    let mut seen_keys: Vec<Tensor> = Vec::new();
    for (step, batch) in data.epoch(0).take(4).enumerate() {
        let batch = batch.unwrap();
        let loss = moco.loss(&batch).unwrap();
        let grads = loss.backward().unwrap();
        // No gradient reaches the key network.
        for (name, k) in moco.key_params().all() {
            assert!(grads.get(k.as_tensor()).is_none(), "key variable {name} received a gradient");
        }
        opt.step(&grads, 0.5).unwrap();
        let before: HashMap<String, Tensor> =
            moco.key_params().trainable().into_iter().map(|(n, v)| (n, v.as_tensor().copy().unwrap())).collect();
        moco.after_step(&Progress { step, total_steps: 4, epoch: 0 }).unwrap();
        // k ← m·k + (1 - m)·q with m = 0.9.
        for (name, q) in moco.params().trainable() {
            let want = ((&before[&name] * 0.9).unwrap() + (q.as_tensor() * 0.1).unwrap()).unwrap();
            let got = moco.key_params().get(&name).unwrap();
            assert!(max_abs_diff(got.as_tensor(), &want) < 1e-6, "{name}");
        }
        // The keys of the step are the key network's (pre-update) projections of the second view,
        // normalised; recompute them from `before` to compare with the queue's newest rows.
        seen_keys.push(moco.queue().keys().unwrap().narrow(0, moco.queue().len() - 16, 16).unwrap());
    }
    // Capacity 40, four batches of 16: the queue holds the last 40 keys, oldest first.
    assert_eq!(moco.queue().len(), 40);
    let all = Tensor::cat(&seen_keys, 0).unwrap();
    let want = all.narrow(0, 64 - 40, 40).unwrap();
    assert_eq!(max_abs_diff(moco.queue().keys().unwrap(), &want), 0.0);
    let norms = moco.queue().keys().unwrap().sqr().unwrap().sum(1).unwrap().to_vec1::<f32>().unwrap();
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "queued keys are unit vectors");
}

#[test]
fn moco_keys_come_from_the_key_network_on_the_other_view() {
    // With bn_groups = 1 (no shuffle) and momentum 1 (frozen keys), the queue's keys after one
    // step equal the key network's own normalised projection of the second views.
    let config = MoCoConfig {
        encoder: tiny_convnet(),
        moco: MoCoSettings {
            head: tiny_head(8),
            queue_size: 100,
            temperature: 0.2,
            momentum: 1.0,
            symmetric: false,
            bn_groups: 1,
            shuffle_bn: true,
        },
    };
    let mut moco = MoCo::new(config, 2, &Device::Cpu).unwrap();
    let batch = loader(digits(32), 16, 2, false).epoch(0).next().unwrap().unwrap();
    // A twin network with the same seed computes the expected keys independently.
    let twin =
        SimClr::new(SimClrConfig { encoder: tiny_convnet(), head: tiny_head(8), temperature: 0.2 }, 2, &Device::Cpu)
            .unwrap();
    let (_, z) = twin.forward_t(&batch.second, true).unwrap();
    let want = contrastive_core::similarity::l2_normalize(&z).unwrap();
    moco.loss(&batch).unwrap();
    moco.after_step(&Progress { step: 0, total_steps: 1, epoch: 0 }).unwrap();
    assert!(max_abs_diff(moco.queue().keys().unwrap(), &want) < 1e-5);
}

#[test]
fn moco_overfits_and_resume_equals_an_uninterrupted_run() {
    let config = MoCoConfig {
        encoder: tiny_convnet(),
        moco: MoCoSettings {
            head: tiny_head(16),
            queue_size: 64,
            temperature: 0.2,
            momentum: 0.9,
            symmetric: true,
            bn_groups: 2,
            shuffle_bn: true,
        },
    };
    let run = |dir: &Path, epochs: usize, resume: bool| {
        let model = MoCo::new(config.clone(), 4, &Device::Cpu).unwrap();
        let mut trainer = Trainer::new(trainer_config(epochs), model).unwrap().with_run_dir(dir);
        if resume {
            assert!(trainer.resume().unwrap());
        }
        trainer.fit(&loader(digits(64), 32, 4, true)).unwrap();
        (losses(dir), trainer.into_objective())
    };
    let (full, split) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (all, whole) = run(full.path(), 25, false);
    run(split.path(), 9, false);
    let (resumed, model) = run(split.path(), 25, true);
    assert_eq!(all, resumed, "resumed losses differ");
    for (name, v) in whole.key_params().all() {
        assert_eq!(max_abs_diff(v.as_tensor(), model.key_params().get(&name).unwrap().as_tensor()), 0.0, "{name}");
    }
    let (first, last) = (mean(&all[..4]), mean(&all[all.len() - 4..]));
    assert!(last < first - 1.0, "MoCo loss did not fall: {first:.3} -> {last:.3}");
    assert_eq!(model.queue().len(), 64);
}

#[test]
fn configs_are_checked() {
    let bad = SimClrConfig { temperature: 0.0, ..SimClrConfig::default() };
    assert!(SimClr::new(bad, 0, &Device::Cpu).err().unwrap().to_string().contains("simclr.temperature"));
    let bad = SimClrConfig { head: tiny_head(8), ..SimClrConfig::default() };
    let err = SimClr::new(bad, 0, &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("head.input_dim") && err.contains("256"), "{err}");
    let bad = MoCoConfig { moco: MoCoSettings { momentum: 1.5, ..MoCoSettings::default() }, ..MoCoConfig::default() };
    assert!(MoCo::new(bad, 0, &Device::Cpu).err().unwrap().to_string().contains("moco.momentum"));
    assert_eq!(digits(4).len(), 4);
}

/// SimCLR through gradient caching: one chunk of the whole batch is the plain step (loss,
/// gradients and BatchNorm's running statistics, moved once); chunks of at most 5 (16 rows: 4 of
/// 4, no row left alone for BatchNorm) train with each chunk's own statistics.
#[test]
fn simclr_with_gradient_caching() {
    use contrastive_core::grad_cache::GradCache;
    let batch = loader(digits(32), 16, 3, false).epoch(0).next().unwrap().unwrap();
    let model = || {
        SimClr::new(SimClrConfig { encoder: tiny_convnet(), head: tiny_head(8), temperature: 0.5 }, 6, &Device::Cpu)
            .unwrap()
    };
    let values = |store: &ParamStore, grads: Option<&candle_core::backprop::GradStore>| -> Vec<(String, Vec<f32>)> {
        store
            .all()
            .into_iter()
            .map(|(n, v)| {
                let t = match grads {
                    Some(g) => g.get(v.as_tensor()).cloned().unwrap_or_else(|| v.as_tensor().zeros_like().unwrap()),
                    None => v.as_tensor().clone(),
                };
                (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            })
            .collect()
    };
    let mut plain = model();
    let loss = plain.loss(&batch).unwrap();
    let plain_grads = loss.backward().unwrap();
    let mut cached = GradCache::new(model(), 16).unwrap();
    let cached_loss = cached.loss(&batch).unwrap();
    let cached_grads = cached_loss.backward().unwrap();
    assert!((loss.to_scalar::<f32>().unwrap() - cached_loss.to_scalar::<f32>().unwrap()).abs() < 1e-6);
    let pairs = [
        (values(plain.params(), Some(&plain_grads)), values(cached.params(), Some(&cached_grads))),
        (values(plain.params(), None), values(cached.params(), None)),
    ];
    for (a, b) in &pairs {
        for ((name, x), (_, y)) in a.iter().zip(b) {
            for (u, v) in x.iter().zip(y) {
                assert!((u - v).abs() < 1e-5, "{name}: {u} plain, {v} cached");
            }
        }
    }
    let mut chunks = GradCache::new(model(), 5).unwrap();
    let l = chunks.loss(&batch).unwrap();
    assert!(l.to_scalar::<f32>().unwrap().is_finite());
    let g = l.backward().unwrap();
    assert!(chunks.params().trainable().iter().all(|(_, v)| g.get(v.as_tensor()).is_some()));
}

/// SimCLR through gradient caching with frozen BatchNorm (`ChunkBatchNorm::Running`): chunks of
/// at most 5 of 16 rows give the plain step's loss and gradients with frozen BatchNorm (every
/// row normalised by the running statistics, which neither step moves), where each chunk's own
/// statistics (the default) give another loss.
#[test]
fn simclr_with_gradient_caching_and_frozen_batch_norm_is_the_full_batch_step() {
    use contrastive_core::grad_cache::{ChunkBatchNorm, GradCache};
    use contrastive_core::nn::with_running_statistics;
    let batch = loader(digits(32), 16, 3, false).epoch(0).next().unwrap().unwrap();
    let model = || {
        SimClr::new(SimClrConfig { encoder: tiny_convnet(), head: tiny_head(8), temperature: 0.5 }, 6, &Device::Cpu)
            .unwrap()
    };
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut plain = model();
    let before: Vec<Vec<f32>> = plain.params().all().iter().map(|(_, v)| flat(v.as_tensor())).collect();
    let loss = with_running_statistics(|| plain.loss(&batch)).unwrap();
    let plain_grads = loss.backward().unwrap();
    let mut cached = GradCache::new(model(), 5).unwrap().with_batch_norm(ChunkBatchNorm::Running);
    let cached_loss = cached.loss(&batch).unwrap();
    let cached_grads = cached_loss.backward().unwrap();
    let (x, y) = (loss.to_scalar::<f32>().unwrap(), cached_loss.to_scalar::<f32>().unwrap());
    assert!((x - y).abs() < 1e-5, "loss {x} plain, {y} cached");
    let trainable = plain.params().trainable();
    for ((name, p), (_, c)) in trainable.iter().zip(cached.params().trainable()) {
        let (u, v) = (flat(plain_grads.get(p.as_tensor()).unwrap()), flat(cached_grads.get(c.as_tensor()).unwrap()));
        for (a, b) in u.iter().zip(&v) {
            assert!((a - b).abs() < 1e-5, "{name}: {a} plain, {b} cached");
        }
    }
    // Nothing moved the running statistics (nor anything else).
    for (store, what) in [(plain.params(), "plain"), (cached.params(), "cached")] {
        let now: Vec<Vec<f32>> = store.all().iter().map(|(_, v)| flat(v.as_tensor())).collect();
        assert_eq!(before, now, "{what}: the forward passes changed a variable");
    }
    // Each chunk's own statistics normalise differently from the running ones.
    let per_chunk = GradCache::new(model(), 5).unwrap().loss(&batch).unwrap().to_scalar::<f32>().unwrap();
    assert!((per_chunk - y).abs() > 1e-4, "per-chunk statistics gave the frozen loss {per_chunk}");
}

/// MoCo through gradient caching, symmetric, over three SGD steps (so the queue holds earlier
/// keys): one chunk of the whole batch is the plain run (losses, query and key networks, queue);
/// with frozen BatchNorm, chunks of at most 5 are the plain run with frozen BatchNorm.
#[test]
fn moco_with_gradient_caching() {
    use contrastive_core::grad_cache::{ChunkBatchNorm, GradCache};
    use contrastive_core::nn::with_running_statistics;
    let model = || {
        let settings = MoCoSettings {
            head: tiny_head(8),
            queue_size: 40,
            temperature: 0.2,
            momentum: 0.9,
            symmetric: true,
            bn_groups: 2,
            shuffle_bn: true,
        };
        MoCo::new(MoCoConfig { encoder: tiny_convnet(), moco: settings }, 3, &Device::Cpu).unwrap()
    };
    let data = loader(digits(48), 16, 2, false);
    // Three SGD steps of `objective`; the losses, then every variable of both networks and the
    // queue.
    type Views = Loader<InMemoryImages, TwoViews<ViewAugmentation>, CollateViews>;
    fn run<O: Objective<Batch = ViewBatch>>(
        mut objective: O,
        data: &Views,
        inner: impl Fn(&O) -> &MoCo,
        frozen: bool,
    ) -> (Vec<f32>, Vec<Vec<f32>>) {
        let mut opt =
            contrastive_core::optim::Optimizer::new(OptimizerConfig::sgd(0.0), objective.params().trainable()).unwrap();
        let mut losses = vec![];
        for (step, batch) in data.epoch(0).take(3).enumerate() {
            let batch = batch.unwrap();
            let loss = if frozen { with_running_statistics(|| objective.loss(&batch)) } else { objective.loss(&batch) }
                .unwrap();
            losses.push(loss.to_scalar::<f32>().unwrap());
            let grads = loss.backward().unwrap();
            opt.step(&grads, 0.5).unwrap();
            objective.after_step(&Progress { step, total_steps: 3, epoch: 0 }).unwrap();
        }
        let moco = inner(&objective);
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut values: Vec<Vec<f32>> = moco.params().all().iter().map(|(_, v)| flat(v.as_tensor())).collect();
        values.extend(moco.key_params().all().iter().map(|(_, v)| flat(v.as_tensor())));
        values.push(flat(moco.queue().keys().unwrap()));
        (losses, values)
    }
    let close = |a: &(Vec<f32>, Vec<Vec<f32>>), b: &(Vec<f32>, Vec<Vec<f32>>), what: &str| {
        for (x, y) in a.0.iter().zip(&b.0) {
            assert!((x - y).abs() < 1e-5, "{what}: loss {x} plain, {y} cached");
        }
        assert_eq!(a.1.len(), b.1.len());
        for (u, v) in a.1.iter().zip(&b.1) {
            for (x, y) in u.iter().zip(v) {
                assert!((x - y).abs() < 1e-5, "{what}: {x} plain, {y} cached");
            }
        }
    };
    let plain = run(model(), &data, |m| m, false);
    let whole = run(GradCache::new(model(), 16).unwrap(), &data, GradCache::inner, false);
    close(&plain, &whole, "one chunk");
    let frozen_plain = run(model(), &data, |m| m, true);
    let frozen_chunks = run(
        GradCache::new(model(), 5).unwrap().with_batch_norm(ChunkBatchNorm::Running),
        &data,
        GradCache::inner,
        false,
    );
    close(&frozen_plain, &frozen_chunks, "frozen BatchNorm, chunks of 5");
    assert!((plain.0[2] - frozen_plain.0[2]).abs() > 1e-4, "frozen BatchNorm changed nothing");
    // Each chunk's own statistics (chunks of 8, in 2 groups of 4) train too.
    let chunks = run(GradCache::new(model(), 8).unwrap(), &data, GradCache::inner, false);
    assert!(chunks.0.iter().all(|l| l.is_finite()));
}
