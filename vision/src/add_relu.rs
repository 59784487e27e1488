//! `relu(a + b)` as one op: the end of a residual block.
//!
//! As candle ops the sum and the ReLU are two activation-sized passes and two graph nodes, and
//! ReLU's backward several more passes (a comparison, a cast, a product). Fused, forward and
//! backward are one pass each, and both inputs receive the same masked gradient.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use contrastive_core::kernel::{contiguous_slice, with_cpu_slice, written_vec};
use contrastive_core::nn::batch_norm_kernel::relu_masked;
use contrastive_core::with_kernel_float;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// `max(a + b, 0)` elementwise for two tensors of one shape; any device (fused on the CPU for
/// f32/f64).
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dims() != b.dims() {
        bail!("add_relu: shapes {:?} and {:?} differ", a.dims(), b.dims());
    }
    let fused = contrastive_core::kernel::runs_kernel(a);
    if fused && a.dtype() == b.dtype() {
        a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)
    } else {
        (a + b)?.relu()
    }
}

struct AddRelu;

const CHUNK: usize = 1 << 14;

fn forward<T: WithDType + num_traits::Float>(a: &[T], b: &[T]) -> Vec<T> {
    let fill = |y: &mut [MaybeUninit<T>]| {
        y.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).zip(b.par_chunks(CHUNK)).for_each(|((ys, xs), zs)| {
            for ((y, &x), &z) in ys.iter_mut().zip(xs).zip(zs) {
                y.write(num_traits::Float::max(x + z, T::zero()));
            }
        });
    };
    // SAFETY: `y` is no longer than either input, so each of its chunks is written whole.
    unsafe { written_vec(a.len().min(b.len()), fill) }
}

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "add-relu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = with_kernel_float!(s1.dtype(), "add_relu", |T| <T as candle_core::WithDType>::to_cpu_storage_owned(
            forward(contiguous_slice(s1, l1, "add_relu")?, contiguous_slice(s2, l2, "add_relu")?)
        ));
        Ok((y, l1.shape().clone()))
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (res, grad) = (res.contiguous()?, grad.contiguous()?);
        let d = with_kernel_float!(res.dtype(), "add_relu", |T| Tensor::from_vec(
            with_cpu_slice(&res, "add_relu", |os: &[T]| {
                with_cpu_slice(&grad, "add_relu", |gs| relu_masked(gs, os))
            })??,
            res.dims(),
            res.device(),
        )?);
        // An input that is neither a variable nor computed from one needs no gradient.
        Ok((a.track_op().then(|| d.clone()), b.track_op().then_some(d)))
    }
}
