//! Convolution and BatchNorm (and ReLU) as one op on channels-last images: the ConvNet's block and
//! the ResNet's layers.
//!
//! candle's backward gives every node of the graph a zero-filled gradient buffer and adds each
//! incoming gradient into it, an allocation and a full pass per node. A block built from separate
//! ops has four activation-sized nodes (the convolution, a reshape to rows, BatchNorm-ReLU, a
//! reshape back), and on the Fashion-MNIST SimCLR step those passes cost more than the
//! convolutions' im2row. Fused there is one node per block; the pre-BatchNorm activations stay
//! inside the op for its backward, exactly as the separate ops would keep them.

use crate::conv::{self, Conv2d, ConvGeometry, Dims};
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use candle_nn::ModuleT;
use contrastive_core::collective::Collective;
use contrastive_core::kernel::{column_sums, contiguous_slice, with_cpu_slice, KernelFloat};
use contrastive_core::nn::batch_norm_kernel::{self as batch_norm, Moments, PartialMoments};
use contrastive_core::nn::BatchNorm;
use contrastive_core::with_kernel_float;
use std::sync::{Arc, Mutex};

/// What follows the BatchNorm in a [`ConvBn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Nothing (a ResNet block's last BatchNorm, before the residual sum).
    Identity,
    /// ReLU.
    Relu,
}

/// `batch_norm(conv(x))`, then the activation, on channels-last images (N, H, W, C) to (N, OH, OW,
/// O). On the CPU (f32, f64, a convolution without bias) it is one fused op: in training the
/// convolution then BatchNorm on the batch's statistics; on running statistics (eval mode, frozen
/// BatchNorm) the BatchNorm folded into the convolution. Elsewhere the separate layers run.
#[derive(Clone, Debug)]
pub struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
    activation: Activation,
}

/// What the forward pass keeps: the convolution's output (its BatchNorm input) and the batch
/// statistics per channel.
struct Saved {
    conv_out: CpuStorage,
    moments: Moments,
}

/// The fused op: the convolution, a per-channel normalisation, then ReLU if `relu`.
struct ConvBnOp {
    geometry: ConvGeometry,
    relu: bool,
    normalise: Normalise,
}

/// How [`ConvBnOp`] normalises the convolution's output, and what its third input is.
enum Normalise {
    /// By the batch's statistics (training); the third input is γ and β side by side (2·O).
    Batch {
        eps: f64,
        saved: Arc<Mutex<Option<Saved>>>,
        /// The processes whose batches BatchNorm normalises together (SyncBatchNorm), if any.
        sync: Option<Arc<dyn Collective>>,
    },
    /// By running statistics folded into the weights: the third input is the shift (O) added to
    /// each block of output rows as its product leaves it.
    Folded,
}

impl ConvBn {
    /// The block from its two layers (the convolution's output channels are the BatchNorm's).
    pub fn new(conv: Conv2d, bn: BatchNorm, activation: Activation) -> Self {
        Self { conv, bn, activation }
    }

    /// The convolution.
    pub fn conv(&self) -> &Conv2d {
        &self.conv
    }

    /// The BatchNorm.
    pub fn bn(&self) -> &BatchNorm {
        &self.bn
    }

    /// Applies the block; batch statistics (and a running-statistics update) when `train`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let fused = self.conv.bias().is_none()
            && contrastive_core::kernel::runs_kernel(x)
            && [self.conv.weight(), self.bn.weight(), self.bn.bias()].iter().all(|t| t.dtype() == x.dtype());
        let relu = self.activation == Activation::Relu;
        if !fused {
            let y = self.conv.forward_channels_last(x)?;
            let (n, oh, ow, o) = y.dims4()?;
            let rows = y.reshape((n * oh * ow, o))?;
            let out = if relu { self.bn.forward_relu_t(&rows, train)? } else { self.bn.forward_t(&rows, train)? };
            return out.reshape((n, oh, ow, o));
        }
        let (n, _, _, c) = x.dims4()?;
        let g = self.conv.geometry();
        if c != g.in_channels {
            bail!("conv2d: channels-last input {:?} has {c} channels, the layer expects {}", x.dims(), g.in_channels);
        }
        if self.bn.weight().dim(0)? != g.out_channels {
            bail!(
                "ConvBn: BatchNorm of {} channels after a convolution to {}",
                self.bn.weight().dim(0)?,
                g.out_channels
            );
        }
        // Frozen statistics (`with_running_statistics`) are running statistics in training too.
        if !train || contrastive_core::nn::uses_running_statistics() {
            return self.forward_folded(x, relu);
        }
        // One variable-backed input for γ and β (an op takes three inputs); cat's backward splits
        // the gradient back onto both.
        let affine = Tensor::cat(&[self.bn.weight(), self.bn.bias()], 0)?;
        let saved = Arc::new(Mutex::new(None));
        let sync = contrastive_core::collective::sync_batch_norm();
        let normalise = Normalise::Batch { eps: self.bn.eps(), saved: Arc::clone(&saved), sync };
        let op = ConvBnOp { geometry: g, relu, normalise };
        let out = x.contiguous()?.apply_op3(&self.conv.weight().contiguous()?, &affine, op)?;
        let (_, oh, ow, _) = out.dims4()?;
        if n * oh * ow < 2 {
            bail!("BatchNorm in training needs more than one value per channel, got output {:?}", out.dims());
        }
        let stats = saved.lock().unwrap_or_else(|e| e.into_inner());
        let Some(Saved { moments, .. }) = stats.as_ref() else { bail!("ConvBn: the fused op left no statistics") };
        self.bn.update_running(&moments.mean, &moments.var, moments.count)?;
        Ok(out)
    }
}

impl ConvBn {
    /// On running statistics BatchNorm is a per-channel scale `s = γ/√(var + ε)` and shift
    /// `β - mean·s`, so the block is `conv(x, W·s) + shift`: one op whose shift and ReLU run on
    /// each block of output rows as its product leaves it, where the separate layers make three
    /// more activation-sized passes (scale, shift, ReLU). Gradients reach W, γ and β through the
    /// two small per-channel products; the running statistics are buffers and get none.
    fn forward_folded(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let bn = &self.bn;
        let scale = (bn.weight() / (bn.running_var().detach() + bn.eps())?.sqrt()?)?;
        let shift = (bn.bias() - (bn.running_mean().detach() * &scale)?)?;
        let w = self.conv.weight().broadcast_mul(&scale.reshape(((), 1, 1, 1))?)?;
        let op = ConvBnOp { geometry: self.conv.geometry(), relu, normalise: Normalise::Folded };
        x.contiguous()?.apply_op3(&w.contiguous()?, &shift.contiguous()?, op)
    }
}

impl ConvBnOp {
    fn dims(&self, x: &Layout) -> Result<Dims> {
        let (_, h, w, _) = x.shape().dims4()?;
        Dims::new(self.geometry, h, w)
    }

    fn forward<T: KernelFloat>(&self, x: &[T], w: &[T], third: &[T], d: &Dims) -> Result<Vec<T>> {
        let Normalise::Batch { eps, saved, sync } = &self.normalise else {
            return Ok(conv::forward_channels_last_then(x, w, d, |_, rows| {
                for row in rows.chunks_mut(d.o) {
                    for (v, &s) in row.iter_mut().zip(third) {
                        let shifted = *v + s;
                        *v = if self.relu { num_traits::Float::max(shifted, T::zero()) } else { shifted };
                    }
                }
            }));
        };
        let (gamma, beta) = third.split_at(d.o);
        let (y, out, moments) = match sync {
            Some(sync) => {
                let y = conv::forward_channels_last(x, w, d);
                let dims = (y.len() / d.o, d.o, 1);
                let (out, moments) = batch_norm::forward(&y, gamma, beta, dims, *eps, self.relu, Some(sync.as_ref()))?;
                (y, out, moments)
            }
            None => {
                // The statistics of each block of the convolution's output as the product leaves
                // it in cache, merged in row order: no pass of their own over the output.
                let blocks = Mutex::new(Vec::new());
                let y = conv::forward_channels_last_then(x, w, d, |first_row, rows| {
                    let part = PartialMoments::of_rows(rows, d.o);
                    blocks.lock().unwrap_or_else(|e| e.into_inner()).push((first_row, part));
                });
                let mut blocks = blocks.into_inner().unwrap_or_else(|e| e.into_inner());
                blocks.sort_by_key(|(first_row, _)| *first_row);
                let mut all = PartialMoments::empty(d.o);
                blocks.iter().for_each(|(_, part)| all.merge(part));
                let moments = all.moments();
                let dims = (y.len() / d.o, d.o, 1);
                let out = batch_norm::normalize(&y, gamma, beta, dims, &moments, *eps, self.relu);
                (y, out, moments)
            }
        };
        *saved.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Saved { conv_out: T::to_cpu_storage_owned(y), moments });
        Ok(out)
    }

    /// (dx, dw, the third input's gradient) from the inputs, the output and its gradient.
    #[allow(clippy::type_complexity)]
    fn gradients<T: KernelFloat>(
        &self,
        (x, w, third): (&Tensor, &Tensor, &Tensor),
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = self.dims(x.layout())?;
        // An input that is neither a variable nor computed from one (the images) needs no gradient.
        let need_dx = x.track_op();
        let (dx, dw, dthird) = with_cpu_slice(x, "ConvBn", |xs: &[T]| {
            with_cpu_slice(w, "ConvBn", |ws: &[T]| {
                with_cpu_slice(third, "ConvBn", |ts: &[T]| {
                    with_cpu_slice(grad, "ConvBn", |gs: &[T]| {
                        with_cpu_slice(out, "ConvBn", |os: &[T]| {
                            // Through the fused ReLU the gradient passes where the output is
                            // positive: BatchNorm's backward reads that on the fly.
                            let relu_out = self.relu.then_some(os);
                            let (dconv, dthird) = match &self.normalise {
                                Normalise::Batch { eps, saved, sync } => {
                                    let saved = saved.lock().unwrap_or_else(|e| e.into_inner());
                                    let Some(saved) = saved.as_ref() else { bail!("ConvBn: backward before forward") };
                                    let conv_out = saved.conv_out.as_slice::<T>()?;
                                    let dims = (conv_out.len() / d.o, d.o, 1);
                                    let (dy, mut daffine, dbeta) = batch_norm::backward(
                                        conv_out,
                                        &ts[..d.o],
                                        (gs, relu_out),
                                        dims,
                                        &saved.moments,
                                        *eps,
                                        sync.as_deref(),
                                    )?;
                                    daffine.extend(dbeta);
                                    (std::borrow::Cow::Owned(dy), daffine)
                                }
                                Normalise::Folded => {
                                    let g = match relu_out {
                                        Some(out) => std::borrow::Cow::Owned(batch_norm::relu_masked(gs, out)),
                                        None => std::borrow::Cow::Borrowed(gs),
                                    };
                                    let shift = column_sums(&g, d.o);
                                    (g, shift)
                                }
                            };
                            let (dx, dw) = conv::backward_channels_last(xs, ws, &dconv, &d, need_dx);
                            Ok::<_, candle_core::Error>((dx, dw, dthird))
                        })
                    })
                })
            })
        })??????;
        let dx = dx.map(|dx| Tensor::from_vec(dx, x.dims(), x.device())).transpose()?;
        Ok((
            dx,
            Some(Tensor::from_vec(dw, w.dims(), w.device())?),
            Some(Tensor::from_vec(dthird, third.dims(), third.device())?),
        ))
    }
}

impl CustomOp3 for ConvBnOp {
    fn name(&self) -> &'static str {
        "conv-batch-norm"
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
        let d = self.dims(l1)?;
        let n = l1.dims()[0];
        let g = self.geometry;
        let third = match self.normalise {
            Normalise::Batch { .. } => 2 * g.out_channels,
            Normalise::Folded => g.out_channels,
        };
        if l2.dims() != [g.out_channels, g.in_channels, g.kernel, g.kernel] || l3.dims() != [third] {
            bail!("ConvBn: weight {:?} and γβ or shift {:?} do not fit {g:?}", l2.dims(), l3.dims());
        }
        let out = with_kernel_float!(s1.dtype(), "ConvBn", |T| <T as candle_core::WithDType>::to_cpu_storage_owned(
            self.forward(
                contiguous_slice(s1, l1, "ConvBn")?,
                contiguous_slice(s2, l2, "ConvBn")?,
                contiguous_slice(s3, l3, "ConvBn")?,
                &d,
            )?
        ));
        Ok((out, Shape::from((n, d.oh, d.ow, d.o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        third: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (grad, res) = (grad.contiguous()?, res.contiguous()?);
        with_kernel_float!(x.dtype(), "ConvBn", |T| self.gradients::<T>((x, w, third), &res, &grad))
    }
}
