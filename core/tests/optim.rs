//! Optimiser trajectories against PyTorch (and SimCLR's LARS), schedules, state save/restore,
//! gradient clipping. Golden values: `core/tests/golden/optim.py`, quoted above each test.

use candle_core::{DType, Device, Tensor, Var};
use contrastive_core::optim::*;

/// w (3, 4) and b (4,) as in optim.py's init().
fn init() -> (Var, Var) {
    let dev = Device::Cpu;
    let w: Vec<f64> = (0..3).flat_map(|i| (0..4).map(move |j| 0.1 * (i * 4 + j) as f64 - 0.5)).collect();
    let b: Vec<f64> = (0..4).map(|j| 0.05 * j as f64 - 0.1).collect();
    (
        Var::from_tensor(&Tensor::from_vec(w, (3, 4), &dev).unwrap()).unwrap(),
        Var::from_tensor(&Tensor::from_vec(b, 4, &dev).unwrap()).unwrap(),
    )
}

/// loss = Σ (w - 0.3)² (1 + 0.1 i) + Σ sin(3b) + 0.5 Σ w_ij b_j, as optim.py's loss_fn().
fn loss(w: &Var, b: &Var) -> Tensor {
    let rows = Tensor::new(&[[1.0f64], [1.1], [1.2]], &Device::Cpu).unwrap();
    let a = ((w.as_tensor() - 0.3).unwrap().sqr().unwrap().broadcast_mul(&rows).unwrap()).sum_all().unwrap();
    let s = (b.as_tensor() * 3.0).unwrap().sin().unwrap().sum_all().unwrap();
    let c =
        (w.as_tensor().broadcast_mul(&b.as_tensor().unsqueeze(0).unwrap()).unwrap().sum_all().unwrap() * 0.5).unwrap();
    ((a + s).unwrap() + c).unwrap()
}

fn run(config: OptimizerConfig, lrs: &[f64]) -> Vec<f64> {
    let (w, b) = init();
    let mut opt = Optimizer::new(config, vec![("w".into(), w.clone()), ("b".into(), b.clone())]).unwrap();
    for &lr in lrs {
        opt.step(&loss(&w, &b).backward().unwrap(), lr).unwrap();
    }
    let mut out = w.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    out.extend(b.to_vec1::<f64>().unwrap());
    out
}

fn assert_close(got: &[f64], want: &[f64]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-12 * w.abs().max(1.0), "entry {i}: {g} vs {w}");
    }
}

// show("sgd_momentum_dampening_wd", run(lambda w, b: torch.optim.SGD([w, b], lr=0.1, momentum=0.9,
//      dampening=0.1, weight_decay=0.01)))
// show("sgd_nesterov", run(lambda w, b: torch.optim.SGD([w, b], lr=0.05, momentum=0.9, nesterov=True,
//      weight_decay=0.001)))
// show("sgd_plain_lr_schedule", run(lambda w, b: torch.optim.SGD([w, b], lr=0.1), lrs=[0.1, 0.05, 0.2, 0.01, 0.1]))
#[test]
fn sgd_matches_torch() {
    let cfg = OptimizerConfig::Sgd { momentum: 0.9, dampening: 0.1, nesterov: false, weight_decay: 0.01 };
    assert_close(
        &run(cfg, &[0.1; 5]),
        &[
            0.947060858849038,
            0.8975862619631347,
            0.8466367026928853,
            0.7937121872621598,
            0.7540950265697436,
            0.6981921337095575,
            0.6408808165058281,
            0.5816663867436485,
            0.5057750642322454,
            0.4446161645761806,
            0.38211412453214083,
            0.3177795169779351,
            -0.6829439989264211,
            -0.7449867949718093,
            -0.8383462046131951,
            -0.9594673506521993,
        ],
    );
    let cfg = OptimizerConfig::Sgd { momentum: 0.9, dampening: 0.0, nesterov: true, weight_decay: 0.001 };
    assert_close(
        &run(cfg, &[0.05; 5]),
        &[
            0.5219103690290818,
            0.5115774476787892,
            0.5004906147129571,
            0.4884965968624513,
            0.49963160130230944,
            0.4837213337144084,
            0.4670948383871066,
            0.4496025248225856,
            0.4305425093591719,
            0.40976755280996635,
            0.3883130636013553,
            0.3660330835316747,
            -0.6677784837541264,
            -0.6848813851368575,
            -0.7061052508697252,
            -0.7317656845996166,
        ],
    );
    let cfg = OptimizerConfig::Sgd { momentum: 0.0, dampening: 0.0, nesterov: false, weight_decay: 0.0 };
    assert_close(
        &run(cfg, &[0.1, 0.05, 0.2, 0.01, 0.1]),
        &[
            0.10197763256752884,
            0.13511815162739632,
            0.16797315799806353,
            0.20049703589497592,
            0.25270445409226827,
            0.2817838373191179,
            0.31059441446187647,
            0.33909197932369006,
            0.3697568949310406,
            0.3951223256136423,
            0.4202353308411442,
            0.44505310568597195,
            -0.559800778417321,
            -0.5684069206966791,
            -0.5778897360953509,
            -0.5886415012823801,
        ],
    );
}

// show("adamw_groups", run(lambda w, b: torch.optim.AdamW([{"params": [w], "weight_decay": 0.1},
//      {"params": [b], "weight_decay": 0.0}], lr=0.01, betas=(0.9, 0.999), eps=1e-8)))
#[test]
fn adamw_with_parameter_groups_matches_torch() {
    let cfg = OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 };
    assert_close(
        &run(cfg, &[0.01; 5]),
        &[
            -0.44764946433495717,
            -0.34815530292095,
            -0.24866389226552485,
            -0.14917730742804802,
            -0.049690829794584786,
            0.04977476286608197,
            0.14919209229969865,
            0.24828657150213973,
            0.33868184581113125,
            0.34949755274996896,
            0.4480066054611764,
            0.5473340195631343,
            -0.14997356050626462,
            -0.0999809113535011,
            -0.05000063285554761,
            -1.7761643387329343e-05,
        ],
    );
}

/// On the CPU AdamW updates each parameter in one fused pass; under the generic op path it runs
/// as candle tensor ops. Both take the same operations in the same order, so the weights and
/// moments they reach must be the same bits, in f32 and f64.
#[test]
fn adamw_fused_update_equals_the_tensor_ops_bit_for_bit() {
    for dtype in [DType::F32, DType::F64] {
        let trajectory = |generic: bool| {
            contrastive_core::kernel::with_generic_ops(generic, || {
                let (w, b) = init();
                let (w, b) = (
                    Var::from_tensor(&w.to_dtype(dtype).unwrap()).unwrap(),
                    Var::from_tensor(&b.to_dtype(dtype).unwrap()).unwrap(),
                );
                let cfg = OptimizerConfig::AdamW { beta1: 0.8, beta2: 0.95, eps: 1e-6, weight_decay: 0.1 };
                let mut opt = Optimizer::new(cfg, vec![("w".into(), w.clone()), ("b".into(), b.clone())]).unwrap();
                for (i, lr) in [0.01, 0.05, 0.02, 0.1, 0.03, 0.07].into_iter().enumerate() {
                    // loss() in the variables' dtype, scaled so the gradients change from step to step.
                    let (wt, bt) = (w.as_tensor(), b.as_tensor());
                    let a = wt.affine(1.0, -0.3).unwrap().sqr().unwrap().sum_all().unwrap();
                    let s = bt.affine(3.0, 0.0).unwrap().sin().unwrap().sum_all().unwrap();
                    let c = wt.broadcast_mul(&bt.unsqueeze(0).unwrap()).unwrap().sum_all().unwrap();
                    let l = ((a + s).unwrap() + (c * 0.5).unwrap()).unwrap().affine(1.0 + i as f64, 0.0).unwrap();
                    opt.step(&l.backward().unwrap(), lr).unwrap();
                }
                let bits = |t: &Tensor| -> Vec<u64> {
                    let t = t.flatten_all().unwrap();
                    match dtype {
                        DType::F32 => t.to_vec1::<f32>().unwrap().iter().map(|v| u64::from(v.to_bits())).collect(),
                        _ => t.to_vec1::<f64>().unwrap().iter().map(|v| v.to_bits()).collect(),
                    }
                };
                let mut state: Vec<(String, Vec<u64>)> =
                    opt.state_tensors().iter().map(|(k, t)| (k.clone(), bits(t))).collect();
                state.sort();
                (bits(w.as_tensor()), bits(b.as_tensor()), state)
            })
        };
        let (fused, ops) = (trajectory(false), trajectory(true));
        assert_eq!(fused.2.len(), 4, "{dtype:?}: both moments of both parameters");
        assert_eq!(fused, ops, "{dtype:?}");
    }
}

// lars(steps=5, lr=0.5, momentum=0.9, wd=0.01, eeta=0.001) in optim.py: SimCLR's
// LARSOptimizer.apply_gradients with bias excluded from weight decay and layer adaptation:
//   grad += wd * p; trust = eeta * |p| / |grad|; v = momentum * v + lr * trust * grad; p -= v
// print("lars_trust_ratio_w0:", repr((0.001 * torch.norm(w) / torch.norm(g)).item()))  -> 0.0003900160914876337
#[test]
fn lars_matches_simclr_and_its_trust_ratio() {
    let cfg = OptimizerConfig::Lars { momentum: 0.9, weight_decay: 0.01, trust_coefficient: 0.001 };
    assert_close(
        &run(cfg, &[0.5; 5]),
        &[
            -0.4962540931283563,
            -0.39670927109309184,
            -0.29706934022894466,
            -0.1973171212808286,
            -0.09744633516606008,
            0.0020655715434582615,
            0.10167258762995185,
            0.20139189218032974,
            0.3010981016161884,
            0.4005770961186398,
            0.5001512005461505,
            0.5998375938174528,
            -8.620391566145573,
            -1.3422520313374209,
            -0.7891115408926983,
            -1.6027620715250093,
        ],
    );
    // One plain step without momentum history moves w by lr * trust * (grad + wd w).
    let (w, b) = init();
    let w0 = w.as_tensor().copy().unwrap();
    let grads = loss(&w, &b).backward().unwrap();
    let g = (grads.get(&w).unwrap() + (&w0 * 0.01).unwrap()).unwrap();
    let mut opt = Optimizer::new(cfg, vec![("w".into(), w.clone())]).unwrap();
    opt.step(&grads, 1.0).unwrap();
    let moved = (w0 - w.as_tensor()).unwrap();
    let ratio = moved.sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar::<f64>().unwrap()
        / g.sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar::<f64>().unwrap();
    assert!((ratio - 0.0003900160914876337).abs() < 1e-15, "{ratio}");
}

#[test]
fn saved_state_continues_the_same_trajectory() {
    for cfg in [
        OptimizerConfig::Sgd { momentum: 0.9, dampening: 0.0, nesterov: true, weight_decay: 0.01 },
        OptimizerConfig::adamw(),
        OptimizerConfig::lars(),
    ] {
        let straight = run(cfg, &[0.01; 6]);
        let dir = tempfile::tempdir().unwrap();
        let (w, b) = init();
        let mut opt = Optimizer::new(cfg, vec![("w".into(), w.clone()), ("b".into(), b.clone())]).unwrap();
        for _ in 0..3 {
            opt.step(&loss(&w, &b).backward().unwrap(), 0.01).unwrap();
        }
        opt.save(dir.path()).unwrap();
        let mut fresh = Optimizer::new(cfg, vec![("w".into(), w.clone()), ("b".into(), b.clone())]).unwrap();
        fresh.load(dir.path()).unwrap();
        for _ in 0..3 {
            fresh.step(&loss(&w, &b).backward().unwrap(), 0.01).unwrap();
        }
        let mut got = w.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        got.extend(b.to_vec1::<f64>().unwrap());
        assert_eq!(got, straight, "{cfg:?}");
        // Another optimiser, or a parameter of another shape, is refused with the file named.
        let different = if matches!(cfg, OptimizerConfig::Sgd { .. }) {
            OptimizerConfig::adamw()
        } else {
            OptimizerConfig::sgd(0.5)
        };
        let mut other = Optimizer::new(different, vec![("w".into(), w.clone()), ("b".into(), b.clone())]).unwrap();
        let e = other.load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("optimizer.json"), "{e}");
        let wide = Var::zeros((3, 5), DType::F64, &Device::Cpu).unwrap();
        let mut mismatched = Optimizer::new(cfg, vec![("w".into(), wide), ("b".into(), b.clone())]).unwrap();
        let e = mismatched.load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("optimizer.safetensors") && e.contains("`w.first`"), "{e}");
    }
}

#[test]
fn schedules_at_chosen_steps() {
    assert_eq!(Schedule::Constant.lr(0.3, 1000), 0.3);
    let s = Schedule::WarmupCosine { warmup_steps: 10, total_steps: 110, final_fraction: 0.0 };
    assert!((s.lr(1.0, 0) - 0.1).abs() < 1e-15);
    assert!((s.lr(1.0, 4) - 0.5).abs() < 1e-15);
    assert!((s.lr(1.0, 10) - 1.0).abs() < 1e-15);
    assert!((s.lr(1.0, 60) - 0.5).abs() < 1e-15); // half way down the cosine
    assert!((s.lr(1.0, 35) - 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos())).abs() < 1e-15);
    assert!(s.lr(1.0, 110).abs() < 1e-15 && s.lr(1.0, 500).abs() < 1e-15);
    let f = Schedule::WarmupCosine { warmup_steps: 0, total_steps: 100, final_fraction: 0.1 };
    assert!((f.lr(2.0, 0) - 2.0).abs() < 1e-15 && (f.lr(2.0, 100) - 0.2).abs() < 1e-15);
    let st = Schedule::Step { step_size: 30, gamma: 0.1 };
    assert_eq!(st.lr(1.0, 29), 1.0);
    assert!((st.lr(1.0, 30) - 0.1).abs() < 1e-15 && (st.lr(1.0, 65) - 0.01).abs() < 1e-15);
    assert!(Schedule::Step { step_size: 0, gamma: 0.1 }
        .validate()
        .unwrap_err()
        .to_string()
        .contains("schedule.step_size"));
    let bad = Schedule::WarmupCosine { warmup_steps: 10, total_steps: 5, final_fraction: 0.0 };
    assert!(bad.validate().unwrap_err().to_string().contains("schedule.total_steps"));
    // transformers' get_linear_schedule_with_warmup(warmup 0, total 100): lambda(s) = (100 - s) / 100.
    let lin = Schedule::WarmupLinear { warmup_steps: 0, total_steps: 100 };
    assert!((lin.lr(2.0, 0) - 2.0).abs() < 1e-15 && (lin.lr(2.0, 25) - 1.5).abs() < 1e-15);
    assert_eq!((lin.lr(2.0, 100), lin.lr(2.0, 150)), (0.0, 0.0));
    let warm = Schedule::WarmupLinear { warmup_steps: 4, total_steps: 14 };
    assert!((warm.lr(1.0, 1) - 0.5).abs() < 1e-15 && (warm.lr(1.0, 9) - 0.5).abs() < 1e-15);
    assert!(Schedule::WarmupLinear { warmup_steps: 5, total_steps: 4 }.validate().is_err());
}

#[test]
fn clip_grad_norm_scales_to_the_maximum() {
    let (w, b) = init();
    let mut grads = loss(&w, &b).backward().unwrap();
    let norm = |g: &candle_core::backprop::GradStore| {
        [&w, &b]
            .iter()
            .map(|v| g.get(v.as_tensor()).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap())
            .sum::<f64>()
            .sqrt()
    };
    let before = norm(&grads);
    assert!(before > 1.0);
    let reported = clip_grad_norm(&mut grads, &[w.clone(), b.clone()], 1.0).unwrap();
    assert!((reported - before).abs() < 1e-12);
    assert!((norm(&grads) - 1.0).abs() < 1e-5);
    // Below the maximum nothing changes.
    let again = clip_grad_norm(&mut grads, &[w.clone(), b.clone()], 10.0).unwrap();
    assert!((norm(&grads) - again).abs() < 1e-12);
}

#[test]
fn invalid_configs_name_the_field() {
    let e = OptimizerConfig::Sgd { momentum: 1.5, dampening: 0.0, nesterov: false, weight_decay: 0.0 }
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("optimizer.momentum"), "{e}");
    let e = OptimizerConfig::Sgd { momentum: 0.0, dampening: 0.0, nesterov: true, weight_decay: 0.0 }
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("optimizer.nesterov"), "{e}");
    let e = OptimizerConfig::AdamW { beta1: 0.9, beta2: 1.0, eps: 1e-8, weight_decay: 0.0 }.validate().unwrap_err();
    assert!(e.to_string().contains("optimizer.beta2"), "{e}");
    let e =
        OptimizerConfig::Lars { momentum: 0.9, weight_decay: -1.0, trust_coefficient: 0.001 }.validate().unwrap_err();
    assert!(e.to_string().contains("optimizer.weight_decay"), "{e}");
}
