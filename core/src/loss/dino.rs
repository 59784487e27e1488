//! DINO's self-distillation loss (Caron et al. 2021, arXiv:2104.14294): the student's softmax over
//! `output_dim` prototypes matches the teacher's, centred and sharpened, across views:
//!
//! ```text
//! P_t = softmax((g_teacher(x_t) - c) / τ_t)        teacher, global views t, no gradient
//! log Q_s = log_softmax(g_student(x_s) / τ_s)      student, every view s (global then local)
//! loss = -(1 / (B · #pairs)) Σ_{t ≠ s} Σ_rows P_t · log Q_s
//! c ← m c + (1 - m) mean(teacher outputs)          after each step
//! ```
//!
//! Centring (subtracting `c`) keeps one prototype from dominating, sharpening (τ_t < τ_s) keeps
//! the teacher from going uniform: together they prevent collapse. The teacher temperature warms
//! up linearly from `warmup_teacher_temp` to `teacher_temp` over the first
//! `warmup_teacher_temp_epochs` epochs. Pairs skip a view with itself: the teacher's views must be
//! the student's first views. Defaults are lightly's `DINOLoss`'s (the paper's with τ_t 0.04
//! throughout).
//!
//! On the CPU (f32, f64) the cross-entropy runs as one fused op (`dino_fused.rs`); elsewhere as
//! tensor ops.

use super::dino_fused::DinoCrossEntropy;
use crate::collective::Collective;
use crate::kernel::runs_kernel;
use candle_core::{bail, DType, Device, Result, Tensor, D};

/// DINO's loss settings.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DinoLossConfig {
    /// Prototypes: the heads' output width.
    pub output_dim: usize,
    /// The teacher's temperature at epoch 0.
    pub warmup_teacher_temp: f64,
    /// The teacher's temperature after the warm-up.
    pub teacher_temp: f64,
    /// Epochs of the linear warm-up (0: `teacher_temp` from the start).
    pub warmup_teacher_temp_epochs: usize,
    /// The student's temperature.
    pub student_temp: f64,
    /// The centre's momentum m.
    pub center_momentum: f64,
}

impl Default for DinoLossConfig {
    fn default() -> Self {
        Self {
            output_dim: 65536,
            warmup_teacher_temp: 0.04,
            teacher_temp: 0.04,
            warmup_teacher_temp_epochs: 30,
            student_temp: 0.1,
            center_momentum: 0.9,
        }
    }
}

/// The DINO loss with its centre (state: checkpoint it with [`DinoLoss::center`]).
#[derive(Clone, Debug)]
pub struct DinoLoss {
    config: DinoLossConfig,
    center: Tensor,
}

impl DinoLoss {
    /// A loss whose centre starts at zero, in `dtype` on `device`; the settings are checked.
    pub fn new(config: DinoLossConfig, dtype: DType, device: &Device) -> Result<Self> {
        let c = &config;
        if c.output_dim == 0 {
            bail!("dino_loss.output_dim: must be at least 1");
        }
        for (name, t) in [
            ("warmup_teacher_temp", c.warmup_teacher_temp),
            ("teacher_temp", c.teacher_temp),
            ("student_temp", c.student_temp),
        ] {
            if !(t.is_finite() && t > 0.0) {
                bail!("dino_loss.{name}: must be finite and > 0, got {t}");
            }
        }
        if !(0.0..=1.0).contains(&c.center_momentum) {
            bail!("dino_loss.center_momentum: must be in [0, 1], got {}", c.center_momentum);
        }
        Ok(Self { config, center: Tensor::zeros((1, c.output_dim), dtype, device)? })
    }

    /// The settings.
    pub fn config(&self) -> &DinoLossConfig {
        &self.config
    }

    /// The centre, (1, output_dim).
    pub fn center(&self) -> &Tensor {
        &self.center
    }

    /// Restores a centre (from a checkpoint); its shape must be (1, output_dim).
    pub fn set_center(&mut self, center: Tensor) -> Result<()> {
        if center.dims() != [1, self.config.output_dim] {
            bail!("dino_loss: a centre of shape {:?}, expected [1, {}]", center.dims(), self.config.output_dim);
        }
        self.center = center.to_dtype(self.center.dtype())?.to_device(self.center.device())?;
        Ok(())
    }

    /// The teacher's temperature at `epoch` (0-based): linear from the warm-up value to
    /// `teacher_temp` over the warm-up epochs (the last of them at `teacher_temp`), then constant.
    pub fn teacher_temperature(&self, epoch: usize) -> f64 {
        let c = &self.config;
        let warmup = c.warmup_teacher_temp_epochs;
        if epoch >= warmup {
            return c.teacher_temp;
        }
        if warmup == 1 {
            return c.warmup_teacher_temp;
        }
        c.warmup_teacher_temp + (c.teacher_temp - c.warmup_teacher_temp) * epoch as f64 / (warmup - 1) as f64
    }

    /// The loss of the teacher's outputs for its views (each (B, output_dim), the student's first
    /// views) and the student's for every view, at `epoch`. Does not move the centre: call
    /// [`DinoLoss::update_center`] with the same teacher outputs after.
    pub fn loss(&self, teacher: &[Tensor], student: &[Tensor], epoch: usize) -> Result<Tensor> {
        let (rows, dim) = self.check("loss", teacher)?;
        let (student_rows, student_dim) = self.check("loss", student)?;
        if (student_rows, student_dim) != (rows, dim) {
            bail!("dino_loss: teacher views of {rows} x {dim}, student views of {student_rows} x {student_dim}");
        }
        let stack = |views: &[Tensor]| if views.len() == 1 { Ok(views[0].clone()) } else { Tensor::cat(views, 0) };
        self.stacked_loss(&stack(teacher)?, teacher.len(), &stack(student)?, student.len(), rows, epoch)
    }

    /// [`DinoLoss::loss`] of views stacked along rows: `teacher` holds the teacher's
    /// `teacher_views` views, (T·B, output_dim), `student` every student view in the same order,
    /// (S·B, output_dim), the teacher's views first. The DINO method runs its heads once over the
    /// stacked views and hands them here unsplit.
    pub fn loss_stacked(
        &self,
        teacher: &Tensor,
        teacher_views: usize,
        student: &Tensor,
        epoch: usize,
    ) -> Result<Tensor> {
        let dim = self.config.output_dim;
        let (teacher_rows, student_rows) = match (teacher.dims(), student.dims()) {
            (&[t, d1], &[s, d2]) if d1 == dim && d2 == dim => (t, s),
            (t, s) => bail!("dino_loss: stacked teacher {t:?} and student {s:?}; both must be (views x B, {dim})"),
        };
        if teacher_views == 0 || teacher_rows % teacher_views != 0 || teacher_rows == 0 {
            bail!("dino_loss: {teacher_rows} teacher rows do not split into {teacher_views} views of one size");
        }
        let rows = teacher_rows / teacher_views;
        if student_rows % rows != 0 || student_rows == 0 {
            bail!("dino_loss: {student_rows} student rows are not whole views of the teacher's {rows} rows");
        }
        self.stacked_loss(teacher, teacher_views, student, student_rows / rows, rows, epoch)
    }

    fn stacked_loss(
        &self,
        teacher: &Tensor,
        teacher_views: usize,
        student: &Tensor,
        student_views: usize,
        rows: usize,
        epoch: usize,
    ) -> Result<Tensor> {
        let pairs = teacher_views * student_views - teacher_views.min(student_views);
        if pairs == 0 {
            bail!(
                "dino_loss: {teacher_views} teacher and {student_views} student views make no pair of different views"
            );
        }
        let temp = self.teacher_temperature(epoch);
        let teacher = teacher.detach();
        if runs_kernel(student) && teacher.dtype() == student.dtype() {
            let op = DinoCrossEntropy::new(rows, self.config.student_temp, temp, pairs);
            return student.contiguous()?.apply_op3(&teacher.contiguous()?, &self.center, op);
        }
        let probs = candle_nn::ops::softmax_last_dim(&(teacher.broadcast_sub(&self.center)? / temp)?)?;
        let view = |x: &Tensor, v: usize| x.narrow(0, v * rows, rows);
        let probs: Vec<Tensor> = (0..teacher_views).map(|t| view(&probs, t)).collect::<Result<_>>()?;
        // Σ_{t ≠ s} P_t · log Q_s = Σ_s (Σ_t P_t - P_s [s is a teacher view]) · log Q_s.
        let all = probs.iter().skip(1).try_fold(probs[0].clone(), |sum, p| sum + p)?;
        let mut total = Tensor::zeros((), student.dtype(), student.device())?;
        for s in 0..student_views {
            let log_q = candle_nn::ops::log_softmax(&(view(student, s)? / self.config.student_temp)?, D::Minus1)?;
            let targets = match probs.get(s) {
                Some(own) => (&all - own)?,
                None => all.clone(),
            };
            total = (total + (targets * log_q)?.sum_all()?)?;
        }
        total.neg()? / (pairs * rows) as f64
    }

    /// Moves the centre towards the mean of the teacher's outputs (over every process's rows when
    /// `collective` has several).
    pub fn update_center(&mut self, teacher: &[Tensor], collective: &dyn Collective) -> Result<()> {
        let (rows, _) = self.check("update_center", teacher)?;
        let mut sum =
            teacher.iter().try_fold(self.center.zeros_like()?, |acc, t| acc + t.detach().sum_keepdim(0)?)?;
        let mut count = (rows * teacher.len()) as f32;
        if collective.world_size() > 1 {
            // The exchange is in f32 (the centre is a moving average; f32 is plenty).
            let mut values = sum.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            values.push(count);
            collective.all_reduce_sum(&mut values).map_err(candle_core::Error::wrap)?;
            count = values.pop().unwrap_or(count);
            sum = Tensor::from_vec(values, self.center.dims(), self.center.device())?.to_dtype(self.center.dtype())?;
        }
        let mean = (sum / count as f64)?;
        let m = self.config.center_momentum;
        self.center = ((&self.center * m)? + (mean * (1.0 - m))?)?;
        Ok(())
    }

    /// Checks every view is (B, output_dim) with the same B; returns (B, output_dim).
    fn check(&self, what: &str, views: &[Tensor]) -> Result<(usize, usize)> {
        let Some(first) = views.first() else { bail!("dino_loss.{what}: no views") };
        let dims = first.dims().to_vec();
        for (i, v) in views.iter().enumerate() {
            if v.rank() != 2 || v.dims() != dims.as_slice() || v.dim(1)? != self.config.output_dim {
                bail!(
                    "dino_loss.{what}: view {i} has shape {:?}; every view must be (B, {}) with the first's B ({:?})",
                    v.dims(),
                    self.config.output_dim,
                    dims
                );
            }
        }
        Ok((dims[0], dims[1]))
    }
}
