//! AdamW's update of one CPU parameter in a single pass over its weight, gradient and moments.
//! The tensor-op form takes a dozen passes and as many fresh buffers per parameter (on Barlow
//! Twins' 9M-parameter projector, most of the optimiser's time). Each element goes through the
//! tensor-op form's operations in its order and precision (candle's scalar ops are `x · a + b`),
//! so both forms give the same bits.

use crate::kernel::{runs_kernel, with_cpu_slice, written_vec, KernelFloat};
use crate::with_kernel_float;
use candle_core::{Result, Tensor, WithDType};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// The scalars of one update.
#[derive(Clone, Copy, Debug)]
pub(super) struct AdamWScalars {
    /// 1 - lr · weight decay.
    pub decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// 1 - β₂ᵗ.
    pub bias2: f64,
    /// lr / (1 - β₁ᵗ).
    pub step_size: f64,
}

/// Elements per task: fixed, so the work split does not depend on the thread count (the result
/// is elementwise and would not either).
const CHUNK: usize = 1 << 14;

/// (w', m', v') of the update, or None where the kernel does not apply (off the CPU, a dtype
/// other than f32/f64 or mixed, a non-contiguous operand): the caller then takes the tensor ops.
pub(super) fn update(
    w: &Tensor,
    g: &Tensor,
    moments: Option<(&Tensor, &Tensor)>,
    s: AdamWScalars,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    let mut all = vec![w, g];
    if let Some((m, v)) = moments {
        all.extend([m, v]);
    }
    if !all.iter().all(|t| runs_kernel(t) && t.dtype() == w.dtype() && t.is_contiguous() && t.dims() == w.dims()) {
        return Ok(None);
    }
    let out = with_kernel_float!(w.dtype(), "AdamW", |T| {
        let (w2, m2, v2) = with_cpu_slice(w, "AdamW", |ws: &[T]| {
            with_cpu_slice(g, "AdamW", |gs: &[T]| match moments {
                None => Ok(step::<T>(ws, gs, None, s)),
                Some((m, v)) => with_cpu_slice(m, "AdamW", |ms: &[T]| {
                    with_cpu_slice(v, "AdamW", |vs: &[T]| step::<T>(ws, gs, Some((ms, vs)), s))
                })?,
            })
        })???;
        let shape = w.shape();
        (
            Tensor::from_vec(w2, shape, w.device())?,
            Tensor::from_vec(m2, shape, w.device())?,
            Tensor::from_vec(v2, shape, w.device())?,
        )
    });
    Ok(Some(out))
}

fn step<T: KernelFloat>(w: &[T], g: &[T], moments: Option<(&[T], &[T])>, s: AdamWScalars) -> (Vec<T>, Vec<T>, Vec<T>) {
    let n = w.len();
    // The three outputs are written whole below, so they start uninitialised (zeroing them first
    // was a pass over three model-sized buffers a step).
    let (mut m2, mut v2) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (m_out, v_out) = (&mut m2.spare_capacity_mut()[..n], &mut v2.spare_capacity_mut()[..n]);
    // SAFETY: the loop writes every element of `w2`, `m_out` and `v_out` (chunks of one size over
    // three buffers of n elements).
    let w2 = unsafe {
        written_vec(n, |w_out| {
            update_into(w, g, moments, s, w_out, m_out, v_out);
        })
    };
    // SAFETY: the first n elements of both were written above (the capacity is n).
    unsafe {
        m2.set_len(n);
        v2.set_len(n);
    }
    (w2, m2, v2)
}

/// The update of [`step`] into its three (uninitialised) outputs, every element written.
fn update_into<T: KernelFloat>(
    w: &[T],
    g: &[T],
    moments: Option<(&[T], &[T])>,
    s: AdamWScalars,
    w2: &mut [MaybeUninit<T>],
    m2: &mut [MaybeUninit<T>],
    v2: &mut [MaybeUninit<T>],
) {
    let t = |v: f64| <T as WithDType>::from_f64(v);
    let zero = T::zero();
    let (decay, b1, one_b1, b2, one_b2) = (t(s.decay), t(s.beta1), t(1.0 - s.beta1), t(s.beta2), t(1.0 - s.beta2));
    let (inv_bias2, eps, step_size) = (t(1.0 / s.bias2.sqrt()), t(s.eps), t(s.step_size));
    w2.par_chunks_mut(CHUNK).zip(m2.par_chunks_mut(CHUNK)).zip(v2.par_chunks_mut(CHUNK)).enumerate().for_each(
        |(c, ((wo, mo), vo))| {
            let at = c * CHUNK;
            for i in 0..wo.len() {
                let (wi, gi) = (w[at + i], g[at + i]);
                // The tensor-op form, step by step: w·(1 - lr·λ), then the moments, then
                // w - m / (sqrt(v) / sqrt(1 - β₂ᵗ) + ε) · lr / (1 - β₁ᵗ).
                let decayed = wi * decay + zero;
                let (m, v) = match moments {
                    None => (gi * one_b1 + zero, (gi * gi) * one_b2 + zero),
                    Some((ms, vs)) => (
                        (ms[at + i] * b1 + zero) + (gi * one_b1 + zero),
                        (vs[at + i] * b2 + zero) + ((gi * gi) * one_b2 + zero),
                    ),
                };
                let denom = (v.sqrt() * inv_bias2 + zero) * T::one() + eps;
                wo[i].write(decayed - ((m / denom) * step_size + zero));
                mo[i].write(m);
                vo[i].write(v);
            }
        },
    );
}
