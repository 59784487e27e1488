//! Softmax over the last dimension with a backward. candle-nn's `softmax_last_dim` has none (the
//! gradient silently stops) and the composite `softmax` is about fifteen single-threaded tensor
//! ops forward and backward; this op does a row in one pass each way, rows in parallel.

use crate::kernel::KernelFloat;
use crate::kernel::{contiguous_slice, with_cpu_slice};
use crate::with_kernel_float;
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// `exp(x - max) / Σ exp(x - max)` along the last dimension; any device (fused on the CPU for
/// f32/f64, candle-nn's composite `softmax` elsewhere).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if crate::kernel::runs_kernel(x) && x.rank() > 0 {
        x.contiguous()?.apply_op1(Softmax)
    } else {
        candle_nn::ops::softmax(x, D::Minus1)
    }
}

struct Softmax;

/// Rows per parallel task.
const ROWS: usize = 64;

fn forward<T: KernelFloat>(x: &[T], width: usize) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(width * ROWS).zip(x.par_chunks(width * ROWS)).for_each(|(ys, xs)| {
        for (yr, xr) in ys.chunks_mut(width).zip(xs.chunks(width)) {
            let max = xr.iter().fold(T::neg_infinity(), |m, &v| if v > m { v } else { m });
            let mut sum = T::zero();
            for (y, &x) in yr.iter_mut().zip(xr) {
                *y = (x - max).exp();
                sum += *y;
            }
            let inv = T::one() / sum;
            yr.iter_mut().for_each(|y| *y *= inv);
        }
    });
    y
}

/// dx = y ⊙ (dy − Σ dy ⊙ y), row by row.
fn backward<T: KernelFloat>(y: &[T], g: &[T], width: usize) -> Vec<T> {
    let mut dx = vec![T::zero(); y.len()];
    dx.par_chunks_mut(width * ROWS).zip(y.par_chunks(width * ROWS)).zip(g.par_chunks(width * ROWS)).for_each(
        |((ds, ys), gs)| {
            for ((dr, yr), gr) in ds.chunks_mut(width).zip(ys.chunks(width)).zip(gs.chunks(width)) {
                let dot = yr.iter().zip(gr).fold(T::zero(), |s, (&y, &g)| s + y * g);
                for ((d, &y), &g) in dr.iter_mut().zip(yr).zip(gr) {
                    *d = y * (g - dot);
                }
            }
        },
    );
    dx
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax-last-dim"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let width = *l.dims().last().unwrap_or(&1);
        if width == 0 {
            bail!("softmax: empty last dimension in {:?}", l.dims());
        }
        let y = with_kernel_float!(s.dtype(), "softmax", |T| <T as candle_core::WithDType>::to_cpu_storage_owned(
            forward(contiguous_slice::<T>(s, l, "softmax")?, width)
        ));
        Ok((y, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let width = y.dim(D::Minus1)?;
        let dx = with_kernel_float!(y.dtype(), "softmax", |T| Tensor::from_vec(
            with_cpu_slice(y, "softmax", |ys: &[T]| {
                with_cpu_slice(&grad, "softmax", |gs: &[T]| backward(ys, gs, width))
            })??,
            y.dims(),
            y.device(),
        )?);
        Ok(Some(dx))
    }
}
