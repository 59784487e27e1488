//! A 2-D convolution whose backward is as fast as its forward.
//!
//! candle's CPU conv2d computes the input gradient through `conv_transpose2d`, a per-pixel loop
//! that makes a ResNet block's backward about ten times slower than PyTorch's. Here forward and
//! both gradients are im2col plus one gemm per image (the input gradient is a gemm with the
//! transposed kernel followed by col2im), in parallel over images. Off the CPU, or for dtypes
//! other than f32/f64, candle's own conv2d runs.

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

/// Convolution of `x` (N, C, H, W) with `weight` (O, C, k, k): the im2col op on the CPU in f32 and
/// f64, candle's conv2d elsewhere.
pub fn conv2d_forward(x: &Tensor, weight: &Tensor, geometry: ConvGeometry) -> Result<Tensor> {
    let fused = matches!(x.device(), Device::Cpu) && matches!(x.dtype(), DType::F32 | DType::F64);
    if fused && weight.dtype() == x.dtype() {
        x.contiguous()?.apply_op2(&weight.contiguous()?, ConvOp { geometry })
    } else {
        x.conv2d(weight, geometry.padding, geometry.stride, 1, 1)
    }
}

struct ConvOp {
    geometry: ConvGeometry,
}

/// The sizes one image needs.
#[derive(Clone, Copy)]
struct Dims {
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    oh: usize,
    ow: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Dims {
    fn new(g: ConvGeometry, h: usize, w: usize) -> Result<Self> {
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
}

/// Images per task: enough that one gemm has about 2048 output columns (small late feature maps
/// are batched, so the gemm is not starved), at most 64. It depends on the shapes only, so the
/// weight-gradient sums run in one order whatever the thread count, and the result repeats bit
/// for bit.
fn images_per_task(positions: usize) -> usize {
    2048usize.div_ceil(positions.max(1)).clamp(1, 64)
}

/// `dst (m x n) = [dst +] a (m x k) * b (k x n)`, each given by its row and column strides.
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
/// (the adjoint of im2col).
fn col2im<T: WithDType>(col: &[T], d: &Dims, dx: &mut [T], ld: usize) {
    dx.fill(T::zero());
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
    col.resize(d.rows() * ld, T::zero());
    for (i, xi) in xs.chunks(d.in_len()).enumerate() {
        im2col(xi, d, &mut col[i * d.positions()..], ld);
    }
    ld
}

fn forward<T: WithDType>(x: &[T], w: &[T], d: &Dims) -> Vec<T> {
    let (rows, p) = (d.rows(), d.positions());
    let per_task = images_per_task(p);
    let mut y = vec![T::zero(); x.len() / d.in_len() * d.out_len()];
    y.par_chunks_mut(d.out_len() * per_task).zip(x.par_chunks(d.in_len() * per_task)).for_each_init(
        || (Vec::new(), Vec::new()),
        |(col, out), (ys, xs)| {
            let ld = columns(xs, d, col);
            out.resize(d.o * ld, T::zero());
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

/// (dx, dw) from x, w and dy.
fn backward<T: WithDType>(x: &[T], w: &[T], dy: &[T], d: &Dims) -> (Vec<T>, Vec<T>) {
    let (rows, p) = (d.rows(), d.positions());
    let per_task = images_per_task(p);
    let mut dx = vec![T::zero(); x.len()];
    let partials: Vec<Vec<T>> = dx
        .par_chunks_mut(d.in_len() * per_task)
        .zip(x.par_chunks(d.in_len() * per_task))
        .zip(dy.par_chunks(d.out_len() * per_task))
        .map(|((dxs, xs), dys)| {
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
            // dcol (rows x B·P) = Wᵀ (rows x O) · dY, folded back onto each image.
            gemm((rows, ld, d.o), &mut col, false, w, (1, rows), &g, (ld, 1));
            for (i, dxi) in dxs.chunks_mut(d.in_len()).enumerate() {
                col2im(&col[i * p..], d, dxi, ld);
            }
            dw
        })
        .collect();
    let mut dw = vec![T::zero(); d.o * rows];
    for part in partials {
        for (a, b) in dw.iter_mut().zip(part) {
            *a += b;
        }
    }
    (dx, dw)
}

impl ConvOp {
    fn dims(&self, x: &Layout, w: &Layout) -> Result<Dims> {
        let (_, c, h, wd) = x.shape().dims4()?;
        let g = self.geometry;
        if w.dims() != [g.out_channels, g.in_channels, g.kernel, g.kernel] || c != g.in_channels {
            bail!("conv2d: input {:?} and weight {:?} do not fit {g:?}", x.dims(), w.dims());
        }
        Dims::new(g, h, wd)
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
            CpuStorage::F32(_) => {
                CpuStorage::F32(forward(contiguous_slice(s1, l1, "conv2d")?, contiguous_slice(s2, l2, "conv2d")?, &d))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(forward(contiguous_slice(s1, l1, "conv2d")?, contiguous_slice(s2, l2, "conv2d")?, &d))
            }
            other => bail!("conv2d: f32 or f64 expected, got {:?}", other.dtype()),
        };
        Ok((y, Shape::from((n, d.o, d.oh, d.ow))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = self.dims(x.layout(), w.layout())?;
        let grad = grad.contiguous()?;
        let (dx, dw) = match x.dtype() {
            DType::F32 => gradients::<f32>(x, w, &grad, &d)?,
            _ => gradients::<f64>(x, w, &grad, &d)?,
        };
        // An input that is neither a variable nor computed from one (the images) needs no gradient.
        Ok((x.track_op().then_some(dx), Some(dw)))
    }
}

fn gradients<T: WithDType>(x: &Tensor, w: &Tensor, grad: &Tensor, d: &Dims) -> Result<(Tensor, Tensor)> {
    let (dx, dw) = with_cpu_slice(x, "conv2d", |xs: &[T]| {
        with_cpu_slice(w, "conv2d", |ws: &[T]| with_cpu_slice(grad, "conv2d", |gs: &[T]| backward(xs, ws, gs, d)))
    })???;
    Ok((Tensor::from_vec(dx, x.dims(), x.device())?, Tensor::from_vec(dw, w.dims(), w.device())?))
}
