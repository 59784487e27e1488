//! A 2-D convolution whose backward is as fast as its forward.
//!
//! candle's CPU conv2d computes the input gradient through `conv_transpose2d`, a per-pixel loop
//! that makes a ResNet block's backward about ten times slower than PyTorch's. Here forward and
//! both gradients are im2col plus one gemm per image (the input gradient is a gemm with the
//! transposed kernel followed by col2im), in parallel over images. Off the CPU, or for dtypes
//! other than f32/f64, candle's own conv2d runs.
//!
//! Images are (N, C, H, W) as in PyTorch, or channels-last (N, H, W, C) through
//! [`Conv2d::forward_channels_last`]. Channels-last is the faster one past the first layer: each
//! kernel tap of an output position is one contiguous run of C values (channels-first, a row of the
//! column matrix is a strided run of the output width, 4 values at 7x7 and stride 2, so im2col is
//! mostly per-row overhead), the gemm reads and writes the activations in place, and nothing is
//! transposed. Weights keep PyTorch's (O, C, k, k) layout in both.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Init, VarBuilder};
use contrastive_core::kernel::{
    contiguous_slice, gemm, gemm_into_uninit, with_cpu_slice, written_vec, KernelFloat, Strided, Threads,
};
use contrastive_core::with_kernel_float;
use rayon::prelude::*;
use std::borrow::Cow;
use std::mem::MaybeUninit;

pub(crate) use crate::unfold::Dims;
use crate::unfold::{col2im, columns, images_per_unfold, kernel_from_rows, kernel_rows, row2im, unfold};
use crate::winograd;

/// Shape of a convolution: square kernel, same stride and padding on both axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
}

impl ConvGeometry {
    pub(crate) fn out_side(&self, side: usize) -> Result<usize> {
        let padded = side + 2 * self.padding;
        if padded < self.kernel {
            bail!("conv2d: input side {side} with padding {} is smaller than the kernel {}", self.padding, self.kernel);
        }
        Ok((padded - self.kernel) / self.stride + 1)
    }
}

/// A convolution layer (weight `(out, in, k, k)`, optional bias), PyTorch's `nn.Conv2d` layout.
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    geometry: ConvGeometry,
}

impl Conv2d {
    /// The kernel `(out, in, k, k)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias (O), if the layer has one.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The geometry.
    pub fn geometry(&self) -> ConvGeometry {
        self.geometry
    }
}

/// A convolution with variables `weight` and, if `bias`, `bias` under `vb` (PyTorch's default
/// initialisation, U(±1/√fan_in)).
pub fn conv2d(geometry: ConvGeometry, bias: bool, vb: VarBuilder) -> Result<Conv2d> {
    if geometry.stride == 0 || geometry.kernel == 0 || geometry.in_channels == 0 || geometry.out_channels == 0 {
        bail!("conv2d: kernel, stride and channels must be positive, got {geometry:?}");
    }
    let ConvGeometry { in_channels, out_channels, kernel, .. } = geometry;
    let weight = vb.get_with_hints(
        (out_channels, in_channels, kernel, kernel),
        "weight",
        Init::Kaiming {
            dist: candle_nn::init::NormalOrUniform::Uniform,
            fan: candle_nn::init::FanInOut::FanIn,
            non_linearity: candle_nn::init::NonLinearity::ReLU,
        },
    )?;
    let bias = if bias {
        let bound = 1.0 / ((in_channels * kernel * kernel) as f64).sqrt();
        Some(vb.get_with_hints(out_channels, "bias", Init::Uniform { lo: -bound, up: bound })?)
    } else {
        None
    };
    Ok(Conv2d { weight, bias, geometry })
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, _, _) = x.dims4()?;
        if c != self.geometry.in_channels {
            bail!("conv2d: input has {c} channels, the layer expects {}", self.geometry.in_channels);
        }
        let y = conv2d_forward(x, &self.weight, self.geometry)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}

impl Conv2d {
    /// The convolution of channels-last images: (N, H, W, C) to (N, OH, OW, O).
    pub fn forward_channels_last(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, _, c) = x.dims4()?;
        if c != self.geometry.in_channels {
            bail!(
                "conv2d: channels-last input {:?} has {c} channels, the layer expects {}",
                x.dims(),
                self.geometry.in_channels
            );
        }
        let y = conv2d_forward_channels_last(x, &self.weight, self.geometry)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

fn runs_fused(x: &Tensor, weight: &Tensor) -> bool {
    contrastive_core::kernel::runs_kernel(x) && weight.dtype() == x.dtype()
}

/// Convolution of `x` (N, C, H, W) with `weight` (O, C, k, k): the im2col op on the CPU in f32 and
/// f64, candle's conv2d elsewhere.
pub fn conv2d_forward(x: &Tensor, weight: &Tensor, geometry: ConvGeometry) -> Result<Tensor> {
    if runs_fused(x, weight) {
        x.contiguous()?.apply_op2(&weight.contiguous()?, ConvOp { geometry, channels_last: false })
    } else {
        conv2d_generic(x, weight, geometry)
    }
}

/// The device-generic convolution of (N, C, H, W): candle's conv2d on an input padded here and
/// cut to the rows and columns the windows reach, so that (extent - kernel) is a multiple of the
/// stride. candle's conv2d backward gives the input gradient a wrong shape otherwise (9 columns
/// at stride 2, say).
fn conv2d_generic(x: &Tensor, weight: &Tensor, geometry: ConvGeometry) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (k, s, p) = (geometry.kernel, geometry.stride, geometry.padding);
    if h + 2 * p < k || w + 2 * p < k {
        bail!("convolution: input {:?} is smaller than the kernel {k} with padding {p}", x.dims());
    }
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let x = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
    x.narrow(2, 0, (oh - 1) * s + k)?.narrow(3, 0, (ow - 1) * s + k)?.conv2d(weight, 0, s, 1, 1)
}

/// Convolution of channels-last `x` (N, H, W, C) with `weight` (O, C, k, k), giving (N, OH, OW, O):
/// the im2row op on the CPU in f32 and f64, candle's conv2d between permutes elsewhere.
pub fn conv2d_forward_channels_last(x: &Tensor, weight: &Tensor, geometry: ConvGeometry) -> Result<Tensor> {
    if runs_fused(x, weight) {
        x.contiguous()?.apply_op2(&weight.contiguous()?, ConvOp { geometry, channels_last: true })
    } else {
        conv2d_generic(&x.permute((0, 3, 1, 2))?, weight, geometry)?.permute((0, 2, 3, 1))
    }
}

struct ConvOp {
    geometry: ConvGeometry,
    /// Images (N, H, W, C) rather than (N, C, H, W).
    channels_last: bool,
}

/// Images per task: enough that one gemm has about 2048 output columns (small late feature maps
/// are batched, so the gemm is not starved), at most 64. It depends on the shapes only, so the
/// weight-gradient sums run in one order whatever the thread count, and the result repeats bit
/// for bit.
fn images_per_task(positions: usize) -> usize {
    2048usize.div_ceil(positions.max(1)).clamp(1, 64)
}

/// Images per task of a channels-last convolution of `images` images: one block of Winograd's
/// tiles, or as [`images_per_task`] but at most [`NARROW_TASK`] images below [`WIDE_OUTPUT`]
/// channels. Never a function of the batch: a data-parallel run then sums each process's tasks
/// as one process sums the global batch's.
fn channels_last_images_per_task(d: &Dims, images: usize) -> usize {
    if winograd::applies(d, images) {
        winograd::images_per_block(d, images)
    } else if d.o < WIDE_OUTPUT {
        images_per_task(d.positions()).min(NARROW_TASK)
    } else {
        images_per_task(d.positions())
    }
}

/// Images per task on the small late maps below [`WIDE_OUTPUT`] channels: one task of a batch of
/// 32 had gemm split its product over the threads, at 60-85% of the rate of two side by side
/// (ResNet-50, 512 channels, 3x3 on 3x3 maps: 7.7 + 13.4 ms against 6.6 + 11.9).
const NARROW_TASK: usize = 16;

/// Output channels from which a task keeps up to 64 images: each task would pack the whole kernel
/// (1024 to 2048 channels, 1x1 stride 2 on 6x6, batch 32: forward 5.8 ms in one task, 6.8 in two).
const WIDE_OUTPUT: usize = 2048;

/// How the products of a task use threads: the task's own where there are at least as many tasks
/// as threads, the pool's where there are fewer (the late, small feature maps put a whole batch in
/// one or two tasks, which left the other cores idle). gemm splits a product over threads by
/// blocks of the output, never along the sum, so the result is the same bits either way.
fn task_threads(images: usize, per_task: usize) -> Threads {
    if images.div_ceil(per_task.max(1)) < rayon::current_num_threads() {
        Threads::Pool
    } else {
        Threads::One
    }
}

fn forward_channels_first<T: KernelFloat>(x: &[T], w: &[T], d: &Dims) -> Vec<T> {
    let (rows, p) = (d.rows(), d.positions());
    let per_task = images_per_task(p);
    let threads = task_threads(x.len() / d.in_len(), per_task);
    let mut y = vec![T::zero(); x.len() / d.in_len() * d.out_len()];
    y.par_chunks_mut(d.out_len() * per_task).zip(x.par_chunks(d.in_len() * per_task)).for_each_init(
        || (Vec::new(), Vec::new()),
        |(col, out), (ys, xs)| {
            let ld = columns(xs, d, col);
            if out.len() < d.o * ld {
                out.resize(d.o * ld, T::zero());
            }
            // Y (O x B·P) = W (O x rows) · col (rows x B·P), then each image's columns to NCHW.
            gemm(
                out,
                (d.o, ld, rows),
                false,
                Strided::new(w, (rows, 1)),
                Strided::new(col, (ld, 1)),
                T::one(),
                threads,
            );
            for (i, yi) in ys.chunks_mut(d.out_len()).enumerate() {
                for (o, dst) in yi.chunks_mut(p).enumerate() {
                    dst.copy_from_slice(&out[o * ld + i * p..][..p]);
                }
            }
        },
    );
    y
}

/// (dx if `need_dx`, dw) from x, w and dy, images (N, C, H, W).
fn backward_channels_first<T: KernelFloat>(
    x: &[T],
    w: &[T],
    dy: &[T],
    d: &Dims,
    need_dx: bool,
) -> (Option<Vec<T>>, Vec<T>) {
    let p = d.positions();
    let threads = task_threads(x.len() / d.in_len(), images_per_task(p));
    let task = |dxs: Option<&mut [MaybeUninit<T>]>, xs: &[T], dys: &[T]| {
        let rows = d.rows();
        let mut col = Vec::new();
        let ld = columns(xs, d, &mut col);
        // dY of the task as (O x B·P).
        let mut g = vec![T::zero(); d.o * ld];
        for (i, dyi) in dys.chunks(d.out_len()).enumerate() {
            for (o, src) in dyi.chunks(p).enumerate() {
                g[o * ld + i * p..][..p].copy_from_slice(src);
            }
        }
        // dW = dY (O x B·P) · colᵀ (B·P x rows)
        let mut dw = vec![T::zero(); d.o * rows];
        gemm(
            &mut dw,
            (d.o, rows, ld),
            false,
            Strided::new(&g, (ld, 1)),
            Strided::new(&col, (1, ld)),
            T::one(),
            threads,
        );
        let Some(dxs) = dxs.map(zeroed) else { return dw };
        // dcol (rows x B·P) = Wᵀ (rows x O) · dY, folded back onto each image.
        gemm(
            &mut col,
            (rows, ld, d.o),
            false,
            Strided::new(w, (1, rows)),
            Strided::new(&g, (ld, 1)),
            T::one(),
            threads,
        );
        for (i, dxi) in dxs.chunks_mut(d.in_len()).enumerate() {
            col2im(&col[i * p..], d, dxi, ld);
        }
        dw
    };
    let (dx, dw) = over_tasks(x, dy, (d, images_per_task(p)), need_dx, task);
    (dx, dw)
}

/// Runs a backward `task` on each group of `per_task` images (with its slice of dx, uninitialised,
/// when `need_dx`: the task writes all of it) in parallel, and sums the tasks' weight gradients in
/// task order.
fn over_tasks<T: KernelFloat>(
    x: &[T],
    dy: &[T],
    (d, per_task): (&Dims, usize),
    need_dx: bool,
    task: impl Fn(Option<&mut [MaybeUninit<T>]>, &[T], &[T]) -> Vec<T> + Sync,
) -> (Option<Vec<T>>, Vec<T>) {
    let inputs = x.par_chunks(d.in_len() * per_task).zip(dy.par_chunks(d.out_len() * per_task));
    let mut partials: Vec<Vec<T>> = Vec::new();
    let dx = need_dx.then(|| {
        let fill = |dx: &mut [MaybeUninit<T>]| {
            let tasks = dx.par_chunks_mut(d.in_len() * per_task).zip(inputs.clone());
            partials = tasks.map(|(dxs, (xs, dys))| task(Some(dxs), xs, dys)).collect();
        };
        // SAFETY: the chunks cover dx, and each task writes the whole of its chunk.
        unsafe { written_vec(x.len(), fill) }
    });
    if !need_dx {
        partials = inputs.map(|(xs, dys)| task(None, xs, dys)).collect();
    }
    // Summed in task order into the first task's (one task: nothing to add).
    let mut partials = partials.into_iter();
    let mut dw = partials.next().unwrap_or_else(|| vec![T::zero(); d.o * d.rows()]);
    for part in partials {
        for (a, b) in dw.iter_mut().zip(part) {
            *a += b;
        }
    }
    (dx, dw)
}

/// A slice of dx zeroed for a backward that adds into it.
fn zeroed<T: KernelFloat>(dx: &mut [MaybeUninit<T>]) -> &mut [T] {
    dx.fill(MaybeUninit::new(T::zero()));
    // SAFETY: every element was written just above, and MaybeUninit<T> has T's layout.
    unsafe { &mut *(dx as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// Channels-last images (N, H, W, C) to (N, OH, OW, O): per task of B images, the rows
/// (B·OH·OW x k·k·C) times the kernel, written straight into the output.
pub(crate) fn forward_channels_last<T: KernelFloat>(x: &[T], w: &[T], d: &Dims) -> Vec<T> {
    forward_channels_last_then(x, w, d, |_, _| {})
}

/// [`forward_channels_last`], with `epilogue(first_row, rows)` applied to each block of output
/// rows (B·OH·OW x O, the first of them row `first_row` of the whole output) right after its
/// product, while the block is still in cache. The blocks are fixed by the shapes alone, never by
/// the thread count.
pub(crate) fn forward_channels_last_then<T: KernelFloat>(
    x: &[T],
    w: &[T],
    d: &Dims,
    epilogue: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let (rows, p) = (d.rows(), d.positions());
    let images = x.len() / d.in_len();
    let per_task = channels_last_images_per_task(d, images);
    let threads = task_threads(images, per_task);
    let winograd = winograd::applies(d, images);
    let u = if winograd { winograd::forward_kernel(w, d) } else { Vec::new() };
    let w = if winograd { Cow::Borrowed(w) } else { kernel_rows(w, d) };
    let sub = if winograd || d.is_pointwise() { per_task } else { images_per_unfold::<T>(d) };
    let fill = |y: &mut [MaybeUninit<T>]| {
        let tasks = y.par_chunks_mut(d.out_len() * per_task).zip(x.par_chunks(d.in_len() * per_task)).enumerate();
        tasks.for_each_init(Default::default, |(col, scratch), (task, (ys, xs))| {
            let blocks = xs.chunks(d.in_len() * sub).zip(ys.chunks_mut(d.out_len() * sub)).enumerate();
            for (k, (xs, ys)) in blocks {
                let ys = if winograd {
                    winograd::forward_block(xs, &u, d, scratch, ys, threads)
                } else {
                    let n = xs.len() / d.in_len() * p;
                    let lhs = unfolded(xs, d, col);
                    // Y (B·P x O) = rows (B·P x k·k·C) · Wᵀ (k·k·C x O)
                    gemm_into_uninit(ys, (n, d.o, rows), lhs, Strided::new(&w, (1, rows)), T::one(), threads)
                };
                epilogue((task * per_task + k * sub) * p, ys);
            }
        });
    };
    // SAFETY: each image's block of output rows is one product's destination, written whole.
    unsafe { written_vec(x.len() / d.in_len() * d.out_len(), fill) }
}

/// The rows matrix of channels-last images as gemm reads it: the images themselves for a 1x1
/// kernel at stride 1 (each position's C channels are its row already, so nothing is copied; half
/// of ResNet-50's convolutions), else unfolded into `col`.
fn unfolded<'a, T: KernelFloat>(xs: &'a [T], d: &Dims, col: &'a mut Vec<T>) -> Strided<'a, T> {
    if d.is_pointwise() {
        return Strided::new(xs, (d.c, 1));
    }
    let strides = unfold(xs, d, col);
    Strided::new(col, strides)
}

/// (dx if `need_dx`, dw) from x, w and dy, images (N, H, W, C).
pub(crate) fn backward_channels_last<T: KernelFloat>(
    x: &[T],
    w: &[T],
    dy: &[T],
    d: &Dims,
    need_dx: bool,
) -> (Option<Vec<T>>, Vec<T>) {
    let (rows, p) = (d.rows(), d.positions());
    let w = kernel_rows(w, d);
    let images = x.len() / d.in_len();
    let per_task = channels_last_images_per_task(d, images);
    let threads = task_threads(images, per_task);
    let winograd = winograd::applies(d, images);
    let u = if winograd { winograd::backward_kernel(&w, d) } else { Vec::new() };
    let task = |dxs: Option<&mut [MaybeUninit<T>]>, xs: &[T], dys: &[T]| {
        if winograd {
            // A task is one block of Winograd's tiles.
            let (mut scratch, mut du) = (winograd::Scratch::default(), vec![T::zero(); u.len()]);
            winograd::backward_block(xs, dys, &u, d, &mut scratch, &mut du, dxs.map(zeroed), threads);
            return winograd::kernel_transform_adjoint(&du, d);
        }
        let sub = if d.is_pointwise() { images_per_task(p) } else { images_per_unfold::<T>(d) };
        let mut col = Vec::new();
        let mut dw = vec![T::zero(); d.o * rows];
        let mut dxs = dxs.map(|dxs| dxs.chunks_mut(d.in_len() * sub));
        for (k, (xs, dys)) in xs.chunks(d.in_len() * sub).zip(dys.chunks(d.out_len() * sub)).enumerate() {
            let n = xs.len() / d.in_len() * p;
            let lhs = unfolded(xs, d, &mut col);
            // dW (O x k·k·C) += dYᵀ (O x B·P) · rows (B·P x k·k·C)
            gemm(&mut dw, (d.o, rows, n), k > 0, Strided::new(dys, (1, d.o)), lhs, T::one(), threads);
            let Some(dxs) = dxs.as_mut().and_then(|it| it.next()) else { continue };
            if d.is_pointwise() {
                // dX (B·P x C) = dY (B·P x O) · W (O x C), written in place.
                gemm_into_uninit(
                    dxs,
                    (n, rows, d.o),
                    Strided::new(dys, (d.o, 1)),
                    Strided::new(&w, (rows, 1)),
                    T::one(),
                    threads,
                );
                continue;
            }
            let dxs = zeroed(dxs);
            if d.c == 1 {
                // dcol (k·k x B·P) = W (k·k x O) · dYᵀ (O x B·P), folded back by col2im (see
                // unfold).
                gemm(
                    &mut col,
                    (rows, n, d.o),
                    false,
                    Strided::new(&w, (1, rows)),
                    Strided::new(dys, (1, d.o)),
                    T::one(),
                    threads,
                );
                for (i, dxi) in dxs.chunks_mut(d.in_len()).enumerate() {
                    col2im(&col[i * p..], d, dxi, n);
                }
            } else {
                // drows (B·P x k·k·C) = dY (B·P x O) · W (O x k·k·C), folded back onto each image.
                gemm(
                    &mut col,
                    (n, rows, d.o),
                    false,
                    Strided::new(dys, (d.o, 1)),
                    Strided::new(&w, (rows, 1)),
                    T::one(),
                    threads,
                );
                for (ci, dxi) in col.chunks(p * rows).zip(dxs.chunks_mut(d.in_len())) {
                    row2im(ci, d, dxi);
                }
            }
        }
        dw
    };
    let (dx, dw) = over_tasks(x, dy, (d, per_task), need_dx, task);
    (dx, kernel_from_rows(dw, d))
}

impl ConvOp {
    fn dims(&self, x: &Layout, w: &Layout) -> Result<Dims> {
        let (_, a, b, c) = x.shape().dims4()?;
        let (c, h, wd) = if self.channels_last { (c, a, b) } else { (a, b, c) };
        let g = self.geometry;
        if w.dims() != [g.out_channels, g.in_channels, g.kernel, g.kernel] || c != g.in_channels {
            let order = if self.channels_last { "(N, H, W, C)" } else { "(N, C, H, W)" };
            bail!("conv2d: input {:?} {order} and weight {:?} do not fit {g:?}", x.dims(), w.dims());
        }
        Dims::new(g, h, wd)
    }

    fn forward<T: KernelFloat>(&self, x: &[T], w: &[T], d: &Dims) -> Vec<T> {
        if self.channels_last {
            forward_channels_last(x, w, d)
        } else {
            forward_channels_first(x, w, d)
        }
    }

    fn gradients<T: KernelFloat>(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
        d: &Dims,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // An input that is neither a variable nor computed from one (the images) needs no gradient.
        let need_dx = x.track_op();
        let backward = if self.channels_last { backward_channels_last } else { backward_channels_first };
        let (dx, dw) = with_cpu_slice(x, "conv2d", |xs: &[T]| {
            with_cpu_slice(w, "conv2d", |ws: &[T]| {
                with_cpu_slice(grad, "conv2d", |gs: &[T]| backward(xs, ws, gs, d, need_dx))
            })
        })???;
        let dx = dx.map(|dx| Tensor::from_vec(dx, x.dims(), x.device())).transpose()?;
        Ok((dx, Some(Tensor::from_vec(dw, w.dims(), w.device())?)))
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        "conv2d-im2col"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = self.dims(l1, l2)?;
        let n = l1.dims()[0];
        let y = with_kernel_float!(s1.dtype(), "conv2d", |T| <T as candle_core::WithDType>::to_cpu_storage_owned(
            self.forward(contiguous_slice(s1, l1, "conv2d")?, contiguous_slice(s2, l2, "conv2d")?, &d,)
        ));
        let shape = if self.channels_last { (n, d.oh, d.ow, d.o) } else { (n, d.o, d.oh, d.ow) };
        Ok((y, Shape::from(shape)))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = self.dims(x.layout(), w.layout())?;
        let grad = grad.contiguous()?;
        with_kernel_float!(x.dtype(), "conv2d", |T| self.gradients::<T>(x, w, &grad, &d))
    }
}
