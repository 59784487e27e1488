//! Golden values from the reference implementations (lightly, pytorch-metric-learning, and the
//! authors' code of SimCSE, debiased contrastive learning and HCL), computed in f64 by
//! `core/tests/golden/losses.py`; the lines that produce each value are quoted above its test.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{golden_fixture as fixture, scalar, tensor};
use contrastive_core::loss::*;

fn inputs(dtype: DType) -> (Tensor, Tensor, Tensor) {
    let (z1, z2, z3) = fixture();
    (tensor(&z1, dtype), tensor(&z2, dtype), tensor(&z3, dtype))
}

fn assert_golden(got: &Tensor, want: f64, dtype: DType) {
    let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
    let got = scalar(got);
    assert!((got - want).abs() <= tol * want.abs(), "{dtype:?}: got {got}, golden {want}");
}

// print("nt_xent_t05", NTXentLoss(temperature=0.5)(z1, z2).item())   # lightly.loss.NTXentLoss
// print("nt_xent_t01", NTXentLoss(temperature=0.1)(z1, z2).item())
#[test]
fn nt_xent_matches_lightly() {
    for dtype in [DType::F64, DType::F32] {
        let (z1, z2, _) = inputs(dtype);
        assert_golden(&nt_xent(&z1, &z2, 0.5).unwrap(), 2.9028556574017848, dtype);
        assert_golden(&nt_xent(&z1, &z2, 0.1).unwrap(), 6.816783866192559, dtype);
    }
}

// print("dcl_t01", DCLLoss(temperature=0.1, weight_fn=None)(z1, z2).item())   # lightly.loss.DCLLoss
#[test]
fn decoupled_matches_lightly_dcl() {
    for dtype in [DType::F64, DType::F32] {
        let (z1, z2, _) = inputs(dtype);
        assert_golden(&decoupled_nt_xent(&z1, &z2, 0.1).unwrap(), 6.738697364337135, dtype);
    }
}

// SimCSE's cl_forward (princeton-nlp/SimCSE, models.py):
// cos = torch.cat([F.cosine_similarity(z1.unsqueeze(1), z2.unsqueeze(0), dim=-1),
//                  F.cosine_similarity(z1.unsqueeze(1), z3.unsqueeze(0), dim=-1)], 1) / 0.05
// print("simcse_hard_t005", F.cross_entropy(cos, torch.arange(N)).item())
// cos = F.cosine_similarity(z1.unsqueeze(1), z2.unsqueeze(0), dim=-1) / 0.05
// print("simcse_t005", F.cross_entropy(cos, torch.arange(N)).item())
#[test]
fn info_nce_matches_simcse_with_and_without_hard_negatives() {
    for dtype in [DType::F64, DType::F32] {
        let (z1, z2, z3) = inputs(dtype);
        assert_golden(&info_nce(&z1, &z2, None, 0.05).unwrap(), 6.716046518990615, dtype);
        assert_golden(&info_nce(&z1, &z2, Some(&z3), 0.05).unwrap(), 7.510179116265718, dtype);
    }
}

// From chingyaoc/DCL and joshr17/HCL (main.py, criterion), as hcl_criterion in losses.py:
//   neg = exp(out @ out.T / t) without self and positive; pos = exp(sum(out_1 * out_2) / t)
//   imp = (beta * neg.log()).exp(); reweight_neg = (imp * neg).sum(-1) / imp.mean(-1)   # "hard"
//   Ng = (-tau_plus * N * pos + reweight_neg) / (1 - tau_plus)     # neg.sum(-1) for "easy"
//   Ng = clamp(Ng, min=N * e**(-1 / t)); loss = (-log(pos / (pos + Ng))).mean()
// print("debiased_t05_tp01", hcl_criterion(z1, z2, 0.1, N, 0.0, "easy", 0.5).item())
// print("debiased_t01_tp03", hcl_criterion(z1, z2, 0.3, N, 0.0, "easy", 0.1).item())
// print("hcl_t05_b1_tp01", hcl_criterion(z1, z2, 0.1, N, 1.0, "hard", 0.5).item())
// print("hcl_t02_b05_tp0", hcl_criterion(z1, z2, 0.0, N, 0.5, "hard", 0.2).item())
#[test]
fn debiased_and_hard_negative_match_the_authors_code() {
    for dtype in [DType::F64, DType::F32] {
        let (z1, z2, _) = inputs(dtype);
        assert_golden(&debiased_nt_xent(&z1, &z2, 0.5, 0.1).unwrap(), 2.923752565256882, dtype);
        assert_golden(&debiased_nt_xent(&z1, &z2, 0.1, 0.3).unwrap(), 6.925477500271147, dtype);
        assert_golden(&hard_negative_nt_xent(&z1, &z2, 0.5, 1.0, 0.1).unwrap(), 3.2201814719159594, dtype);
        assert_golden(&hard_negative_nt_xent(&z1, &z2, 0.2, 0.5, 0.0).unwrap(), 4.718781757893629, dtype);
    }
}

// labels = torch.tensor([0, 1, 0, 2, 1, 2])
// print("supcon_pml_t01", SupConLoss(temperature=0.1)(z1, labels).item())  # pytorch_metric_learning
// Khosla et al. (HobbitLong/SupContrast, losses.py), one view:
//   logits = f @ f.T / 0.1 - max; log_prob = logits - log((exp(logits) * not_self).sum(1))
//   print("supcon_khosla_t01", (-(same * log_prob).sum(1) / same.sum(1)).mean().item())
// Both printed 7.418406276313804.
#[test]
fn supcon_matches_pytorch_metric_learning_and_khosla() {
    for dtype in [DType::F64, DType::F32] {
        let (z1, _, _) = inputs(dtype);
        let labels = Tensor::new(&[0i64, 1, 0, 2, 1, 2], &Device::Cpu).unwrap();
        assert_golden(&supcon(&z1, &labels, 0.1).unwrap(), 7.418406276313804, dtype);
    }
}
