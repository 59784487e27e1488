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
use candle_core::{bail, CpuStorage, CustomOp2, DType, Device, Layout, Module, Result, Shape, Tensor, WithDType};
use candle_nn::{Init, VarBuilder};
use contrastive_core::nn::cpu::{contiguous_slice, with_cpu_slice};
use rayon::prelude::*;

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
    fn out_side(&self, side: usize) -> Result<usize> {
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
    matches!(x.device(), Device::Cpu) && matches!(x.dtype(), DType::F32 | DType::F64) && weight.dtype() == x.dtype()
}

/// Convolution of `x` (N, C, H, W) with `weight` (O, C, k, k): the im2col op on the CPU in f32 and
/// f64, candle's conv2d elsewhere.
pub fn conv2d_forward(x: &Tensor, weight: &Tensor, geometry: ConvGeometry) -> Result<Tensor> {
    if runs_fused(x, weight) {
        x.contiguous()?.apply_op2(&weight.contiguous()?, ConvOp { geometry, channels_last: false })
    } else {
        x.conv2d(weight, geometry.padding, geometry.stride, 1, 1)
    }
}

/// Convolution of channels-last `x` (N, H, W, C) with `weight` (O, C, k, k), giving (N, OH, OW, O):
/// the im2row op on the CPU in f32 and f64, candle's conv2d between permutes elsewhere.
pub fn conv2d_forward_channels_last(x: &Tensor, weight: &Tensor, geometry: ConvGeometry) -> Result<Tensor> {
    if runs_fused(x, weight) {
        x.contiguous()?.apply_op2(&weight.contiguous()?, ConvOp { geometry, channels_last: true })
    } else {
        x.permute((0, 3, 1, 2))?.conv2d(weight, geometry.padding, geometry.stride, 1, 1)?.permute((0, 2, 3, 1))
    }
}

struct ConvOp {
    geometry: ConvGeometry,
    /// Images (N, H, W, C) rather than (N, C, H, W).
    channels_last: bool,
}

/// The sizes one image needs.
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) o: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    pub(crate) k: usize,
    pub(crate) stride: usize,
    pub(crate) pad: usize,
}

impl Dims {
    pub(crate) fn new(g: ConvGeometry, h: usize, w: usize) -> Result<Self> {
        Ok(Self {
            c: g.in_channels,
            h,
            w,
            o: g.out_channels,
            oh: g.out_side(h)?,
            ow: g.out_side(w)?,
            k: g.kernel,
            stride: g.stride,
            pad: g.padding,
        })
    }
    /// Rows of the column matrix.
    fn rows(&self) -> usize {
        self.c * self.k * self.k
    }
    /// Output positions per image.
    fn positions(&self) -> usize {
        self.oh * self.ow
    }
    fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }
    fn out_len(&self) -> usize {
        self.o * self.positions()
    }
    /// A 1x1 kernel at stride 1 without padding reads the image as its own column matrix.
    fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
    fn taps(&self) -> usize {
        self.k * self.k
    }
}

/// Images per task: enough that one gemm has about 2048 output columns (small late feature maps
/// are batched, so the gemm is not starved), at most 64. It depends on the shapes only, so the
/// weight-gradient sums run in one order whatever the thread count, and the result repeats bit
/// for bit.
fn images_per_task(positions: usize) -> usize {
    2048usize.div_ceil(positions.max(1)).clamp(1, 64)
}

/// `dst (m x n) = [dst +] a (m x k) * b (k x n)`, `a` and `b` given by their row and column
/// strides, `dst` row-major.
#[allow(clippy::too_many_arguments)]
fn gemm<T: WithDType>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    accumulate: bool,
    a: &[T],
    (a_rs, a_cs): (usize, usize),
    b: &[T],
    (b_rs, b_cs): (usize, usize),
) {
    debug_assert!(dst.len() >= m * n);
    debug_assert!(m == 0 || k == 0 || a.len() > (m - 1) * a_rs + (k - 1) * a_cs);
    debug_assert!(k == 0 || n == 0 || b.len() > (k - 1) * b_rs + (n - 1) * b_cs);
    // SAFETY: the slices cover every element the strides reach (checked above in debug builds and
    // by construction of the callers), and `dst` does not alias `a` or `b` (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// The output columns `lo..hi` whose input column `ox·stride + kx - pad` lies inside `0..w`.
fn valid_columns(d: &Dims, kx: usize) -> (usize, usize) {
    let lo = d.pad.saturating_sub(kx).div_ceil(d.stride);
    let hi = if d.w + d.pad > kx { ((d.w + d.pad - kx - 1) / d.stride + 1).min(d.ow) } else { 0 };
    (lo.min(hi), hi)
}

/// Unfolds one image (C, H, W) into its columns of a column matrix (C·k·k rows, row stride `ld`),
/// zeros where the kernel reads padding.
fn im2col<T: WithDType>(x: &[T], d: &Dims, col: &mut [T], ld: usize) {
    let p = d.positions();
    for c in 0..d.c {
        for ky in 0..d.k {
            for kx in 0..d.k {
                let row = &mut col[((c * d.k + ky) * d.k + kx) * ld..][..p];
                if d.is_pointwise() {
                    row.copy_from_slice(&x[c * p..(c + 1) * p]);
                    continue;
                }
                let (lo, hi) = valid_columns(d, kx);
                for oy in 0..d.oh {
                    let iy = (oy * d.stride + ky) as isize - d.pad as isize;
                    let out = &mut row[oy * d.ow..(oy + 1) * d.ow];
                    if iy < 0 || iy as usize >= d.h {
                        out.fill(T::zero());
                        continue;
                    }
                    let src = &x[(c * d.h + iy as usize) * d.w..][..d.w];
                    out[..lo].fill(T::zero());
                    out[hi..].fill(T::zero());
                    let first = lo * d.stride + kx - d.pad;
                    if d.stride == 1 {
                        out[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
                    } else {
                        for (o, &v) in out[lo..hi].iter_mut().zip(src[first..].iter().step_by(d.stride)) {
                            *o = v;
                        }
                    }
                }
            }
        }
    }
}

/// Folds one image's columns (row stride `ld`) back onto it, adding where kernel windows overlap
/// (the adjoint of im2col): adds into `dx`, which the caller has zeroed.
fn col2im<T: WithDType>(col: &[T], d: &Dims, dx: &mut [T], ld: usize) {
    let p = d.positions();
    for c in 0..d.c {
        for ky in 0..d.k {
            for kx in 0..d.k {
                let row = &col[((c * d.k + ky) * d.k + kx) * ld..][..p];
                let (lo, hi) = valid_columns(d, kx);
                if lo >= hi {
                    continue;
                }
                let first = lo * d.stride + kx - d.pad;
                for oy in 0..d.oh {
                    let iy = (oy * d.stride + ky) as isize - d.pad as isize;
                    if iy < 0 || iy as usize >= d.h {
                        continue;
                    }
                    let dst = &mut dx[(c * d.h + iy as usize) * d.w..][..d.w];
                    let src = &row[oy * d.ow + lo..oy * d.ow + hi];
                    if d.stride == 1 {
                        for (o, &v) in dst[first..first + hi - lo].iter_mut().zip(src) {
                            *o += v;
                        }
                    } else {
                        for (o, &v) in dst[first..].iter_mut().step_by(d.stride).zip(src) {
                            *o += v;
                        }
                    }
                }
            }
        }
    }
}

/// The column matrix (C·k·k, B·P) of a task's B images, image i in columns i·P..(i+1)·P.
fn columns<T: WithDType>(xs: &[T], d: &Dims, col: &mut Vec<T>) -> usize {
    let b = xs.len() / d.in_len();
    let ld = b * d.positions();
    // Every element is written by im2col, so only growth needs initialising.
    if col.len() < d.rows() * ld {
        col.resize(d.rows() * ld, T::zero());
    }
    for (i, xi) in xs.chunks(d.in_len()).enumerate() {
        im2col(xi, d, &mut col[i * d.positions()..], ld);
    }
    ld
}

fn forward_channels_first<T: WithDType>(x: &[T], w: &[T], d: &Dims) -> Vec<T> {
    let (rows, p) = (d.rows(), d.positions());
    let per_task = images_per_task(p);
    let mut y = vec![T::zero(); x.len() / d.in_len() * d.out_len()];
    y.par_chunks_mut(d.out_len() * per_task).zip(x.par_chunks(d.in_len() * per_task)).for_each_init(
        || (Vec::new(), Vec::new()),
        |(col, out), (ys, xs)| {
            let ld = columns(xs, d, col);
            if out.len() < d.o * ld {
                out.resize(d.o * ld, T::zero());
            }
            // Y (O x B·P) = W (O x rows) · col (rows x B·P), then each image's columns to NCHW.
            gemm((d.o, ld, rows), out, false, w, (rows, 1), col, (ld, 1));
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
fn backward_channels_first<T: WithDType>(
    x: &[T],
    w: &[T],
    dy: &[T],
    d: &Dims,
    need_dx: bool,
) -> (Option<Vec<T>>, Vec<T>) {
    let p = d.positions();
    let task = |dxs: Option<&mut [T]>, xs: &[T], dys: &[T]| {
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
        gemm((d.o, rows, ld), &mut dw, false, &g, (ld, 1), &col, (1, ld));
        let Some(dxs) = dxs else { return dw };
        // dcol (rows x B·P) = Wᵀ (rows x O) · dY, folded back onto each image.
        gemm((rows, ld, d.o), &mut col, false, w, (1, rows), &g, (ld, 1));
        for (i, dxi) in dxs.chunks_mut(d.in_len()).enumerate() {
            col2im(&col[i * p..], d, dxi, ld);
        }
        dw
    };
    let (dx, dw) = over_tasks(x, dy, d, need_dx, task);
    (dx, dw)
}

/// Runs a backward `task` on each group of [`images_per_task`] images (with its slice of dx,
/// zeroed, when `need_dx`) in parallel, and sums the tasks' weight gradients in task order.
fn over_tasks<T: WithDType>(
    x: &[T],
    dy: &[T],
    d: &Dims,
    need_dx: bool,
    task: impl Fn(Option<&mut [T]>, &[T], &[T]) -> Vec<T> + Sync,
) -> (Option<Vec<T>>, Vec<T>) {
    let per_task = images_per_task(d.positions());
    let mut dx = vec![T::zero(); if need_dx { x.len() } else { 0 }];
    let inputs = x.par_chunks(d.in_len() * per_task).zip(dy.par_chunks(d.out_len() * per_task));
    let partials: Vec<Vec<T>> = if need_dx {
        dx.par_chunks_mut(d.in_len() * per_task).zip(inputs).map(|(dxs, (xs, dys))| task(Some(dxs), xs, dys)).collect()
    } else {
        inputs.map(|(xs, dys)| task(None, xs, dys)).collect()
    };
    let mut dw = vec![T::zero(); d.o * d.rows()];
    for part in partials {
        for (a, b) in dw.iter_mut().zip(part) {
            *a += b;
        }
    }
    (need_dx.then_some(dx), dw)
}

/// The input position (H·W index) a kernel tap of an output position reads, or None in the
/// padding.
fn tap_source(d: &Dims, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<usize> {
    let iy = (oy * d.stride + ky).checked_sub(d.pad).filter(|&iy| iy < d.h)?;
    let ix = (ox * d.stride + kx).checked_sub(d.pad).filter(|&ix| ix < d.w)?;
    Some(iy * d.w + ix)
}

/// Unfolds one channels-last image (H·W, C) into its rows of the transposed column matrix: one
/// row of k·k·C values, ordered (ky, kx, c), per output position; zeros where the kernel reads
/// padding.
fn im2row<T: WithDType>(x: &[T], d: &Dims, rows: &mut [T]) {
    let c = d.c;
    for oy in 0..d.oh {
        for ox in 0..d.ow {
            let row = &mut rows[(oy * d.ow + ox) * d.rows()..][..d.rows()];
            for ky in 0..d.k {
                for kx in 0..d.k {
                    let dst = &mut row[(ky * d.k + kx) * c..][..c];
                    match tap_source(d, oy, ox, ky, kx) {
                        Some(at) => dst.copy_from_slice(&x[at * c..][..c]),
                        None => dst.fill(T::zero()),
                    }
                }
            }
        }
    }
}

/// Images unfolded at a time within a task: a rows matrix of about 1 MiB (an L2 cache) stays in
/// cache between im2row writing it and the gemm packing it; at least 128 rows for the gemm. (On
/// the 2-core test machine the ConvNet step's median went from 209 to 185-190 ms against unfolding
/// the whole task at once.)
fn images_per_unfold<T>(d: &Dims) -> usize {
    let image = d.positions() * d.rows() * std::mem::size_of::<T>();
    ((1 << 20) / image.max(1)).max(128usize.div_ceil(d.positions())).max(1)
}

/// The rows matrix (B·P x k·k·C) of a task's channels-last images, in `col`, and its (row, column)
/// strides as gemm reads it. With one channel a channels-last image is also channels-first, so
/// the matrix is stored transposed, by im2col, whose rows are long runs (im2row would copy a
/// single value per kernel tap).
fn unfold<T: WithDType>(xs: &[T], d: &Dims, col: &mut Vec<T>) -> (usize, usize) {
    let (p, rows) = (d.positions(), d.rows());
    let n = xs.len() / d.in_len() * p;
    // Every element is written below, so only growth needs initialising.
    if col.len() < n * rows {
        col.resize(n * rows, T::zero());
    }
    if d.c == 1 {
        for (i, xi) in xs.chunks(d.in_len()).enumerate() {
            im2col(xi, d, &mut col[i * p..], n);
        }
        (1, n)
    } else {
        for (xi, ci) in xs.chunks(d.in_len()).zip(col.chunks_mut(p * rows)) {
            im2row(xi, d, ci);
        }
        (rows, 1)
    }
}

/// Folds one image's rows back onto it, channels-last (H·W, C), adding where kernel windows
/// overlap (the adjoint of im2row): adds into `dx`, which the caller has zeroed.
fn row2im<T: WithDType>(rows: &[T], d: &Dims, dx: &mut [T]) {
    let c = d.c;
    for oy in 0..d.oh {
        for ox in 0..d.ow {
            let row = &rows[(oy * d.ow + ox) * d.rows()..][..d.rows()];
            for ky in 0..d.k {
                for kx in 0..d.k {
                    if let Some(at) = tap_source(d, oy, ox, ky, kx) {
                        for (o, &v) in dx[at * c..][..c].iter_mut().zip(&row[(ky * d.k + kx) * c..][..c]) {
                            *o += v;
                        }
                    }
                }
            }
        }
    }
}

/// Each consecutive (rows x cols) block of `src`, transposed.
fn transpose_blocks<T: WithDType>(src: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = vec![T::zero(); src.len()];
    for (block, dst) in src.chunks(rows * cols).zip(out.chunks_mut(rows * cols)) {
        for (r, line) in block.chunks(cols).enumerate() {
            for (c, &v) in line.iter().enumerate() {
                dst[c * rows + r] = v;
            }
        }
    }
    out
}

/// The kernel (O, C, k, k) with each output's row in im2row's order (ky, kx, c).
fn kernel_rows<T: WithDType>(w: &[T], d: &Dims) -> Vec<T> {
    transpose_blocks(w, d.c, d.taps())
}

/// A kernel gradient in im2row's order back to (O, C, k, k).
fn kernel_from_rows<T: WithDType>(rows: &[T], d: &Dims) -> Vec<T> {
    transpose_blocks(rows, d.taps(), d.c)
}

/// Channels-last images (N, H, W, C) to (N, OH, OW, O): per task of B images, the rows
/// (B·OH·OW x k·k·C) times the kernel, written straight into the output.
pub(crate) fn forward_channels_last<T: WithDType>(x: &[T], w: &[T], d: &Dims) -> Vec<T> {
    let (rows, p) = (d.rows(), d.positions());
    let per_task = images_per_task(p);
    let w = kernel_rows(w, d);
    let mut y = vec![T::zero(); x.len() / d.in_len() * d.out_len()];
    y.par_chunks_mut(d.out_len() * per_task).zip(x.par_chunks(d.in_len() * per_task)).for_each_init(
        Vec::new,
        |col, (ys, xs)| {
            let sub = images_per_unfold::<T>(d);
            for (xs, ys) in xs.chunks(d.in_len() * sub).zip(ys.chunks_mut(d.out_len() * sub)) {
                let n = xs.len() / d.in_len() * p;
                let strides = unfold(xs, d, col);
                // Y (B·P x O) = rows (B·P x k·k·C) · Wᵀ (k·k·C x O)
                gemm((n, d.o, rows), ys, false, col, strides, &w, (1, rows));
            }
        },
    );
    y
}

/// (dx if `need_dx`, dw) from x, w and dy, images (N, H, W, C).
pub(crate) fn backward_channels_last<T: WithDType>(
    x: &[T],
    w: &[T],
    dy: &[T],
    d: &Dims,
    need_dx: bool,
) -> (Option<Vec<T>>, Vec<T>) {
    let (rows, p) = (d.rows(), d.positions());
    let w = kernel_rows(w, d);
    let task = |dxs: Option<&mut [T]>, xs: &[T], dys: &[T]| {
        let sub = images_per_unfold::<T>(d);
        let mut col = Vec::new();
        let mut dw = vec![T::zero(); d.o * rows];
        let mut dxs = dxs.map(|dxs| dxs.chunks_mut(d.in_len() * sub));
        for (k, (xs, dys)) in xs.chunks(d.in_len() * sub).zip(dys.chunks(d.out_len() * sub)).enumerate() {
            let n = xs.len() / d.in_len() * p;
            let strides = unfold(xs, d, &mut col);
            // dW (O x k·k·C) += dYᵀ (O x B·P) · rows (B·P x k·k·C)
            gemm((d.o, rows, n), &mut dw, k > 0, dys, (1, d.o), &col, strides);
            let Some(dxs) = dxs.as_mut().and_then(|it| it.next()) else { continue };
            if d.c == 1 {
                // dcol (k·k x B·P) = W (k·k x O) · dYᵀ (O x B·P), folded back by col2im (see
                // unfold).
                gemm((rows, n, d.o), &mut col, false, &w, (1, rows), dys, (1, d.o));
                for (i, dxi) in dxs.chunks_mut(d.in_len()).enumerate() {
                    col2im(&col[i * p..], d, dxi, n);
                }
            } else {
                // drows (B·P x k·k·C) = dY (B·P x O) · W (O x k·k·C), folded back onto each image.
                gemm((n, rows, d.o), &mut col, false, dys, (d.o, 1), &w, (rows, 1));
                for (ci, dxi) in col.chunks(p * rows).zip(dxs.chunks_mut(d.in_len())) {
                    row2im(ci, d, dxi);
                }
            }
        }
        dw
    };
    let (dx, dw) = over_tasks(x, dy, d, need_dx, task);
    (dx, kernel_from_rows(&dw, d))
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

    fn forward<T: WithDType>(&self, x: &[T], w: &[T], d: &Dims) -> Vec<T> {
        if self.channels_last {
            forward_channels_last(x, w, d)
        } else {
            forward_channels_first(x, w, d)
        }
    }

    fn gradients<T: WithDType>(
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
        let y = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(self.forward(
                contiguous_slice(s1, l1, "conv2d")?,
                contiguous_slice(s2, l2, "conv2d")?,
                &d,
            )),
            CpuStorage::F64(_) => CpuStorage::F64(self.forward(
                contiguous_slice(s1, l1, "conv2d")?,
                contiguous_slice(s2, l2, "conv2d")?,
                &d,
            )),
            other => bail!("conv2d: f32 or f64 expected, got {:?}", other.dtype()),
        };
        let shape = if self.channels_last { (n, d.oh, d.ow, d.o) } else { (n, d.o, d.oh, d.ow) };
        Ok((y, Shape::from(shape)))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = self.dims(x.layout(), w.layout())?;
        let grad = grad.contiguous()?;
        match x.dtype() {
            DType::F32 => self.gradients::<f32>(x, w, &grad, &d),
            _ => self.gradients::<f64>(x, w, &grad, &d),
        }
    }
}
