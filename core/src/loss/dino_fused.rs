//! DINO's cross-entropy between the teacher's centred, sharpened softmax and the student's
//! log-softmax, forward and backward as one candle custom op over the views stacked along rows.
//!
//! As tensor ops, the teacher costs a centring, a scale and a softmax (candle's, one libm `exp` at
//! a time), and each student view a scale, a log-softmax (four passes), a target sum, a product
//! and a sum, and autograd as many again: each a full pass over (B, prototypes) with its own
//! allocation. On the Fashion-MNIST DINO step (8 views of 256 x 2048) the loss took 55 ms of a
//! 480 ms step. Here the teacher's probabilities are one vectorised pass per row, kept for the
//! backward, and each student row one pass (log-sum-exp and a dot product with its target) forward
//! and one backward.
//!
//! With P_t = softmax((y_t - c)/τ_t), student row (s, i) has the target w = Σ_t P_ti - [s < T] P_si
//! (every teacher view but its own) and log Q = z/τ_s - lse(z/τ_s), so its term is
//! w·z/τ_s - (Σw)·lse and, with the loss's weight a = -1/(pairs·B), dL/dz = a (w - (Σw) Q)/τ_s.

use crate::kernel::{contiguous_slice, with_cpu_slice, KernelFloat};
use crate::with_kernel_float;
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use num_traits::Float;
use rayon::prelude::*;
use std::any::Any;
use std::sync::Mutex;

/// The op: the student's outputs (S·B, D), the teacher's (T·B, D; no gradient) and the centre
/// (1, D) in; the scalar loss out.
pub(super) struct DinoCrossEntropy {
    /// Rows per view (B).
    pub(super) rows: usize,
    /// 1/τ_s.
    pub(super) student_inv_temperature: f64,
    /// 1/τ_t at this step.
    pub(super) teacher_inv_temperature: f64,
    /// 1/(pairs·B): the mean over pairs of different views and rows.
    pub(super) weight: f64,
    /// The forward's [`Targets`], for the backward.
    saved: Mutex<Option<Box<dyn Any + Send>>>,
}

/// The teacher's side of every student row's target.
struct Targets<T> {
    /// P (T·B, D).
    probs: Vec<T>,
    /// Σ_t P_t (B, D).
    all: Vec<T>,
}

impl<T: KernelFloat> Targets<T> {
    /// Student row `r`'s target into `scratch` if it is a teacher view's (the sum less its own),
    /// else the sum itself; with its total.
    fn row<'a>(&'a self, rows: usize, dim: usize, r: usize, scratch: &'a mut [T]) -> (&'a [T], T) {
        let (s, i) = (r / rows, r % rows);
        let all = &self.all[i * dim..][..dim];
        let w: &[T] = match self.probs.get((s * rows + i) * dim..(s * rows + i + 1) * dim) {
            Some(own) => {
                scratch.iter_mut().zip(all).zip(own).for_each(|((w, &a), &p)| *w = a - p);
                scratch
            }
            None => all,
        };
        (w, w.iter().fold(T::zero(), |a, &b| a + b))
    }
}

impl DinoCrossEntropy {
    pub(super) fn new(rows: usize, student_temperature: f64, teacher_temperature: f64, pairs: usize) -> Self {
        Self {
            rows,
            student_inv_temperature: 1.0 / student_temperature,
            teacher_inv_temperature: 1.0 / teacher_temperature,
            weight: 1.0 / (pairs * rows) as f64,
            saved: Mutex::new(None),
        }
    }

    /// P = softmax((y - c)/τ_t) row by row, and the sum of its views.
    fn targets<T: KernelFloat>(&self, teacher: &[T], center: &[T]) -> Targets<T> {
        let dim = center.len();
        let inv_t = T::from(self.teacher_inv_temperature).unwrap_or_else(T::one);
        let mut probs = teacher.to_vec();
        probs.par_chunks_mut(dim).for_each(|row| {
            row.iter_mut().zip(center).for_each(|(v, &c)| *v = (*v - c) * inv_t);
            let max = row.iter().fold(T::neg_infinity(), |a, &b| Float::max(a, b));
            let sum = T::exp_shifted_sum(row, max);
            row.iter_mut().for_each(|v| *v /= sum);
        });
        let block = self.rows * dim;
        let mut all = vec![T::zero(); block];
        for view in probs.chunks(block) {
            all.iter_mut().zip(view).for_each(|(a, &p)| *a += p);
        }
        Targets { probs, all }
    }

    /// exp(z/τ_s - max) of a student row into `exps`; returns the max and their sum (the row's
    /// log-sum-exp is max + ln sum, its softmax `exps / sum`).
    fn exps<T: KernelFloat>(&self, z: &[T], exps: &mut [T]) -> (T, T) {
        let inv_t = T::from(self.student_inv_temperature).unwrap_or_else(T::one);
        exps.iter_mut().zip(z).for_each(|(e, &z)| *e = z * inv_t);
        let max = exps.iter().fold(T::neg_infinity(), |a, &b| Float::max(a, b));
        (max, T::exp_shifted_sum(exps, max))
    }

    fn forward<T: KernelFloat>(&self, z: &[T], targets: &Targets<T>, dim: usize) -> T {
        let inv_t = T::from(self.student_inv_temperature).unwrap_or_else(T::one);
        let terms: Vec<f64> = z
            .par_chunks(dim)
            .enumerate()
            .map_init(
                || (vec![T::zero(); dim], vec![T::zero(); dim]),
                |(scratch, exps), (r, zr)| {
                    let (max, sum) = self.exps(zr, exps);
                    let (w, w_sum) = targets.row(self.rows, dim, r, scratch);
                    let dot = w.iter().zip(zr).fold(T::zero(), |a, (&w, &z)| a + w * z);
                    WithDType::to_f64(dot * inv_t - w_sum * (max + sum.ln()))
                },
            )
            .collect();
        // Summed in order, in f64, so the result does not depend on the thread count.
        <T as WithDType>::from_f64(-terms.iter().sum::<f64>() * self.weight)
    }

    fn backward<T: KernelFloat>(&self, z: &[T], targets: &Targets<T>, dim: usize, grad: f64) -> Vec<T> {
        let a = T::from(-grad * self.weight * self.student_inv_temperature).unwrap_or_else(T::zero);
        let mut dz = vec![T::zero(); z.len()];
        dz.par_chunks_mut(dim).zip(z.par_chunks(dim)).enumerate().for_each_init(
            || vec![T::zero(); dim],
            |scratch, (r, (dr, zr))| {
                let (_, sum) = self.exps(zr, dr);
                let (w, w_sum) = targets.row(self.rows, dim, r, scratch);
                let q_scale = w_sum / sum;
                dr.iter_mut().zip(w).for_each(|(d, &w)| *d = a * (w - q_scale * *d));
            },
        );
        dz
    }

    /// The outputs' width, after checking the three shapes.
    fn check(&self, student: &Layout, teacher: &Layout, center: &Layout) -> Result<usize> {
        let whole = |n: usize| n % self.rows.max(1) == 0;
        match (student.dims(), teacher.dims(), center.dims()) {
            ([s, d], [t, d2], [1, d3]) if d == d2 && d == d3 && whole(*s) && whole(*t) => Ok(*d),
            (s, t, c) => bail!(
                "dino loss: student {s:?}, teacher {t:?} and centre {c:?}: views of {} rows of one width expected",
                self.rows
            ),
        }
    }
}

impl CustomOp3 for DinoCrossEntropy {
    fn name(&self) -> &'static str {
        "dino-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dim = self.check(l1, l2, l3)?;
        if s1.dtype() != s2.dtype() || s1.dtype() != s3.dtype() {
            bail!("dino loss: student, teacher and centre of one dtype expected");
        }
        with_kernel_float!(s1.dtype(), "dino loss", |T| {
            let slice = |s, l| contiguous_slice::<T>(s, l, "dino loss");
            let targets = self.targets(slice(s2, l2)?, slice(s3, l3)?);
            let loss = self.forward::<T>(slice(s1, l1)?, &targets, dim);
            *self.saved.lock().map_err(|_| candle_core::Error::Msg("dino loss: poisoned cache".into()))? =
                Some(Box::new(targets));
            Ok((T::to_cpu_storage_owned(vec![loss]), Shape::from(())))
        })
    }

    fn bwd(
        &self,
        student: &Tensor,
        teacher: &Tensor,
        center: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = grad_res.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        let z = student.contiguous()?;
        let dim = self.check(z.layout(), teacher.layout(), center.layout())?;
        let cached = self.saved.lock().ok().and_then(|mut s| s.take());
        let dz = with_kernel_float!(z.dtype(), "dino loss", |T| {
            // What the forward kept, or recomputed (a second backward through one graph).
            let targets = match cached.and_then(|b| b.downcast::<Targets<T>>().ok()) {
                Some(t) => *t,
                None => with_cpu_slice(&teacher.contiguous()?, "dino loss", |y: &[T]| {
                    with_cpu_slice(&center.contiguous()?, "dino loss", |c: &[T]| self.targets(y, c))
                })??,
            };
            let dz = with_cpu_slice(&z, "dino loss", |z: &[T]| self.backward(z, &targets, dim, g))?;
            Tensor::from_vec(dz, z.dims(), z.device())?
        });
        Ok((Some(dz), None, None))
    }
}
