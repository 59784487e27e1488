//! CLIP's symmetric loss and the two-tower objective: a golden value from CLIP's formula, a naive
//! reference, gradients into both towers and the temperature, the clamp, and errors.

mod common;

use candle_core::{DType, Device, Module, Result, Tensor, Var};
use common::{finite_differences, random_rows, scalar, tensor};
use contrastive_core::cross_modal::{Clip, ClipBatch, ClipConfig, LOG_SCALE};
use contrastive_core::loss::clip_loss;
use contrastive_core::nn::{check_gradients, linear, InitScheme, Linear, ParamStore};
use contrastive_core::optim::{Optimizer, OptimizerConfig};
use contrastive_core::train::{Objective, Progress};
use contrastive_core::Backbone;

const A: [[f64; 4]; 3] = [[0.3, -1.2, 0.5, 2.0], [1.1, 0.4, -0.7, 0.2], [-0.5, 0.9, 1.3, -0.8]];
const B: [[f64; 4]; 3] = [[0.2, -1.0, 0.8, 1.5], [1.4, -0.3, -0.2, 0.6], [-0.9, 1.2, 0.7, -0.1]];

fn rows(m: &[[f64; 4]; 3]) -> common::Rows {
    m.iter().map(|r| r.to_vec()).collect()
}

fn log_scale(t: f64, dtype: DType) -> Tensor {
    Tensor::new(&[t], &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

/// CLIP's pseudo-code (Figure 3 of the paper) in plain loops.
fn naive_clip(a: &common::Rows, b: &common::Rows, t: f64) -> f64 {
    let n = a.len();
    let logits: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| t.exp() * common::cos(&a[i], &b[j])).collect()).collect();
    let ce = |row: &dyn Fn(usize) -> f64, i: usize| {
        let lse = (0..n).map(|j| row(j).exp()).sum::<f64>().ln();
        lse - row(i)
    };
    let a_to_b: f64 = (0..n).map(|i| ce(&|j| logits[i][j], i)).sum::<f64>() / n as f64;
    let b_to_a: f64 = (0..n).map(|j| ce(&|i| logits[i][j], j)).sum::<f64>() / n as f64;
    (a_to_b + b_to_a) / 2.0
}

#[test]
fn clip_loss_equals_the_papers_formula() {
    // import numpy as np
    // a = np.array([[0.3, -1.2, 0.5, 2.0], [1.1, 0.4, -0.7, 0.2], [-0.5, 0.9, 1.3, -0.8]])
    // b = np.array([[0.2, -1.0, 0.8, 1.5], [1.4, -0.3, -0.2, 0.6], [-0.9, 1.2, 0.7, -0.1]])
    // def ce(l):
    //     m = l.max(axis=1, keepdims=True); lse = m[:, 0] + np.log(np.exp(l - m).sum(axis=1))
    //     return np.mean(lse - np.diag(l))
    // an = a / np.linalg.norm(a, axis=1, keepdims=True); bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    // for t in [np.log(1 / 0.07), 2.0]:
    //     l = np.exp(t) * an @ bn.T; print((ce(l) + ce(l.T)) / 2)
    // -> 0.003244994454654796, 0.025069309975174498
    let (a, b) = (rows(&A), rows(&B));
    for (t, golden) in [((1.0f64 / 0.07).ln(), 0.003244994454654796), (2.0, 0.025069309975174498)] {
        let ours =
            scalar(&clip_loss(&tensor(&a, DType::F64), &tensor(&b, DType::F64), &log_scale(t, DType::F64)).unwrap());
        assert!((ours - golden).abs() < 1e-12, "{ours} vs {golden}");
        assert!((naive_clip(&a, &b, t) - golden).abs() < 1e-12);
        let f32 =
            scalar(&clip_loss(&tensor(&a, DType::F32), &tensor(&b, DType::F32), &log_scale(t, DType::F32)).unwrap());
        assert!((f32 - golden).abs() < 1e-5);
    }
    // Random batches against the naive loops; swapping the towers changes nothing; all-equal
    // embeddings give ln N.
    let (a, b) = (random_rows(11, 9, 5, 2.0), random_rows(12, 9, 5, 2.0));
    let ours =
        scalar(&clip_loss(&tensor(&a, DType::F64), &tensor(&b, DType::F64), &log_scale(1.3, DType::F64)).unwrap());
    assert!((ours - naive_clip(&a, &b, 1.3)).abs() < 1e-12);
    let swapped =
        scalar(&clip_loss(&tensor(&b, DType::F64), &tensor(&a, DType::F64), &log_scale(1.3, DType::F64)).unwrap());
    assert!((ours - swapped).abs() < 1e-12);
    let same = Tensor::ones((6, 3), DType::F64, &Device::Cpu).unwrap();
    let chance = scalar(&clip_loss(&same, &same, &log_scale(4.0, DType::F64)).unwrap());
    assert!((chance - 6f64.ln()).abs() < 1e-12);
}

#[test]
fn clip_loss_gradients_match_finite_differences() {
    let (a, b) = (random_rows(21, 5, 4, 1.5), random_rows(22, 5, 4, 1.5));
    let loss = |a: &common::Rows, b: &common::Rows, t: f64| {
        scalar(&clip_loss(&tensor(a, DType::F64), &tensor(b, DType::F64), &log_scale(t, DType::F64)).unwrap())
    };
    let av = Var::from_tensor(&tensor(&a, DType::F64)).unwrap();
    let bv = Var::from_tensor(&tensor(&b, DType::F64)).unwrap();
    let tv = Var::from_tensor(&log_scale(2.5, DType::F64)).unwrap();
    let g = clip_loss(av.as_tensor(), bv.as_tensor(), tv.as_tensor()).unwrap().backward().unwrap();
    let da = finite_differences(&a, 1e-6, |a| loss(a, &b, 2.5));
    let db = finite_differences(&b, 1e-6, |b| loss(&a, b, 2.5));
    let dt = (loss(&a, &b, 2.5 + 1e-6) - loss(&a, &b, 2.5 - 1e-6)) / 2e-6;
    assert!(common::max_abs_diff(&common::rows_of(g.get(&av).unwrap()), &da) < 1e-7);
    assert!(common::max_abs_diff(&common::rows_of(g.get(&bv).unwrap()), &db) < 1e-7);
    assert!((scalar(&g.get(&tv).unwrap().squeeze(0).unwrap()) - dt).abs() < 1e-7);
}

/// A tower of one linear layer over feature rows.
struct Rows(Linear);

impl Backbone for Rows {
    type Input = Tensor;
    fn encode(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        self.0.forward(x)
    }
    fn dim(&self) -> usize {
        4
    }
}

fn clip(config: ClipConfig) -> Clip<Rows, Rows> {
    let store = ParamStore::new(3, InitScheme::PyTorch);
    let vb = store.var_builder(DType::F32, &Device::Cpu);
    let a = Rows(linear(6, 4, vb.pp("a")).unwrap());
    let b = Rows(linear(3, 4, vb.pp("b")).unwrap());
    Clip::new(a, b, store, config).unwrap()
}

/// Eight items seen as 6 features by one tower and 3 (a linear map of them) by the other.
fn batch() -> ClipBatch<Tensor, Tensor> {
    let x = tensor(&random_rows(31, 8, 6, 1.0), DType::F32);
    let map = tensor(&random_rows(32, 6, 3, 1.0), DType::F32);
    ClipBatch { b: x.matmul(&map).unwrap(), a: x }
}

#[test]
fn gradients_reach_both_towers_and_the_temperature_and_the_clamp_holds() {
    let mut model = clip(ClipConfig::default());
    assert!((model.temperature().unwrap() - 0.07).abs() < 1e-6);
    let names: Vec<String> = model.params().trainable().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["a.bias", "a.weight", "b.bias", "b.weight", LOG_SCALE]);
    let batch = batch();
    let grads = model.loss(&batch).unwrap().backward().unwrap();
    check_gradients(model.params(), &grads).unwrap();

    // Training lowers the loss; a huge learning rate on the log scale would push it past 100:
    // the clamp after every step keeps e^t in [1, 100].
    let before = scalar(&model.loss(&batch).unwrap());
    let mut optimizer = Optimizer::new(OptimizerConfig::sgd(0.0), model.params().trainable()).unwrap();
    for step in 0..50 {
        let grads = model.loss(&batch).unwrap().backward().unwrap();
        optimizer.step(&grads, 2.0).unwrap();
        model.after_step(&Progress { step, total_steps: 50, epoch: 0 }).unwrap();
        let t = model.temperature().unwrap();
        assert!((0.01 - 1e-6..=1.0 + 1e-6).contains(&t), "temperature {t} at step {step}");
    }
    assert!(scalar(&model.loss(&batch).unwrap()) < before);
    // Pushed past either end, the scale comes back to 100 or 1 after the step.
    let var = model.params().get(LOG_SCALE).unwrap();
    for (set, temperature) in [(1000f32.ln(), 0.01), (-3.0, 1.0)] {
        var.set(&Tensor::new(&[set], &Device::Cpu).unwrap()).unwrap();
        model.after_step(&Progress { step: 99, total_steps: 100, epoch: 0 }).unwrap();
        assert!((model.temperature().unwrap() - temperature).abs() < 1e-6);
    }

    // A fixed temperature is not a variable, and stays.
    let mut fixed = clip(ClipConfig { learnable: false, init_temperature: 0.1, ..ClipConfig::default() });
    assert!(fixed.params().get(LOG_SCALE).is_none());
    fixed.after_step(&Progress { step: 0, total_steps: 1, epoch: 0 }).unwrap();
    assert!((fixed.temperature().unwrap() - 0.1).abs() < 1e-6);
}

#[test]
fn bad_input_is_named() {
    let x = Tensor::zeros((4, 3), DType::F32, &Device::Cpu).unwrap();
    let y = Tensor::zeros((5, 3), DType::F32, &Device::Cpu).unwrap();
    let err = clip_loss(&x, &y, &log_scale(1.0, DType::F32)).unwrap_err().to_string();
    assert!(err.contains("4 and 5 rows"), "{err}");
    let one = Tensor::zeros((1, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(clip_loss(&one, &one, &log_scale(1.0, DType::F32)).unwrap_err().to_string().contains("at least 2"));
    let bad = ClipConfig { init_temperature: 0.001, ..ClipConfig::default() };
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("clip.init_temperature"), "{err}");
}
