//! The InfoNCE family, written once as a masked InfoNCE over a [`PairMask`].
//!
//! For anchor i with positives P_i and negatives N_i, and logits s_ij = cos(a_i, c_j)/τ:
//!
//! ```text
//! loss_i = log Σ_{j ∈ D_i} exp(s_ij)  -  (1/|P_i|) Σ_{p ∈ P_i} s_ip
//! ```
//!
//! where the denominator D_i is P_i ∪ N_i ([`Denominator::WithPositives`]) or N_i alone
//! ([`Denominator::NegativesOnly`]), and the negatives' term may be replaced by the debiased or
//! hard-negative estimators ([`NegativeEstimator`]). The loss is the mean over anchors that have a
//! positive; a batch where none has one is an error. Everything runs in the log domain with the
//! row maximum subtracted, and masked pairs get a large finite negative, so the loss and its
//! gradient stay finite at τ = 0.01 with inputs of any norm.
//!
//! The named losses are presets of it:
//!
//! | function | paper | anchors vs candidates | denominator |
//! | --- | --- | --- | --- |
//! | [`nt_xent`] | SimCLR, Chen et al. 2020 (arXiv:2002.05709) | joint, 2N-2 negatives | with positive |
//! | [`info_nce`] | CPC / MoCo / SimCSE (arXiv:1807.03748, 1911.05722, 2104.08821) | cross-view, N-1 (+ extra) negatives | with positive |
//! | [`decoupled_nt_xent`] | DCL, Yeh et al. 2021 (arXiv:2110.06848) | joint | negatives only |
//! | [`debiased_nt_xent`] | Chuang et al. 2020 (arXiv:2007.00224) | joint | debiased estimator |
//! | [`hard_negative_nt_xent`] | HCL, Robinson et al. 2021 (arXiv:2010.04592) | joint | reweighted estimator |
//! | [`supcon`] | SupCon, Khosla et al. 2020 (arXiv:2004.11362) | same-label positives | with positives |
//!
//! On the CPU, f32 and f64, the plain estimator runs as one fused custom op (see [`Kernel`]);
//! elsewhere as a chain of tensor ops, which is also kept as the reference.
//!
//! [`clip_loss`] (CLIP's symmetric form with a learnable temperature) stands beside them: its
//! temperature is a variable, so it is written with tensor ops.
//!
//! The non-contrastive losses, which need no negatives, stand apart, one file each, in tensor
//! ops (any device; DINO's cross-entropy also as one fused CPU op):
//!
//! | function | paper | what prevents collapse |
//! | --- | --- | --- |
//! | [`negative_cosine`] | BYOL, Grill et al. 2020 (arXiv:2006.07733); SimSiam, Chen and He 2021 (arXiv:2011.10566) | a target without gradient (momentum network, stop-gradient) and a predictor |
//! | [`barlow_twins`] | Barlow Twins, Zbontar et al. 2021 (arXiv:2103.03230) | decorrelated dimensions (cross-correlation to the identity) |
//! | [`vicreg`] | VICReg, Bardes et al. 2022 (arXiv:2105.04906) | each dimension's variance held up, covariances down |
//! | [`DinoLoss`] | DINO, Caron et al. 2021 (arXiv:2104.14294) | the teacher centred and sharpened |
//!
//! Deviation: SupCon's reference code counts anchors without positives in the mean with a loss
//! of 0; here they are left out of the mean, as for every other preset.

mod barlow_twins;
mod clip;
mod composite;
mod dino;
mod dino_fused;
mod fused;
mod negative_cosine;
mod vicreg;

pub use barlow_twins::{barlow_twins, BARLOW_TWINS_LAMBDA};
pub use clip::clip_loss;
pub use dino::{DinoLoss, DinoLossConfig};
pub use negative_cosine::negative_cosine;
pub use vicreg::{vicreg, VicRegWeights};

use crate::sampling::{labels_to_vec, PairMask};
use crate::similarity::check_pair;
use candle_core::{bail, Result, Tensor};

/// Which candidates make up the denominator of an anchor's softmax.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Denominator {
    /// Positives and negatives (InfoNCE, NT-Xent, SupCon).
    #[default]
    WithPositives,
    /// Negatives only (decoupled contrastive learning; GraphCL's loss).
    NegativesOnly,
}

/// How the negatives' share of the denominator is estimated.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum NegativeEstimator {
    /// Σ_{j ∈ N_i} exp(s_ij).
    #[default]
    Plain,
    /// Chuang et al. 2020: (Σ_N e^s - τ⁺ |N| mean_P e^s) / (1 - τ⁺), clamped below at
    /// |N| e^{-1/t}. `tau_plus` is the class prior, in [0, 1).
    Debiased {
        /// Prior probability that a "negative" shares the anchor's class.
        tau_plus: f64,
    },
    /// Robinson et al. 2021: the debiased estimator over negatives reweighted by e^{β s}.
    HardNegative {
        /// Concentration on hard negatives (0 gives the debiased estimator).
        beta: f64,
        /// Class prior, as in `Debiased`.
        tau_plus: f64,
    },
}

/// Which implementation computes the loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernel {
    /// The fused custom op where it applies (CPU, f32/f64, plain estimator), else composite.
    #[default]
    Auto,
    /// The fused custom op; an error where it does not apply.
    Fused,
    /// The chain of candle tensor ops (any device, dtype and estimator).
    Composite,
}

/// A masked InfoNCE: the one loss every preset is built from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskedInfoNce {
    /// Softmax temperature τ, > 0.
    pub temperature: f64,
    /// What the softmax denominator holds.
    pub denominator: Denominator,
    /// How the negatives' term is estimated.
    pub estimator: NegativeEstimator,
    /// Which implementation runs.
    pub kernel: Kernel,
}

impl MaskedInfoNce {
    /// Plain InfoNCE with positives in the denominator.
    pub fn new(temperature: f64) -> Self {
        Self {
            temperature,
            denominator: Denominator::WithPositives,
            estimator: NegativeEstimator::Plain,
            kernel: Kernel::Auto,
        }
    }

    /// The mean loss over anchors with a positive. `anchors` is (M, D), `candidates` (K, D), the
    /// mask M x K. Pass the same tensor twice when the anchors are the candidates (joint layout,
    /// SupCon): the fused kernel then needs one matrix product less in the backward pass.
    pub fn loss(&self, anchors: &Tensor, candidates: &Tensor, mask: &PairMask) -> Result<Tensor> {
        let (m, k, _) = check_pair("masked InfoNCE", anchors, candidates)?;
        self.validate(m, k, mask)?;
        self.loss_of_checked(anchors, candidates, mask)
    }

    /// [`MaskedInfoNce::loss`] of inputs already checked where they entered (a preset checks its
    /// own shapes and builds the mask from them), so no pair is checked twice on its way.
    fn loss_of_checked(&self, anchors: &Tensor, candidates: &Tensor, mask: &PairMask) -> Result<Tensor> {
        if self.use_fused(anchors)? {
            let op = fused::FusedInfoNce::new(mask.clone(), self.denominator, self.temperature);
            let shared = anchors.id() == candidates.id();
            let anchors = anchors.contiguous()?;
            return if shared { anchors.apply_op1(op) } else { anchors.apply_op2(&candidates.contiguous()?, op) };
        }
        composite::mean_over_valid(&composite::per_anchor(self, anchors, candidates, mask)?, mask)
    }

    /// The loss of every anchor, (M,), by the composite form. Anchors without a positive get a
    /// finite value that [`MaskedInfoNce::loss`] leaves out of its mean.
    pub fn per_anchor(&self, anchors: &Tensor, candidates: &Tensor, mask: &PairMask) -> Result<Tensor> {
        let (m, k, _) = check_pair("masked InfoNCE", anchors, candidates)?;
        self.validate(m, k, mask)?;
        composite::per_anchor(self, anchors, candidates, mask)
    }

    fn use_fused(&self, anchors: &Tensor) -> Result<bool> {
        // An explicit `Kernel::Fused` runs wherever the kernel can; `Auto` also yields to a forced
        // generic path (`contrastive_core::kernel::set_generic_ops`).
        let applies = matches!(anchors.device(), candle_core::Device::Cpu)
            && matches!(anchors.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
            && self.estimator == NegativeEstimator::Plain;
        match self.kernel {
            Kernel::Auto => Ok(applies && crate::kernel::runs_kernel(anchors)),
            Kernel::Composite => Ok(false),
            Kernel::Fused if applies => Ok(true),
            Kernel::Fused => bail!(
                "masked InfoNCE: the fused kernel needs CPU f32/f64 input and the plain estimator, got {:?} {:?} with {:?}",
                anchors.device().location(),
                anchors.dtype(),
                self.estimator
            ),
        }
    }

    /// Checks the settings, and the mask against `m` anchors and `k` candidates whose shapes
    /// were checked by the caller.
    fn validate(&self, m: usize, k: usize, mask: &PairMask) -> Result<()> {
        let t = self.temperature;
        if !(t.is_finite() && t > 0.0) {
            bail!("masked InfoNCE: temperature must be finite and > 0, got {t}");
        }
        match self.estimator {
            NegativeEstimator::Plain => {}
            NegativeEstimator::Debiased { tau_plus } => check_tau_plus(tau_plus)?,
            NegativeEstimator::HardNegative { beta, tau_plus } => {
                check_tau_plus(tau_plus)?;
                if !(beta.is_finite() && beta >= 0.0) {
                    bail!("hard-negative estimator: beta must be finite and >= 0, got {beta}");
                }
            }
        }
        if (m, k) != (mask.rows(), mask.cols()) {
            bail!(
                "masked InfoNCE: {m} anchors and {k} candidates need a {m} x {k} mask, got {} x {}",
                mask.rows(),
                mask.cols()
            );
        }
        let positives = mask.positive_counts();
        if positives.iter().all(|&p| p == 0) {
            bail!("masked InfoNCE: no anchor has a positive in this batch");
        }
        let negatives = mask.negative_counts();
        if let Some(i) = (0..m).find(|&i| positives[i] > 0 && negatives[i] == 0 && self.needs_negatives()) {
            bail!("masked InfoNCE: anchor {i} has no negative, which this loss needs");
        }
        Ok(())
    }

    fn needs_negatives(&self) -> bool {
        self.denominator == Denominator::NegativesOnly || self.estimator != NegativeEstimator::Plain
    }
}

/// ‖aᵀ b‖², the squared Frobenius norm of the (D, D) cross-product of two (N, D) matrices. When
/// the batch is narrower than the embedding (N < D) it goes through the (N, N) Gram matrices,
/// ‖aᵀb‖² = tr(bᵀ a aᵀ b) = Σ (a aᵀ) ⊙ (b bᵀ): Barlow Twins' 2048-wide correlation over a batch of
/// 256 then costs two 256 x 256 products instead of a 2048 x 2048 one and its squares (one when
/// `a` and `b` are the same tensor, as VICReg's covariance term passes).
fn cross_product_norm_sq(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (n, d) = a.dims2()?;
    if n < d {
        let gram_a = a.matmul(&a.t()?)?;
        let gram_b = if a.id() == b.id() { gram_a.clone() } else { b.matmul(&b.t()?)? };
        (gram_a * gram_b)?.sum_all()
    } else {
        a.t()?.matmul(b)?.sqr()?.sum_all()
    }
}

fn check_tau_plus(tau_plus: f64) -> Result<()> {
    if !(0.0..1.0).contains(&tau_plus) {
        bail!("debiased estimator: tau_plus must be in [0, 1), got {tau_plus}");
    }
    Ok(())
}

/// Checks two views (N, D) of N >= 2 samples and stacks them into (2N, D).
fn stack_views(what: &str, z1: &Tensor, z2: &Tensor) -> Result<(Tensor, usize)> {
    let (n, n2, _) = check_pair(what, z1, z2)?;
    if n != n2 {
        bail!("{what}: the views have {n} and {n2} rows; both must hold the same N samples");
    }
    if n < 2 {
        bail!("{what}: needs at least 2 samples per view to have a negative, got {n}");
    }
    Ok((Tensor::cat(&[z1, z2], 0)?, n))
}

fn joint(what: &str, z1: &Tensor, z2: &Tensor, spec: MaskedInfoNce) -> Result<Tensor> {
    let (z, n) = stack_views(what, z1, z2)?;
    let mask = PairMask::joint(n);
    spec.validate(2 * n, 2 * n, &mask)?;
    spec.loss_of_checked(&z, &z, &mask)
}

/// SimCLR's NT-Xent: both views are anchors, each against its other view (positive) and the
/// 2N - 2 other embeddings (negatives). `z1`, `z2`: (N, D). Returns a scalar.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let z1 = Tensor::new(&[[1.0f32, 0.0], [0.0, 1.0]], &Device::Cpu)?;
/// let z2 = Tensor::new(&[[0.9f32, 0.1], [0.1, 0.9]], &Device::Cpu)?;
/// let loss = contrastive_core::loss::nt_xent(&z1, &z2, 0.5)?.to_scalar::<f32>()?;
/// assert!(loss > 0.0 && loss < (3.0f32).ln()); // better than chance: ln(2N - 1)
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn nt_xent(z1: &Tensor, z2: &Tensor, temperature: f64) -> Result<Tensor> {
    joint("nt_xent", z1, z2, MaskedInfoNce::new(temperature))
}

/// One-directional InfoNCE: row i of `query` (N, D) against row i of `positive` (N, D) as its
/// positive; the other rows of `positive` and all rows of `negatives` (Q, D), if given, are its
/// negatives (a MoCo queue, SimCSE's hard negatives). Returns a scalar.
pub fn info_nce(query: &Tensor, positive: &Tensor, negatives: Option<&Tensor>, temperature: f64) -> Result<Tensor> {
    let (n, n2, _) = check_pair("info_nce", query, positive)?;
    if n != n2 {
        bail!("info_nce: query has {n} rows and positive {n2}; row i of each must form a pair");
    }
    let extra = match negatives {
        Some(neg) => check_pair("info_nce negatives", query, neg)?.1,
        None => 0,
    };
    if n + extra < 2 {
        bail!("info_nce: needs at least 2 candidates to have a negative, got {}", n + extra);
    }
    let mask = PairMask::cross_view(n).with_extra_negatives(extra);
    let candidates = match negatives {
        Some(neg) => Tensor::cat(&[positive, neg], 0)?,
        None => positive.clone(),
    };
    let spec = MaskedInfoNce::new(temperature);
    spec.validate(n, n + extra, &mask)?;
    spec.loss_of_checked(query, &candidates, &mask)
}

/// Decoupled NT-Xent (Yeh et al. 2021): NT-Xent with the positive removed from the denominator;
/// GraphCL's loss has this form.
pub fn decoupled_nt_xent(z1: &Tensor, z2: &Tensor, temperature: f64) -> Result<Tensor> {
    let spec = MaskedInfoNce { denominator: Denominator::NegativesOnly, ..MaskedInfoNce::new(temperature) };
    joint("decoupled_nt_xent", z1, z2, spec)
}

/// Debiased NT-Xent (Chuang et al. 2020) with class prior `tau_plus` in [0, 1); 0 gives NT-Xent.
pub fn debiased_nt_xent(z1: &Tensor, z2: &Tensor, temperature: f64, tau_plus: f64) -> Result<Tensor> {
    let spec = MaskedInfoNce { estimator: NegativeEstimator::Debiased { tau_plus }, ..MaskedInfoNce::new(temperature) };
    joint("debiased_nt_xent", z1, z2, spec)
}

/// Hard-negative NT-Xent (Robinson et al. 2021, HCL) with concentration `beta` >= 0 and class
/// prior `tau_plus` in [0, 1); beta = 0 gives the debiased loss.
pub fn hard_negative_nt_xent(z1: &Tensor, z2: &Tensor, temperature: f64, beta: f64, tau_plus: f64) -> Result<Tensor> {
    let spec = MaskedInfoNce {
        estimator: NegativeEstimator::HardNegative { beta, tau_plus },
        ..MaskedInfoNce::new(temperature)
    };
    joint("hard_negative_nt_xent", z1, z2, spec)
}

/// Supervised contrastive loss (Khosla et al. 2020, L_out): `z` (N, D), `labels` (N,) u32 or
/// i64; samples with equal labels are positives, the denominator holds every other sample.
pub fn supcon(z: &Tensor, labels: &Tensor, temperature: f64) -> Result<Tensor> {
    let n = match z.dims() {
        [n, _] => *n,
        other => bail!("supcon: embeddings must be 2-D (N, D), got shape {other:?}"),
    };
    if n < 2 {
        bail!("supcon: needs at least 2 samples, got {n}");
    }
    let labels = labels_to_vec("supcon", labels, n)?;
    MaskedInfoNce::new(temperature).loss(z, z, &PairMask::supervised(&labels))
}
