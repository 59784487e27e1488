//! GELU with the exact erf form (BERT's `gelu`), fused on the CPU. candle's `gelu_erf` backward is
//! a chain of about a dozen tensor ops over the (B, L, 4H) activations, one thread each, with
//! 1/√(2π) rounded to six digits; this op computes the value and, in backward, the exact
//! derivative in one parallel pass each.

use crate::kernel::{contiguous_slice, with_cpu_slice, VectorWidth};
use crate::with_kernel_float;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `x Φ(x) = x (1 + erf(x / √2)) / 2`, elementwise; any device (fused on the CPU for f32/f64).
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if crate::kernel::runs_kernel(x) {
        x.contiguous()?.apply_op1(GeluErf)
    } else {
        // Composed from erf, whose derivative candle computes exactly (its fused gelu_erf
        // backward is 1.7e-7 off in f64).
        (x * ((x / std::f64::consts::SQRT_2)?.erf()? + 1.0)?)? * 0.5
    }
}

struct GeluErf;

const CHUNK: usize = 4096;

/// Φ(x) and φ(x) in the element type, and the two passes over a chunk.
pub(crate) trait Normal: num_traits::Float + Send + Sync {
    fn cdf_pdf(self) -> (Self, Self);

    /// `ys = xs Φ(xs)`.
    fn gelu_chunk(xs: &[Self], ys: &mut [Self]) {
        gelu_loop(xs, ys)
    }

    /// `ds = gs (Φ(xs) + xs φ(xs))`.
    fn gelu_grad_chunk(xs: &[Self], gs: &[Self], ds: &mut [Self]) {
        gelu_grad_loop(xs, gs, ds)
    }
}

#[inline(always)]
fn gelu_loop<T: Normal>(xs: &[T], ys: &mut [T]) {
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = x * x.cdf_pdf().0;
    }
}

/// d/dx x Φ(x) = Φ(x) + x φ(x).
#[inline(always)]
fn gelu_grad_loop<T: Normal>(xs: &[T], gs: &[T], ds: &mut [T]) {
    for ((d, &x), &g) in ds.iter_mut().zip(xs).zip(gs) {
        let (cdf, pdf) = x.cdf_pdf();
        *d = g * (cdf + x * pdf);
    }
}

/// The f32 loops compiled for AVX-512 and for AVX2 (the CPU's widest is picked at run time, as
/// for the loss's exponential): with the polynomial exponential inlined they vectorise, where
/// libm's `expf`, called an element at a time, made GELU a tenth of a MiniLM training step.
#[cfg(target_arch = "x86_64")]
mod wide {
    #[target_feature(enable = "avx512f")]
    pub(super) fn gelu_avx512(xs: &[f32], ys: &mut [f32]) {
        super::gelu_loop(xs, ys)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gelu_avx2(xs: &[f32], ys: &mut [f32]) {
        super::gelu_loop(xs, ys)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn gelu_grad_avx512(xs: &[f32], gs: &[f32], ds: &mut [f32]) {
        super::gelu_grad_loop(xs, gs, ds)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gelu_grad_avx2(xs: &[f32], gs: &[f32], ds: &mut [f32]) {
        super::gelu_grad_loop(xs, gs, ds)
    }
}

impl Normal for f32 {
    /// erf by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7, the f32 resolution near
    /// 1; PyTorch's vectorised float erf uses the same formula), sharing one exponential with φ:
    /// libm's erff takes a slow path for |x| > 1.25, where trained BERT activations often are.
    #[inline]
    fn cdf_pdf(self) -> (f32, f32) {
        const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
        const P: f32 = 0.327_591_1;
        const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_8, -1.453_152, 1.061_405_4];
        // The polynomial exponential (2e-7 relative): libm's would keep the loops scalar.
        let e = crate::kernel::exp_cephes(-0.5 * self * self);
        let z = self.abs() * std::f32::consts::FRAC_1_SQRT_2;
        let t = 1.0 / (1.0 + P * z);
        let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
        let erf = (1.0 - poly * e).copysign(self);
        (0.5 * (1.0 + erf), FRAC_1_SQRT_2PI * e)
    }

    fn gelu_chunk(xs: &[f32], ys: &mut [f32]) {
        match VectorWidth::of_this_cpu() {
            // SAFETY: the CPU supports the enabled features (checked by `of_this_cpu`).
            #[cfg(target_arch = "x86_64")]
            VectorWidth::Avx512 => unsafe { wide::gelu_avx512(xs, ys) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            VectorWidth::Avx2 => unsafe { wide::gelu_avx2(xs, ys) },
            _ => gelu_loop(xs, ys),
        }
    }

    fn gelu_grad_chunk(xs: &[f32], gs: &[f32], ds: &mut [f32]) {
        match VectorWidth::of_this_cpu() {
            // SAFETY: the CPU supports the enabled features (checked by `of_this_cpu`).
            #[cfg(target_arch = "x86_64")]
            VectorWidth::Avx512 => unsafe { wide::gelu_grad_avx512(xs, gs, ds) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            VectorWidth::Avx2 => unsafe { wide::gelu_grad_avx2(xs, gs, ds) },
            _ => gelu_grad_loop(xs, gs, ds),
        }
    }
}

impl Normal for f64 {
    /// libm's erf (about 1 ulp), so that f64 gradient checks see the exact function.
    #[inline]
    fn cdf_pdf(self) -> (f64, f64) {
        const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
        (0.5 * (1.0 + libm::erf(self * std::f64::consts::FRAC_1_SQRT_2)), FRAC_1_SQRT_2PI * (-0.5 * self * self).exp())
    }
}

/// GELU of each element, in parallel chunks.
pub(crate) fn forward<T: Normal>(x: &[T]) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(ys, xs)| T::gelu_chunk(xs, ys));
    y
}

/// The gradient `g` times GELU's derivative at `x`, in parallel chunks.
pub(crate) fn backward<T: Normal>(x: &[T], g: &[T]) -> Vec<T> {
    let mut dx = vec![T::zero(); x.len()];
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .zip(g.par_chunks(CHUNK))
        .for_each(|((ds, xs), gs)| T::gelu_grad_chunk(xs, gs, ds));
    dx
}

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = with_kernel_float!(s.dtype(), "gelu", |T| <T as candle_core::WithDType>::to_cpu_storage_owned(
            forward(contiguous_slice::<T>(s, l, "gelu")?)
        ));
        Ok((y, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let dx = with_kernel_float!(x.dtype(), "gelu", |T| {
            let d = with_cpu_slice(x, "gelu", |xs: &[T]| with_cpu_slice(&grad, "gelu", |gs: &[T]| backward(xs, gs)))??;
            Tensor::from_vec(d, x.dims(), x.device())?
        });
        Ok(Some(dx))
    }
}
