//! SimCLR on the ConvNet under `mpirun -np 2` with SyncBatchNorm (feature `mpi`): two processes
//! with batches of 8 train as one process with batches of 16 (losses, parameters and BatchNorm's
//! running statistics), on the fused kernels (SyncBatchNorm inside the BatchNorm and ConvBn ops)
//! and on the device-generic path (its all-reduces as ops). MoCo likewise, with shuffle-BN across
//! the processes and the queue filled with both processes' keys: 2 x 8 with 2 BatchNorm groups
//! each train as 1 x 16 with 4 (losses, parameters, key network and queue). Skipped without
//! mpirun unless `CONTRASTIVE_REQUIRE_MPI=1` (CI).
#![cfg(feature = "mpi")]

use candle_core::Device;
use contrastive_core::augment::Compose;
use contrastive_core::collective::{set_sync_batch_norm, Collective, Local, Mpi};
use contrastive_core::data::{Loader, LoaderConfig, Shard};
use contrastive_core::kernel::set_generic_ops;
use contrastive_core::nn::ProjectionHeadConfig;
use contrastive_core::train::{list_checkpoints, Objective, Trainer};
use contrastive_vision::augment::{HorizontalFlip, Normalize, ViewAugmentation};
use contrastive_vision::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[path = "../../core/tests/support/mpirun.rs"]
mod support;
use support::{assert_same_run, checkpoint_values, sgd_steps, workers, OUT, WORKER};

fn model(collective: Arc<dyn Collective>) -> SimClr {
    let config = SimClrConfig {
        encoder: EncoderConfig::ConvNet(ConvNetConfig { in_channels: 1, widths: vec![8, 16], strides: vec![1, 2] }),
        head: ProjectionHeadConfig {
            input_dim: 16,
            hidden_dim: 32,
            output_dim: 16,
            layers: 2,
            batch_norm: true,
            output_batch_norm: false,
        },
        temperature: 0.5,
    };
    SimClr::new(config, 3, &Device::Cpu).unwrap().with_collective(collective)
}

fn moco(collective: Arc<dyn Collective>, bn_groups: usize) -> MoCo {
    let config = MoCoConfig {
        encoder: EncoderConfig::ConvNet(ConvNetConfig { in_channels: 1, widths: vec![8, 16], strides: vec![1, 2] }),
        moco: MoCoSettings {
            head: ProjectionHeadConfig::moco_v2(16),
            // 5 steps of 32 keys (both views): the queue wraps.
            queue_size: 48,
            temperature: 0.2,
            momentum: 0.9,
            symmetric: true,
            bn_groups,
            shuffle_bn: true,
        },
    };
    MoCo::new(config, 3, &Device::Cpu).unwrap().with_collective(collective)
}

/// Five SGD steps of SimCLR (or MoCo with `moco_groups` BatchNorm groups per process) on 96
/// digits, batches of `batch` per process, into `dir`.
fn train(collective: Arc<dyn Collective>, batch: usize, dir: &Path) {
    train_method(collective, batch, None, dir)
}

fn train_method(collective: Arc<dyn Collective>, batch: usize, moco_groups: Option<usize>, dir: &Path) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv.gz");
    let digits = load_pixel_csv(&path, 8, 8, 16.0).unwrap().select(&(0..96).collect::<Vec<_>>()).unwrap();
    let normalize = Normalize { mean: vec![0.3], std: vec![0.35] };
    let aug = ViewAugmentation(Compose(vec![Box::new(HorizontalFlip { p: 0.5 }), Box::new(normalize)]));
    let config = LoaderConfig { batch_size: batch, seed: 4, shuffle: true, drop_last: true, threads: 1 };
    let shard = Shard { rank: collective.rank(), world_size: collective.world_size() };
    let loader =
        Loader::new(digits, aug, CollateViews { device: Device::Cpu }, config).unwrap().with_shard(shard).unwrap();
    let config = sgd_steps(1, 5, 0.05);
    if let Some(groups) = moco_groups {
        let model = moco(Arc::clone(&collective), groups);
        let mut trainer = Trainer::new(config, model).unwrap().with_collective(collective).with_run_dir(dir);
        trainer.fit(&loader).unwrap();
        return;
    }
    let mut trainer =
        Trainer::new(config, model(Arc::clone(&collective))).unwrap().with_collective(collective).with_run_dir(dir);
    trainer.fit(&loader).unwrap();
}

/// The worker the test starts under mpirun (nothing when run as an ordinary test).
#[test]
fn mpi_worker() {
    let Ok(path) = std::env::var(WORKER) else { return };
    if path == "ops" {
        return sync_ops_agree_on_both_paths();
    }
    if path == "moco" {
        let collective: Arc<dyn Collective> = Arc::new(Mpi::init().unwrap());
        return train_method(collective, 8, Some(2), &PathBuf::from(std::env::var(OUT).unwrap()));
    }
    set_generic_ops(path == "generic");
    let collective: Arc<dyn Collective> = Arc::new(Mpi::init().unwrap());
    set_sync_batch_norm(Some(Arc::clone(&collective)));
    train(collective, 8, &PathBuf::from(std::env::var(OUT).unwrap()));
    set_sync_batch_norm(None);
}

fn final_state(dir: &Path) -> Vec<(String, Vec<f32>)> {
    checkpoint_values(model(Arc::new(Local)).params(), dir)
}

/// Every tensor of the last checkpoint's model and extra state (MoCo's key network and queue)
/// but BatchNorm's running statistics: each process updates them once per BatchNorm group of its
/// own (one process, 4 times per pass over 4 groups; each of two, twice over its 2), as each
/// GPU of PyTorch's MoCo keeps its own; they serve evaluation only.
fn checkpoint_tensors(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let checkpoint = list_checkpoints(dir).unwrap().pop().expect("a checkpoint");
    let mut all = vec![];
    for file in ["model.safetensors", "extra.safetensors"] {
        let tensors = candle_core::safetensors::load(checkpoint.join(file), &Device::Cpu).unwrap();
        let mut tensors: Vec<_> = tensors.into_iter().collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, t) in tensors.into_iter().filter(|(n, _)| !n.contains(".running_")) {
            all.push((format!("{file}: {name}"), t.flatten_all().unwrap().to_vec1::<f32>().unwrap()));
        }
    }
    all
}

#[test]
fn moco_with_shuffle_bn_on_two_processes_equals_one_with_the_global_batch() {
    let one = tempfile::tempdir().unwrap();
    train_method(Arc::new(Local), 16, Some(4), one.path());
    let two = tempfile::tempdir().unwrap();
    let Some(run) = workers(2, "moco", two.path()) else { return };
    assert!(run.status.success(), "{}", run.stderr);
    let names: Vec<String> = checkpoint_tensors(one.path()).into_iter().map(|(n, _)| n).collect();
    assert!(names.iter().any(|n| n.ends_with("queue")), "{names:?}");
    assert_same_run("moco", one.path(), two.path(), 5, 1e-5, checkpoint_tensors);
}

#[test]
fn simclr_with_sync_batch_norm_on_two_processes_equals_one_with_the_global_batch() {
    for path in ["kernels", "generic"] {
        let one = tempfile::tempdir().unwrap();
        contrastive_core::kernel::with_generic_ops(path == "generic", || train(Arc::new(Local), 16, one.path()));
        let two = tempfile::tempdir().unwrap();
        let Some(run) = workers(2, path, two.path()) else { return };
        assert!(run.status.success(), "{}", run.stderr);
        assert_same_run(path, one.path(), two.path(), 5, 1e-5, final_state);
    }
}

/// Under SyncBatchNorm on 2 processes: BatchNorm (2-D and 4-D, with and without ReLU) and ConvBn
/// give the same values and gradients (input, weights, γ, β) on the fused kernels as on the
/// composite path, through a loss over the gathered outputs.
fn sync_ops_agree_on_both_paths() {
    use candle_core::{DType, Tensor, Var};
    use contrastive_core::collective::gather_rows;
    use contrastive_core::nn::{InitScheme, ParamStore};
    let collective: Arc<dyn Collective> = Arc::new(Mpi::init().unwrap());
    set_sync_batch_norm(Some(Arc::clone(&collective)));
    let rank = collective.rank();
    let store = ParamStore::new(5, InitScheme::PyTorch);
    let vb = store.var_builder(DType::F32, &Device::Cpu);
    let geometry = ConvGeometry { in_channels: 3, out_channels: 4, kernel: 3, stride: 1, padding: 1 };
    let conv = conv2d(geometry, false, vb.pp("conv")).unwrap();
    let conv_bn = ConvBn::new(conv, batch_norm(4, vb.pp("cbn")).unwrap(), Activation::Relu);
    let bn = batch_norm(4, vb.pp("bn")).unwrap();
    // Each process its own input; the weights shift away from 1 and 0 so that γ and β matter.
    for (_, v) in store.all() {
        let shifted = v.as_tensor().affine(1.3, 0.2).unwrap();
        v.set(&shifted).unwrap();
    }
    let input = |shape: &[usize], salt: u64| {
        let n: usize = shape.iter().product();
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(salt + 100 * rank as u64);
        let values: Vec<f32> = (0..n).map(|_| rand::Rng::random_range(&mut rng, -2.0f32..3.0)).collect();
        Var::from_tensor(&Tensor::from_vec(values, shape, &Device::Cpu).unwrap()).unwrap()
    };
    type Layer<'a> = Box<dyn Fn(&Tensor) -> candle_core::Result<Tensor> + 'a>;
    let cases: Vec<(&str, Var, Layer)> = vec![
        ("ConvBn + ReLU", input(&[3, 5, 5, 3], 1), Box::new(|x| conv_bn.forward_t(x, true))),
        ("BatchNorm (N, C, H, W)", input(&[3, 4, 5, 5], 2), Box::new(|x| candle_nn::ModuleT::forward_t(&bn, x, true))),
        ("BatchNorm + ReLU (N, C)", input(&[6, 4], 3), Box::new(|x| bn.forward_relu_t(x, true))),
    ];
    for (name, x, f) in &cases {
        let run = |generic: bool| {
            contrastive_core::kernel::with_generic_ops(generic, || {
                let y = f(x.as_tensor()).unwrap();
                let rows = gather_rows(&y.flatten_from(1).unwrap(), collective.as_ref()).unwrap();
                // A fixed weighting of every output, the same on both processes.
                let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(9);
                let r: Vec<f32> =
                    (0..rows.elem_count()).map(|_| rand::Rng::random_range(&mut rng, -1.0f32..1.0)).collect();
                let r = Tensor::from_vec(r, rows.dims(), &Device::Cpu).unwrap();
                let loss = (rows * r).unwrap().sum_all().unwrap();
                let grads = loss.backward().unwrap();
                let mut out = vec![y.flatten_all().unwrap().to_vec1::<f32>().unwrap()];
                for v in std::iter::once(x.clone()).chain(store.trainable().into_iter().map(|(_, v)| v)) {
                    out.push(
                        grads
                            .get(v.as_tensor())
                            .map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                            .unwrap_or_default(),
                    );
                }
                out
            })
        };
        let (kernels, generic) = (run(false), run(true));
        for (i, (a, b)) in kernels.iter().zip(&generic).enumerate() {
            let d = a.iter().zip(b).map(|(u, v)| (u - v).abs()).fold(0.0f32, f32::max);
            assert!(
                d < 1e-4,
                "rank {rank}: {name}: output {i} (0: value, 1: input gradient, then the variables) differs by {d}"
            );
        }
    }
    set_sync_batch_norm(None);
}

#[test]
fn sync_batch_norm_kernels_equal_the_composite_path_on_two_processes() {
    let Some(run) = workers(2, "ops", Path::new("-")) else { return };
    assert!(run.status.success(), "{}", run.stderr);
}
