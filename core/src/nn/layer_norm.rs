//! A LayerNorm whose gradients flow. candle-nn's LayerNorm takes a fused path with no backward,
//! so gradients silently stop at it; this one is a custom op with its own fused backward on the
//! CPU (f32, f64), and the composite form (tensor ops, autograd) elsewhere.

use crate::kernel::KernelFloat;
use crate::kernel::{contiguous_slice, with_cpu_slice};
use crate::with_kernel_float;
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Module, Result, Shape, Tensor, WithDType, D};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;

/// Layer normalisation over the last dimension, with a learned scale and shift.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// From existing weight and bias (H,).
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        Self { weight, bias, eps }
    }

    /// The scale (H,).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The shift (H,).
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// The composite form, for reference and for devices without the fused op.
    pub fn forward_composite(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

/// A LayerNorm of width `size` with variables `weight` (ones) and `bias` (zeros) under `vb`.
pub fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    let weight = vb.get_with_hints(size, "weight", Init::Const(1.0))?;
    let bias = vb.get_with_hints(size, "bias", Init::Const(0.0))?;
    Ok(LayerNorm { weight, bias, eps })
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = x.dim(D::Minus1)?;
        if self.weight.dims() != [h] || self.bias.dims() != [h] {
            bail!("LayerNorm: input width {h}, weight {:?}, bias {:?}", self.weight.dims(), self.bias.dims());
        }
        let fused = crate::kernel::runs_kernel(x) && self.weight.dtype() == x.dtype() && self.bias.dtype() == x.dtype();
        if !fused {
            return self.forward_composite(x);
        }
        x.contiguous()?.apply_op3(&self.weight.contiguous()?, &self.bias.contiguous()?, LayerNormOp { eps: self.eps })
    }
}

struct LayerNormOp {
    eps: f64,
}

/// Rows per task: fixed, so that the order of the weight-gradient sums, and so the result, does
/// not depend on the thread count.
const ROWS_PER_TASK: usize = 16;

fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    contiguous_slice(s, l, "LayerNorm")
}

/// Σ f(i) for i < n with eight independent accumulators: a single running sum is bound by the
/// latency of each addition, eight keep the floating-point units busy.
#[inline(always)]
fn lane_sum<T: KernelFloat>(n: usize, f: impl Fn(usize) -> T) -> T {
    let mut acc = [T::zero(); 8];
    let full = n / 8 * 8;
    for i in (0..full).step_by(8) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += f(i + l);
        }
    }
    let mut sum = acc.iter().fold(T::zero(), |s, &v| s + v);
    for i in full..n {
        sum += f(i);
    }
    sum
}

/// Mean and reciprocal standard deviation of a row.
fn moments<T: KernelFloat>(row: &[T], eps: T) -> (T, T) {
    let n = T::from(row.len()).unwrap_or_else(T::one);
    let mean = lane_sum(row.len(), |i| row[i]) / n;
    let var = lane_sum(row.len(), |i| (row[i] - mean) * (row[i] - mean)) / n;
    (mean, T::one() / (var + eps).sqrt())
}

fn forward<T: KernelFloat>(x: &[T], w: &[T], b: &[T], eps: f64) -> Vec<T> {
    let h = w.len();
    let eps = T::from(eps).unwrap_or_else(T::epsilon);
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(h * ROWS_PER_TASK).zip(x.par_chunks(h * ROWS_PER_TASK)).for_each(|(ys, xs)| {
        for (yr, xr) in ys.chunks_mut(h).zip(xs.chunks(h)) {
            let (mean, rstd) = moments(xr, eps);
            for j in 0..h {
                yr[j] = (xr[j] - mean) * rstd * w[j] + b[j];
            }
        }
    });
    y
}

/// (dx, dw, db) from x, w and dy.
fn backward<T: KernelFloat>(x: &[T], w: &[T], dy: &[T], eps: f64) -> (Vec<T>, Vec<T>, Vec<T>) {
    let h = w.len();
    let eps = T::from(eps).unwrap_or_else(T::epsilon);
    let hn = T::from(h).unwrap_or_else(T::one);
    let mut dx = vec![T::zero(); x.len()];
    let partials: Vec<(Vec<T>, Vec<T>)> = dx
        .par_chunks_mut(h * ROWS_PER_TASK)
        .zip(x.par_chunks(h * ROWS_PER_TASK))
        .zip(dy.par_chunks(h * ROWS_PER_TASK))
        .map(|((dxs, xs), dys)| {
            let mut dw = vec![T::zero(); h];
            let mut db = vec![T::zero(); h];
            for ((dxr, xr), dyr) in dxs.chunks_mut(h).zip(xs.chunks(h)).zip(dys.chunks(h)) {
                let (mean, rstd) = moments(xr, eps);
                let sum_g = lane_sum(h, |j| dyr[j] * w[j]);
                let sum_gx = lane_sum(h, |j| dyr[j] * w[j] * (xr[j] - mean) * rstd);
                for j in 0..h {
                    let xhat = (xr[j] - mean) * rstd;
                    dw[j] += dyr[j] * xhat;
                    db[j] += dyr[j];
                }
                let (mg, mgx) = (sum_g / hn, sum_gx / hn);
                for j in 0..h {
                    let xhat = (xr[j] - mean) * rstd;
                    dxr[j] = rstd * (dyr[j] * w[j] - mg - xhat * mgx);
                }
            }
            (dw, db)
        })
        .collect();
    let mut dw = vec![T::zero(); h];
    let mut db = vec![T::zero(); h];
    for (pw, pb) in partials {
        for j in 0..h {
            dw[j] += pw[j];
            db[j] += pb[j];
        }
    }
    (dx, dw, db)
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm"
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
        let y = with_kernel_float!(s1.dtype(), "LayerNorm", |T| <T as candle_core::WithDType>::to_cpu_storage_owned(
            forward(slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?, self.eps)
        ));
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = with_kernel_float!(x.dtype(), "LayerNorm", |T| gradients::<T>(x, w, grad, self.eps)?);
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// The fused backward on tensors: (dx, dw, db), reading the inputs in place.
fn gradients<T: KernelFloat>(x: &Tensor, w: &Tensor, grad: &Tensor, eps: f64) -> Result<(Tensor, Tensor, Tensor)> {
    let grad = grad.contiguous()?;
    let wv = w.to_vec1::<T>()?;
    let (dx, dw, db) = with_cpu_slice(x, "LayerNorm", |xs: &[T]| {
        with_cpu_slice(&grad, "LayerNorm", |gs: &[T]| backward(xs, &wv, gs, eps))
    })??;
    let h = wv.len();
    Ok((
        Tensor::from_vec(dx, x.dims(), x.device())?,
        Tensor::from_vec(dw, h, w.device())?,
        Tensor::from_vec(db, h, w.device())?,
    ))
}
