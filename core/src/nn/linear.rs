//! A linear layer whose backward is three products and a column sum. candle-nn's `Linear` adds
//! the bias with `broadcast_add`, whose backward sums the (…, out) gradient over every leading
//! dimension with a strided reduction (a tenth of a MiniLM training step), and multiplies by the
//! transposed weight, whose backward builds the weight's gradient transposed and adds it back
//! through a strided pass (16 ms of a 2048 x 2048 layer's backward on 2 cores, more than its
//! products). Here, on the CPU, the input is flattened to rows and multiplied by the weight in
//! one custom op whose backward writes dx = dy W and dW = dyᵀ x directly, and the bias is added
//! by another whose backward sums the gradient's rows in parallel, in a fixed order.

use crate::kernel::{column_sums, contiguous_slice, gemm, with_cpu_slice, KernelFloat, Strided, Threads};
use crate::with_kernel_float;
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;

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
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let (out, input) = self.weight.dims2()?;
        let Some((&last, leading)) = dims.split_last() else { bail!("Linear: a scalar input") };
        if last != input {
            bail!("Linear: input {dims:?}, weight {:?} expects a last dimension of {input}", self.weight.dims());
        }
        let rows: usize = leading.iter().product();
        let x = x.contiguous()?.reshape((rows, input))?;
        let y = if fused(&x, &self.weight) {
            x.apply_op2(&self.weight.contiguous()?, Product)?
        } else {
            x.matmul(&self.weight.t()?)?
        };
        let y = match &self.bias {
            None => y,
            Some(b) if fused(&y, b) => y.apply_op2(&b.contiguous()?, BiasAdd)?,
            Some(b) => y.broadcast_add(b)?,
        };
        let mut shape = leading.to_vec();
        shape.push(out);
        y.reshape(shape)
    }
}

fn fused(y: &Tensor, b: &Tensor) -> bool {
    crate::kernel::runs_kernel(y) && b.dtype() == y.dtype()
}

/// `x (N, in) Wᵀ` for a weight W (out, in); backward: dx = dy W, dW = dyᵀ x.
struct Product;

/// (rows, in) and (out, in) of the two operands.
fn product_dims(x: &Layout, w: &Layout) -> Result<(usize, usize, usize)> {
    match (x.dims(), w.dims()) {
        (&[rows, input], &[out, width]) if input == width => Ok((rows, input, out)),
        (x, w) => bail!("linear: input {x:?} and weight {w:?} (out, in) do not match"),
    }
}

/// `x (rows, input)` times the transpose of `w (out, input)`.
fn times_weight_t<T: KernelFloat>(x: &[T], w: &[T], (rows, input, out): (usize, usize, usize)) -> Vec<T> {
    let mut y = vec![T::zero(); rows * out];
    let (x, wt) = (Strided::new(x, (input, 1)), Strided::new(w, (1, input)));
    gemm(&mut y, (rows, out, input), false, x, wt, T::one(), Threads::Pool);
    y
}

/// (dx, dW) = (dy W, dyᵀ x) for the gradient `g` (rows, out) of `x Wᵀ`.
fn product_grads<T: KernelFloat>(
    g: &[T],
    x: &[T],
    w: &[T],
    (rows, input, out): (usize, usize, usize),
) -> (Vec<T>, Vec<T>) {
    let (mut dx, mut dw) = (vec![T::zero(); rows * input], vec![T::zero(); out * input]);
    let (x, w) = (Strided::new(x, (input, 1)), Strided::new(w, (input, 1)));
    gemm(&mut dx, (rows, input, out), false, Strided::new(g, (out, 1)), w, T::one(), Threads::Pool);
    gemm(&mut dw, (out, input, rows), false, Strided::new(g, (1, out)), x, T::one(), Threads::Pool);
    (dx, dw)
}

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = product_dims(l1, l2)?;
        let out = with_kernel_float!(s1.dtype(), "linear", |T| <T as candle_core::WithDType>::to_cpu_storage_owned(
            times_weight_t(contiguous_slice(s1, l1, "linear")?, contiguous_slice(s2, l2, "linear")?, dims)
        ));
        Ok((out, Shape::from((dims.0, dims.2))))
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
            (Tensor::from_vec(dx, (rows, input), x.device())?, Tensor::from_vec(dw, (out, input), w.device())?)
        });
        Ok((Some(dx), Some(dw)))
    }
}

/// Rows per task of the bias add.
const ROWS_PER_TASK: usize = 64;

/// `y (N, out) + b (out)`; backward: the gradient itself, and its column sums for the bias.
struct BiasAdd;

fn add_rows<T: KernelFloat>(y: &[T], b: &[T]) -> Vec<T> {
    let mut out = y.to_vec();
    out.par_chunks_mut(b.len() * ROWS_PER_TASK).for_each(|rows| {
        for row in rows.chunks_mut(b.len()) {
            for (v, &bj) in row.iter_mut().zip(b) {
                *v += bj;
            }
        }
    });
    out
}

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "bias-add"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        if l1.dims().len() != 2 || l2.dims() != [l1.dims()[1]] {
            bail!("bias-add: rows {:?} and bias {:?}", l1.dims(), l2.dims());
        }
        let out = with_kernel_float!(s1.dtype(), "bias-add", |T| <T as candle_core::WithDType>::to_cpu_storage_owned(
            add_rows(contiguous_slice(s1, l1, "bias-add")?, contiguous_slice(s2, l2, "bias-add")?)
        ));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(&self, _y: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let width = b.elem_count();
        let db = with_kernel_float!(grad.dtype(), "bias-add", |T| Tensor::from_vec(
            with_cpu_slice(&grad, "bias-add", |g: &[T]| column_sums(g, width))?,
            width,
            b.device(),
        )?);
        Ok((Some(grad), Some(db)))
    }
}
