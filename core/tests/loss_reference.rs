//! Every loss, fused and composite, against the naive f64 loops of `common`, over many sizes and
//! temperatures; closed forms; finiteness at extreme temperatures and norms; bad input.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{max_abs_diff, random_rows, rows_of, scalar, tensor, Rows};
use contrastive_core::loss::*;
use contrastive_core::sampling::PairMask;

#[derive(Clone, Copy, Debug)]
enum Joint {
    NtXent,
    Decoupled,
    Debiased(f64),
    Hard(f64, f64),
}

const JOINT: [Joint; 6] = [
    Joint::NtXent,
    Joint::Decoupled,
    Joint::Debiased(0.1),
    Joint::Debiased(0.3),
    Joint::Hard(1.0, 0.1),
    Joint::Hard(0.5, 0.0),
];

fn spec(p: Joint, t: f64, kernel: Kernel) -> MaskedInfoNce {
    let mut s = MaskedInfoNce { kernel, ..MaskedInfoNce::new(t) };
    match p {
        Joint::NtXent => {}
        Joint::Decoupled => s.denominator = Denominator::NegativesOnly,
        Joint::Debiased(tau_plus) => s.estimator = NegativeEstimator::Debiased { tau_plus },
        Joint::Hard(beta, tau_plus) => s.estimator = NegativeEstimator::HardNegative { beta, tau_plus },
    }
    s
}

fn is_plain(p: Joint) -> bool {
    matches!(p, Joint::NtXent | Joint::Decoupled)
}

/// The public preset function.
fn public(p: Joint, z1: &Tensor, z2: &Tensor, t: f64) -> Tensor {
    match p {
        Joint::NtXent => nt_xent(z1, z2, t),
        Joint::Decoupled => decoupled_nt_xent(z1, z2, t),
        Joint::Debiased(tp) => debiased_nt_xent(z1, z2, t, tp),
        Joint::Hard(b, tp) => hard_negative_nt_xent(z1, z2, t, b, tp),
    }
    .unwrap()
}

fn with_kernel(p: Joint, z1: &Tensor, z2: &Tensor, t: f64, kernel: Kernel) -> Tensor {
    let z = Tensor::cat(&[z1, z2], 0).unwrap();
    spec(p, t, kernel).loss(&z, &z, &PairMask::joint(z1.dims()[0])).unwrap()
}

fn naive(p: Joint, z1: &Rows, z2: &Rows, t: f64) -> f64 {
    match p {
        Joint::NtXent => common::nt_xent(z1, z2, t),
        Joint::Decoupled => common::decoupled(z1, z2, t),
        Joint::Debiased(tp) => common::hcl(z1, z2, t, 0.0, tp),
        Joint::Hard(b, tp) => common::hcl(z1, z2, t, b, tp),
    }
}

/// Loss and the gradients with respect to both views.
fn loss_and_grads(z1: &Rows, z2: &Rows, dtype: DType, f: impl Fn(&Tensor, &Tensor) -> Tensor) -> (f64, Rows, Rows) {
    let v1 = Var::from_tensor(&tensor(z1, dtype)).unwrap();
    let v2 = Var::from_tensor(&tensor(z2, dtype)).unwrap();
    let loss = f(v1.as_tensor(), v2.as_tensor());
    let grads = loss.backward().unwrap();
    // A loss of one view only (SupCon here) leaves the other without a gradient.
    let of = |v: &Var| grads.get(v).map(rows_of).unwrap_or_default();
    (scalar(&loss), of(&v1), of(&v2))
}

const SIZES: [(usize, usize); 6] = [(2, 1), (2, 3), (3, 4), (7, 17), (16, 8), (33, 5)];
const TEMPERATURES: [f64; 4] = [0.05, 0.1, 0.5, 1.0];

#[test]
fn joint_losses_match_naive_in_f64_fused_and_composite() {
    for (case, &(n, d)) in SIZES.iter().enumerate() {
        for &t in &TEMPERATURES {
            let z1 = random_rows(case as u64, n, d, 2.0);
            let z2 = random_rows(100 + case as u64, n, d, 2.0);
            for p in JOINT {
                let want = naive(p, &z1, &z2, t);
                let (a, b) = (tensor(&z1, DType::F64), tensor(&z2, DType::F64));
                let got = scalar(&public(p, &a, &b, t));
                assert!((got - want).abs() < 1e-9 * want.abs().max(1.0), "{p:?} n={n} d={d} t={t}: {got} vs {want}");
                let composite = scalar(&with_kernel(p, &a, &b, t, Kernel::Composite));
                assert!(
                    (composite - want).abs() < 1e-9 * want.abs().max(1.0),
                    "{p:?} composite: {composite} vs {want}"
                );
            }
        }
    }
}

#[test]
fn joint_losses_match_naive_in_f32() {
    for (case, &(n, d)) in SIZES.iter().enumerate() {
        let z1 = random_rows(200 + case as u64, n, d, 1.0);
        let z2 = random_rows(300 + case as u64, n, d, 1.0);
        for p in JOINT {
            let want = naive(p, &z1, &z2, 0.2);
            let got = scalar(&public(p, &tensor(&z1, DType::F32), &tensor(&z2, DType::F32), 0.2));
            assert!((got - want).abs() < 2e-5 * want.abs().max(1.0), "{p:?} n={n}: {got} vs {want}");
        }
    }
}

#[test]
fn fused_agrees_with_composite_to_1e5_in_f32_loss_and_gradients() {
    for (case, &(n, d)) in [(4, 8), (32, 16), (128, 64), (300, 128)].iter().enumerate() {
        for &t in &[0.05, 0.5] {
            let z1 = random_rows(400 + case as u64, n, d, 3.0);
            let z2 = random_rows(500 + case as u64, n, d, 3.0);
            for p in [Joint::NtXent, Joint::Decoupled] {
                let (lf, f1, f2) = loss_and_grads(&z1, &z2, DType::F32, |a, b| with_kernel(p, a, b, t, Kernel::Fused));
                let (lc, c1, c2) =
                    loss_and_grads(&z1, &z2, DType::F32, |a, b| with_kernel(p, a, b, t, Kernel::Composite));
                assert!((lf - lc).abs() <= 1e-5 * lc.abs().max(1.0), "{p:?} n={n} t={t}: fused {lf} composite {lc}");
                let scale = c1.iter().chain(&c2).flatten().fold(0.0f64, |m, v| m.max(v.abs()));
                let err = max_abs_diff(&f1, &c1).max(max_abs_diff(&f2, &c2));
                assert!(err <= 1e-5 * scale.max(1e-3), "{p:?} n={n} t={t}: gradient differs by {err} (scale {scale})");
            }
        }
    }
}

#[test]
fn info_nce_matches_naive_with_and_without_extra_negatives() {
    for (case, &(n, d)) in SIZES.iter().enumerate() {
        for &t in &TEMPERATURES {
            let q = random_rows(600 + case as u64, n, d, 1.5);
            let p = random_rows(700 + case as u64, n, d, 1.5);
            let extra = random_rows(800 + case as u64, 5, d, 1.5);
            for dtype in [DType::F64, DType::F32] {
                let tol = if dtype == DType::F64 { 1e-9 } else { 2e-5 };
                let (qt, pt, et) = (tensor(&q, dtype), tensor(&p, dtype), tensor(&extra, dtype));
                let want = common::info_nce(&q, &p, &Vec::new(), t);
                let got = scalar(&info_nce(&qt, &pt, None, t).unwrap());
                assert!((got - want).abs() < tol * want.max(1.0), "n={n} t={t} {dtype:?}: {got} vs {want}");
                let want = common::info_nce(&q, &p, &extra, t);
                let got = scalar(&info_nce(&qt, &pt, Some(&et), t).unwrap());
                assert!((got - want).abs() < tol * want.max(1.0), "queue n={n} t={t} {dtype:?}: {got} vs {want}");
            }
        }
    }
}

#[test]
fn supcon_matches_naive_fused_and_composite_including_anchors_without_positives() {
    let labels: Vec<i64> = vec![0, 1, 0, 2, 1, 0, 3, 2, 5];
    let z = random_rows(900, labels.len(), 6, 1.0);
    for &t in &TEMPERATURES {
        let want = common::supcon(&z, &labels, t);
        let lt = Tensor::new(labels.as_slice(), &Device::Cpu).unwrap();
        let got = scalar(&supcon(&tensor(&z, DType::F64), &lt, t).unwrap());
        assert!((got - want).abs() < 1e-9 * want.max(1.0), "t={t}: {got} vs {want}");
        let zt = tensor(&z, DType::F64);
        let composite = MaskedInfoNce { kernel: Kernel::Composite, ..MaskedInfoNce::new(t) }
            .loss(&zt, &zt, &PairMask::supervised(&labels))
            .unwrap();
        assert!((scalar(&composite) - want).abs() < 1e-9 * want.max(1.0));
        let u32_labels =
            Tensor::new(labels.iter().map(|&l| l as u32).collect::<Vec<_>>().as_slice(), &Device::Cpu).unwrap();
        assert_eq!(scalar(&supcon(&zt, &u32_labels, t).unwrap()), got);
    }
}

#[test]
fn all_equal_similarities_give_ln_2n_minus_1() {
    for n in [2usize, 5, 64] {
        let row = random_rows(1, 1, 7, 1.0).remove(0);
        let z: Rows = vec![row; n];
        for dtype in [DType::F32, DType::F64] {
            for kernel in [Kernel::Fused, Kernel::Composite] {
                let t = tensor(&z, dtype);
                let got = scalar(&with_kernel(Joint::NtXent, &t, &t, 0.3, kernel));
                let want = ((2 * n - 1) as f64).ln();
                assert!((got - want).abs() < 1e-5, "n={n} {dtype:?} {kernel:?}: {got} vs {want}");
            }
        }
    }
}

#[test]
fn swapping_views_and_scaling_inputs_change_nothing() {
    let z1 = random_rows(11, 9, 6, 1.0);
    let z2 = random_rows(12, 9, 6, 1.0);
    let scaled: Rows = z1.iter().map(|r| r.iter().map(|v| v * 37.5).collect()).collect();
    for p in JOINT {
        let (a, b, s) = (tensor(&z1, DType::F64), tensor(&z2, DType::F64), tensor(&scaled, DType::F64));
        let base = scalar(&public(p, &a, &b, 0.2));
        assert!((scalar(&public(p, &b, &a, 0.2)) - base).abs() < 1e-12, "{p:?} swap");
        assert!((scalar(&public(p, &s, &b, 0.2)) - base).abs() < 1e-12, "{p:?} scale");
    }
}

#[test]
fn estimators_reduce_to_simpler_ones() {
    let z1 = tensor(&random_rows(13, 8, 5, 1.0), DType::F64);
    let z2 = tensor(&random_rows(14, 8, 5, 1.0), DType::F64);
    let plain = scalar(&nt_xent(&z1, &z2, 0.5).unwrap());
    // tau_plus = 0: the clamp never binds (every exp(s) >= e^{-1/t}), so debiased = NT-Xent.
    assert!((scalar(&debiased_nt_xent(&z1, &z2, 0.5, 0.0).unwrap()) - plain).abs() < 1e-12);
    // beta = 0: uniform importance weights, so HCL = debiased.
    let debiased = scalar(&debiased_nt_xent(&z1, &z2, 0.5, 0.2).unwrap());
    assert!((scalar(&hard_negative_nt_xent(&z1, &z2, 0.5, 0.0, 0.2).unwrap()) - debiased).abs() < 1e-12);
}

#[test]
fn losses_and_gradients_stay_finite_at_small_temperature_and_any_norm() {
    for &norm in &[1e-3, 1.0, 1e3] {
        let z1 = random_rows(15, 64, 32, norm);
        // Nearly identical views push the positive logit 100 above the negatives at t = 0.01.
        let z2: Rows = z1.iter().map(|r| r.iter().map(|v| v * 1.0001).collect()).collect();
        let far = random_rows(16, 64, 32, norm);
        for (v1, v2) in [(&z1, &z2), (&z1, &far)] {
            for p in JOINT {
                let kernels: &[Kernel] =
                    if is_plain(p) { &[Kernel::Fused, Kernel::Composite] } else { &[Kernel::Composite] };
                for &kernel in kernels {
                    let (l, g1, g2) = loss_and_grads(v1, v2, DType::F32, |a, b| with_kernel(p, a, b, 0.01, kernel));
                    assert!(l.is_finite(), "{p:?} {kernel:?} norm {norm}: loss {l}");
                    assert!(
                        g1.iter().chain(&g2).flatten().all(|g| g.is_finite()),
                        "{p:?} {kernel:?} norm {norm}: gradient"
                    );
                }
            }
            let labels: Vec<i64> = (0..64).map(|i| i % 4).collect();
            let (l, g, _) = loss_and_grads(v1, v2, DType::F32, |a, _| {
                supcon(a, &Tensor::new(labels.as_slice(), &Device::Cpu).unwrap(), 0.01).unwrap()
            });
            assert!(l.is_finite() && g.iter().flatten().all(|v| v.is_finite()), "supcon norm {norm}");
            let (l, g1, g2) = loss_and_grads(v1, v2, DType::F32, |a, b| info_nce(a, b, None, 0.01).unwrap());
            assert!(l.is_finite() && g1.iter().chain(&g2).flatten().all(|v| v.is_finite()), "info_nce norm {norm}");
        }
    }
}

fn error_of(r: candle_core::Result<Tensor>) -> String {
    match r {
        Ok(t) => panic!("expected an error, got {t}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let dev = Device::Cpu;
    let z = Tensor::zeros((4, 8), DType::F32, &dev).unwrap();
    let wide = Tensor::zeros((4, 9), DType::F32, &dev).unwrap();
    let short = Tensor::zeros((3, 8), DType::F32, &dev).unwrap();
    let one = Tensor::zeros((1, 8), DType::F32, &dev).unwrap();
    let flat = Tensor::zeros(8, DType::F32, &dev).unwrap();
    let f64z = Tensor::zeros((4, 8), DType::F64, &dev).unwrap();
    assert!(error_of(nt_xent(&z, &wide, 0.5)).contains("widths differ"));
    assert!(error_of(nt_xent(&z, &short, 0.5)).contains("4 and 3 rows"));
    assert!(error_of(nt_xent(&flat, &flat, 0.5)).contains("2-D"));
    assert!(error_of(nt_xent(&one, &one, 0.5)).contains("at least 2"));
    assert!(error_of(nt_xent(&z, &f64z, 0.5)).contains("dtypes differ"));
    for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(error_of(nt_xent(&z, &z, t)).contains("temperature"), "t = {t}");
    }
    assert!(error_of(debiased_nt_xent(&z, &z, 0.5, 1.0)).contains("tau_plus"));
    assert!(error_of(hard_negative_nt_xent(&z, &z, 0.5, -1.0, 0.1)).contains("beta"));
    assert!(error_of(info_nce(&z, &short, None, 0.5)).contains("pair"));
    assert!(error_of(info_nce(&z, &z, Some(&wide), 0.5)).contains("widths differ"));
    let labels = Tensor::new(&[0i64, 1, 0], &dev).unwrap();
    assert!(error_of(supcon(&z, &labels, 0.5)).contains("labels must have shape (4,)"));
    let float_labels = Tensor::new(&[0f32, 1., 0., 1.], &dev).unwrap();
    assert!(error_of(supcon(&z, &float_labels, 0.5)).contains("u32 or i64"));
    let distinct = Tensor::new(&[0i64, 1, 2, 3], &dev).unwrap();
    assert!(error_of(supcon(&z, &distinct, 0.5)).contains("no anchor has a positive"));
    let mask = PairMask::joint(3);
    assert!(error_of(MaskedInfoNce::new(0.5).loss(&z, &z, &mask)).contains("4 x 4 mask"));
    let int = Tensor::zeros((4, 8), DType::U32, &dev).unwrap();
    assert!(error_of(nt_xent(&int, &int, 0.5)).contains("floating point"));
    let bf16 = z.to_dtype(DType::BF16).unwrap();
    let fused = MaskedInfoNce { kernel: Kernel::Fused, ..MaskedInfoNce::new(0.5) };
    assert!(error_of(fused.loss(&bf16, &bf16, &PairMask::joint(2))).contains("fused kernel needs"));
}
