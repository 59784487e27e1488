//! A linear layer whose backward is two products and a column sum, in one op. candle-nn's
//! `Linear` adds the bias with `broadcast_add`, whose backward sums the (…, out) gradient over
//! every leading dimension with a strided reduction (a tenth of a MiniLM training step), and
//! multiplies by the transposed weight, whose backward builds the weight's gradient transposed and
//! adds it back through a strided pass (16 ms of a 2048 x 2048 layer's backward on 2 cores, more
//! than its products). Here, on the CPU, the input is flattened to rows and multiplied by the
//! weight onto rows holding the bias, in one custom op whose backward writes dx = dy W, dW = dyᵀ x
//! and db (the gradient's column sums, in parallel in a fixed order) directly. One op, not a
//! product and a bias add: candle's backward gives every node's output a zeroed gradient buffer
//! and adds the incoming gradient into it, a pass over the layer's output per node.

use crate::kernel::{
    column_sums, contiguous_slice, gemm, gemm_into_uninit, with_cpu_slice, written_vec, KernelFloat, Strided, Threads,
};
use crate::with_kernel_float;
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Module, Result, Shape, Tensor, WithDType};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;
use std::sync::Mutex;

/// `y = x Wᵀ + b` over the last dimension of `x`; weight (out, in), bias (out), as PyTorch and
/// candle-nn name and initialise them.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// From existing weight (out, in) and bias (out).
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// The weight (out, in).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias (out), if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Linear {
    /// `gelu(x Wᵀ + b)` with the exact erf GELU (BERT's feed-forward layer), on the CPU in one
    /// op that keeps the pre-activation for its backward: one node of the (…, out) activations
    /// in candle's graph instead of two, each of whose gradients candle zeroes and adds into.
    /// Elsewhere, or without a bias, [`gelu_erf`](crate::nn::gelu_erf) of the layer's output.
    pub fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        match &self.bias {
            Some(b) if fused(x, &self.weight) && b.dtype() == x.dtype() => {
                self.check_input(x)?;
                let keep = x.track_op() || self.weight.track_op() || b.track_op();
                let op = BiasedProduct { gelu: Some(Gelu { keep, pre: Mutex::new(None) }) };
                x.contiguous()?.apply_op3(&self.weight.contiguous()?, &b.contiguous()?, op)
            }
            _ => crate::nn::gelu_erf(&self.forward(x)?),
        }
    }

    /// An input whose last dimension is not the weight's is an error naming both shapes.
    fn check_input(&self, x: &Tensor) -> Result<()> {
        let (dims, input) = (x.dims(), self.weight.dim(1)?);
        match dims.last() {
            None => bail!("Linear: a scalar input"),
            Some(&last) if last != input => {
                bail!("Linear: input {dims:?}, weight {:?} expects a last dimension of {input}", self.weight.dims())
            }
            Some(_) => Ok(()),
        }
    }
}

/// A linear layer with variables `weight` and `bias` under `vb`, initialised as candle-nn's
/// `linear` (and PyTorch's `nn.Linear`): weight Kaiming-normal, bias uniform in ±1/√in.
pub fn linear(input: usize, output: usize, vb: VarBuilder) -> Result<Linear> {
    check_sizes(input, output, &vb)?;
    let weight = vb.get_with_hints((output, input), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
    let bound = 1.0 / (input as f64).sqrt();
    let bias = vb.get_with_hints(output, "bias", Init::Uniform { lo: -bound, up: bound })?;
    Ok(Linear { weight, bias: Some(bias) })
}

/// A linear layer without bias (`weight` only).
pub fn linear_no_bias(input: usize, output: usize, vb: VarBuilder) -> Result<Linear> {
    check_sizes(input, output, &vb)?;
    let weight = vb.get_with_hints((output, input), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
    Ok(Linear { weight, bias: None })
}

/// A layer with no inputs or no outputs is a configuration error, named before initialisation
/// (whose fan-in bounds would divide by zero).
fn check_sizes(input: usize, output: usize, vb: &VarBuilder) -> Result<()> {
    if input == 0 || output == 0 {
        bail!("Linear {}: {input} inputs and {output} outputs, both must be at least 1", vb.prefix());
    }
    Ok(())
}

impl Module for Linear {
    /// On the CPU the fused ops take `x` of any rank as rows (no reshape nodes in the graph,
    /// whose backward candle would also zero and add into); elsewhere candle's product.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        let w = &self.weight;
        match &self.bias {
            Some(b) if fused(x, w) && b.dtype() == x.dtype() => {
                x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, BiasedProduct { gelu: None })
            }
            None if fused(x, w) => x.contiguous()?.apply_op2(&w.contiguous()?, Product),
            bias => {
                let (out, input) = w.dims2()?;
                let leading = &x.dims()[..x.rank() - 1];
                let y = x.contiguous()?.reshape((leading.iter().product::<usize>(), input))?.matmul(&w.t()?)?;
                let y = match bias {
                    Some(b) => y.broadcast_add(b)?,
                    None => y,
                };
                y.reshape([leading, &[out]].concat())
            }
        }
    }
}

fn fused(x: &Tensor, w: &Tensor) -> bool {
    crate::kernel::runs_kernel(x) && w.dtype() == x.dtype()
}

/// `x (…, in) Wᵀ` for a weight W (out, in); backward: dx = dy W, dW = dyᵀ x.
struct Product;

/// (rows, in, out) of an input (…, in) and a weight (out, in).
fn product_dims(x: &Layout, w: &Layout) -> Result<(usize, usize, usize)> {
    match (x.dims().split_last(), w.dims()) {
        (Some((&input, leading)), &[out, width]) if input == width => Ok((leading.iter().product(), input, out)),
        _ => bail!("linear: input {:?} and weight {:?} (out, in) do not match", x.dims(), w.dims()),
    }
}

/// The input's shape with its last dimension `out`.
fn output_shape(x: &Layout, out: usize) -> Shape {
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = out;
    }
    Shape::from(dims)
}

/// `x (rows, input)` times the transpose of `w (out, input)`, plus `bias (out)` on every row.
fn times_weight_t<T: KernelFloat>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    (rows, input, out): (usize, usize, usize),
) -> Vec<T> {
    let dims = (rows, out, input);
    let (x, wt) = (Strided::new(x, (input, 1)), Strided::new(w, (1, input)));
    match bias {
        Some(b) => {
            // SAFETY: each row (of `out` = b.len() values, checked by the op) is written with
            // the bias, which the product then accumulates onto.
            let mut y = unsafe {
                written_vec(rows * out, |y| {
                    y.par_chunks_mut(out.max(1) * ROWS_PER_TASK).for_each(|rows| {
                        for row in rows.chunks_mut(out.max(1)) {
                            for (d, &v) in row.iter_mut().zip(b) {
                                d.write(v);
                            }
                        }
                    })
                })
            };
            gemm(&mut y, dims, true, x, wt, T::one(), Threads::Pool);
            y
        }
        // SAFETY: without accumulation the product writes all rows × out elements.
        None => unsafe {
            written_vec(rows * out, |y| {
                gemm_into_uninit(y, dims, x, wt, T::one(), Threads::Pool);
            })
        },
    }
}

/// (dx, dW) = (dy W, dyᵀ x) for the gradient `g` (rows, out) of `x Wᵀ`.
fn product_grads<T: KernelFloat>(
    g: &[T],
    x: &[T],
    w: &[T],
    (rows, input, out): (usize, usize, usize),
) -> (Vec<T>, Vec<T>) {
    let (x, w) = (Strided::new(x, (input, 1)), Strided::new(w, (input, 1)));
    // SAFETY: without accumulation each product writes all of its destination.
    unsafe {
        let dx = written_vec(rows * input, |dx| {
            gemm_into_uninit(dx, (rows, input, out), Strided::new(g, (out, 1)), w, T::one(), Threads::Pool);
        });
        let dw = written_vec(out * input, |dw| {
            gemm_into_uninit(dw, (out, input, rows), Strided::new(g, (1, out)), x, T::one(), Threads::Pool);
        });
        (dx, dw)
    }
}

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = product_dims(l1, l2)?;
        let out = with_kernel_float!(s1.dtype(), "linear", |T| <T as candle_core::WithDType>::to_cpu_storage_owned(
            times_weight_t(contiguous_slice(s1, l1, "linear")?, contiguous_slice(s2, l2, "linear")?, None, dims)
        ));
        Ok((out, output_shape(l1, dims.2)))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (rows, input, out) = product_dims(x.layout(), w.layout())?;
        let (dx, dw) = with_kernel_float!(x.dtype(), "linear", |T| {
            let (dx, dw) = with_cpu_slice(&grad, "linear", |g: &[T]| {
                with_cpu_slice(x, "linear", |xs: &[T]| {
                    with_cpu_slice(w, "linear", |ws: &[T]| product_grads(g, xs, ws, (rows, input, out)))
                })
            })???;
            (Tensor::from_vec(dx, x.dims(), x.device())?, Tensor::from_vec(dw, (out, input), w.device())?)
        });
        Ok((Some(dx), Some(dw)))
    }
}

/// Rows per task of the bias fill.
const ROWS_PER_TASK: usize = 64;

/// `x (…, in) Wᵀ + b` for a weight W (out, in) and a bias b (out), then GELU if `gelu` is set;
/// backward: dz = dy (or dy times GELU's derivative at the kept pre-activation), dx = dz W,
/// dW = dzᵀ x, db = the column sums of dz.
struct BiasedProduct {
    gelu: Option<Gelu>,
}

/// The pre-activation `x Wᵀ + b`, kept by the forward pass when a backward may follow.
struct Gelu {
    keep: bool,
    pre: Mutex<Option<CpuStorage>>,
}

impl CustomOp3 for BiasedProduct {
    fn name(&self) -> &'static str {
        "linear"
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
        let dims = product_dims(l1, l2)?;
        if l3.dims() != [dims.2] {
            bail!("linear: bias {:?} for a weight {:?} (out, in)", l3.dims(), l2.dims());
        }
        let out = with_kernel_float!(s1.dtype(), "linear", |T| {
            let z = times_weight_t::<T>(
                contiguous_slice(s1, l1, "linear")?,
                contiguous_slice(s2, l2, "linear")?,
                Some(contiguous_slice(s3, l3, "linear")?),
                dims,
            );
            match &self.gelu {
                None => T::to_cpu_storage_owned(z),
                Some(gelu) => {
                    let h = crate::nn::gelu::forward(&z);
                    if gelu.keep {
                        *gelu.pre.lock().unwrap_or_else(|e| e.into_inner()) = Some(T::to_cpu_storage_owned(z));
                    }
                    T::to_cpu_storage_owned(h)
                }
            }
        });
        Ok((out, output_shape(l1, dims.2)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (rows, input, out) = product_dims(x.layout(), w.layout())?;
        let (dx, dw, db) = with_kernel_float!(x.dtype(), "linear", |T| {
            let (dx, dw, db) = with_cpu_slice(&grad, "linear", |g: &[T]| {
                let dz = match &self.gelu {
                    None => None,
                    Some(gelu) => {
                        let pre = gelu.pre.lock().unwrap_or_else(|e| e.into_inner());
                        let Some(pre) = pre.as_ref() else {
                            bail!("linear: the GELU's pre-activation was not kept (its input tracked no gradient)")
                        };
                        Some(crate::nn::gelu::backward(T::cpu_storage_as_slice(pre)?, g))
                    }
                };
                let dz = dz.as_deref().unwrap_or(g);
                let (dx, dw) = with_cpu_slice(x, "linear", |xs: &[T]| {
                    with_cpu_slice(w, "linear", |ws: &[T]| product_grads(dz, xs, ws, (rows, input, out)))
                })??;
                Ok((dx, dw, column_sums(dz, out)))
            })??;
            (
                Tensor::from_vec(dx, x.dims(), x.device())?,
                Tensor::from_vec(dw, (out, input), w.device())?,
                Tensor::from_vec(db, out, b.device())?,
            )
        });
        Ok((Some(dx), Some(dw), Some(db)))
    }
}
