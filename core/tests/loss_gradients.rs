//! Finite-difference checks in f64 of every loss, fused and composite, against `backward()`.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{finite_differences, max_abs_diff, random_rows, rows_of, scalar, tensor, Rows};
use contrastive_core::loss::*;
use contrastive_core::sampling::{HardNegativeMiner, PairMask};

/// Checks the gradient of `f` with respect to each of its inputs against central differences.
fn check(what: &str, inputs: &[Rows], f: impl Fn(&[Tensor]) -> Tensor) {
    let vars: Vec<Var> = inputs.iter().map(|r| Var::from_tensor(&tensor(r, DType::F64)).unwrap()).collect();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let grads = f(&tensors).backward().unwrap();
    for (k, var) in vars.iter().enumerate() {
        let analytic = rows_of(grads.get(var).unwrap());
        let numeric = finite_differences(&inputs[k], 1e-6, |x| {
            let mut ts: Vec<Tensor> = inputs.iter().map(|r| tensor(r, DType::F64)).collect();
            ts[k] = tensor(x, DType::F64);
            scalar(&f(&ts))
        });
        let scale = numeric.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-3);
        let err = max_abs_diff(&analytic, &numeric);
        assert!(err < 1e-6 * scale.max(1.0), "{what}, input {k}: max error {err} (gradient scale {scale})");
        assert!(analytic.iter().flatten().any(|g| g.abs() > 1e-9), "{what}: gradient of input {k} is all zero");
    }
}

fn joint_spec(kernel: Kernel, denominator: Denominator, estimator: NegativeEstimator) -> impl Fn(&[Tensor]) -> Tensor {
    move |z: &[Tensor]| {
        let all = Tensor::cat(&[&z[0], &z[1]], 0).unwrap();
        let spec = MaskedInfoNce { kernel, denominator, estimator, ..MaskedInfoNce::new(0.3) };
        spec.loss(&all, &all, &PairMask::joint(z[0].dims()[0])).unwrap()
    }
}

#[test]
fn joint_losses_fused_and_composite() {
    let views = [random_rows(1, 5, 4, 1.0), random_rows(2, 5, 4, 1.0)];
    for kernel in [Kernel::Fused, Kernel::Composite] {
        for denominator in [Denominator::WithPositives, Denominator::NegativesOnly] {
            check(
                &format!("{kernel:?} {denominator:?}"),
                &views,
                joint_spec(kernel, denominator, NegativeEstimator::Plain),
            );
        }
    }
    check(
        "debiased",
        &views,
        joint_spec(Kernel::Composite, Denominator::WithPositives, NegativeEstimator::Debiased { tau_plus: 0.1 }),
    );
    check(
        "hard negatives",
        &views,
        joint_spec(
            Kernel::Composite,
            Denominator::WithPositives,
            NegativeEstimator::HardNegative { beta: 1.0, tau_plus: 0.1 },
        ),
    );
}

#[test]
fn public_presets() {
    let views = [random_rows(3, 4, 3, 1.0), random_rows(4, 4, 3, 1.0)];
    check("nt_xent", &views, |z| nt_xent(&z[0], &z[1], 0.5).unwrap());
    check("decoupled_nt_xent", &views, |z| decoupled_nt_xent(&z[0], &z[1], 0.5).unwrap());
    check("debiased_nt_xent", &views, |z| debiased_nt_xent(&z[0], &z[1], 0.5, 0.2).unwrap());
    check("hard_negative_nt_xent", &views, |z| hard_negative_nt_xent(&z[0], &z[1], 0.5, 0.5, 0.1).unwrap());
    check("info_nce", &views, |z| info_nce(&z[0], &z[1], None, 0.2).unwrap());
    let with_queue = [random_rows(5, 4, 3, 1.0), random_rows(6, 4, 3, 1.0), random_rows(7, 6, 3, 1.0)];
    check("info_nce with negatives", &with_queue, |z| info_nce(&z[0], &z[1], Some(&z[2]), 0.2).unwrap());
    let labels = Tensor::new(&[0u32, 1, 0, 1, 2, 2, 0], &Device::Cpu).unwrap();
    check("supcon", &[random_rows(8, 7, 3, 1.0)], |z| supcon(&z[0], &labels, 0.2).unwrap());
}

#[test]
fn cross_view_dense_mask_fused_and_composite() {
    // A mined mask: dense, with excluded pairs, anchors distinct from candidates (binary op).
    let inputs = [random_rows(9, 5, 4, 1.0), random_rows(10, 8, 4, 1.0)];
    let base = PairMask::cross_view(5).with_extra_negatives(3);
    let sim = contrastive_core::similarity::Similarity::Cosine
        .matrix(&tensor(&inputs[0], DType::F64), &tensor(&inputs[1], DType::F64))
        .unwrap();
    let mask = HardNegativeMiner { k: 3, false_negative_margin: None }.mine(&base, &sim).unwrap();
    for kernel in [Kernel::Fused, Kernel::Composite] {
        for denominator in [Denominator::WithPositives, Denominator::NegativesOnly] {
            let spec = MaskedInfoNce { kernel, denominator, ..MaskedInfoNce::new(0.25) };
            check(&format!("mined {kernel:?} {denominator:?}"), &inputs, |z| spec.loss(&z[0], &z[1], &mask).unwrap());
        }
    }
}
