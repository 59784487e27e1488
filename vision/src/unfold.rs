//! Unfolding images for convolution as a gemm: the column matrix of channels-first images
//! (im2col) and the row matrix of channels-last ones (im2row), their adjoints (col2im, row2im)
//! for the input gradient, and the kernel in each order. [`Dims`] holds the sizes one image needs.

use crate::conv::ConvGeometry;
use candle_core::{Result, WithDType};
use contrastive_core::kernel::written_vec;
use rayon::prelude::*;
use std::borrow::Cow;
use std::mem::MaybeUninit;

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
    pub(crate) fn rows(&self) -> usize {
        self.c * self.k * self.k
    }
    /// Output positions per image.
    pub(crate) fn positions(&self) -> usize {
        self.oh * self.ow
    }
    pub(crate) fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }
    pub(crate) fn out_len(&self) -> usize {
        self.o * self.positions()
    }
    /// A 1x1 kernel at stride 1 without padding reads the image as its own column matrix.
    pub(crate) fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
    pub(crate) fn taps(&self) -> usize {
        self.k * self.k
    }
}

/// The output columns `lo..hi` whose input column `ox·stride + kx - pad` lies inside `0..w`.
pub(crate) fn valid_columns(d: &Dims, kx: usize) -> (usize, usize) {
    let lo = d.pad.saturating_sub(kx).div_ceil(d.stride);
    let hi = if d.w + d.pad > kx { ((d.w + d.pad - kx - 1) / d.stride + 1).min(d.ow) } else { 0 };
    (lo.min(hi), hi)
}

/// Unfolds one image (C, H, W) into its columns of a column matrix (C·k·k rows, row stride `ld`),
/// zeros where the kernel reads padding.
pub(crate) fn im2col<T: WithDType>(x: &[T], d: &Dims, col: &mut [T], ld: usize) {
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
pub(crate) fn col2im<T: WithDType>(col: &[T], d: &Dims, dx: &mut [T], ld: usize) {
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
pub(crate) fn columns<T: WithDType>(xs: &[T], d: &Dims, col: &mut Vec<T>) -> usize {
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

/// For output position (oy, ox) and kernel row `ky`: the input row it reads and the taps
/// `lo..hi` of that kernel row that fall inside the image, whose inputs are consecutive in a
/// channels-last image (from input column `ox·stride + lo - pad` on); None if the kernel row
/// reads padding only.
fn tap_run(d: &Dims, oy: usize, ox: usize, ky: usize) -> Option<(usize, usize, usize)> {
    let iy = (oy * d.stride + ky).checked_sub(d.pad).filter(|&iy| iy < d.h)?;
    let left = ox * d.stride;
    let lo = d.pad.saturating_sub(left).min(d.k);
    let hi = (d.w + d.pad).saturating_sub(left).min(d.k);
    (lo < hi).then_some((iy, lo, hi))
}

/// Unfolds one channels-last image (H·W, C) into its rows of the transposed column matrix: one
/// row of k·k·C values, ordered (ky, kx, c), per output position; zeros where the kernel reads
/// padding. A kernel row's taps read k·C consecutive inputs, so each is one copy (with C = 3 in
/// an RGB stem, copying tap by tap was 12 bytes a call).
pub(crate) fn im2row<T: WithDType>(x: &[T], d: &Dims, rows: &mut [T]) {
    let (c, run) = (d.c, d.k * d.c);
    for oy in 0..d.oh {
        for ox in 0..d.ow {
            let row = &mut rows[(oy * d.ow + ox) * d.rows()..][..d.rows()];
            for (ky, dst) in row.chunks_mut(run).enumerate() {
                let Some((iy, lo, hi)) = tap_run(d, oy, ox, ky) else {
                    dst.fill(T::zero());
                    continue;
                };
                let first = (iy * d.w + ox * d.stride + lo - d.pad) * c;
                dst[..lo * c].fill(T::zero());
                dst[lo * c..hi * c].copy_from_slice(&x[first..first + (hi - lo) * c]);
                dst[hi * c..].fill(T::zero());
            }
        }
    }
}

/// Images unfolded at a time within a task: a rows matrix of about 1 MiB (an L2 cache) stays in
/// cache between im2row writing it and the gemm reading it, but at least [`MIN_UNFOLD_ROWS`]
/// rows. (On the 2-core test machine the ConvNet step's median went from 209 to 185-190 ms
/// against unfolding the whole task at once.)
pub(crate) fn images_per_unfold<T>(d: &Dims) -> usize {
    let image = d.positions() * d.rows() * std::mem::size_of::<T>();
    ((1 << 20) / image.max(1)).max(MIN_UNFOLD_ROWS.div_ceil(d.positions())).max(1)
}

/// gemm packs the kernel (O x k·k·C) afresh for every product, a transposing copy of all of it:
/// over few rows of images that copy weighs beside the multiply-adds.
/// The deep layers' 3x3 kernels are the largest (ResNet-50's last is 512 x 4608) where a 1 MiB
/// rows matrix holds fewest rows (135 of 4608 at 3x3): with at least 512 rows a product, the
/// ResNet-50 forward at 96x96 went from 235/231 to 196/206 ms, ResNet-18's step at 96x96 from
/// 663/671 to 597/568 ms (at least 128 before).
const MIN_UNFOLD_ROWS: usize = 512;

/// The rows matrix (B·P x k·k·C) of a task's channels-last images, in `col`, and its (row, column)
/// strides as gemm reads it. With one channel a channels-last image is also channels-first, so
/// the matrix is stored transposed, by im2col, whose rows are long runs (im2row would copy a
/// single value per kernel tap).
pub(crate) fn unfold<T: WithDType>(xs: &[T], d: &Dims, col: &mut Vec<T>) -> (usize, usize) {
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
/// overlap (the adjoint of im2row, a kernel row's taps at a time): adds into `dx`, which the
/// caller has zeroed.
pub(crate) fn row2im<T: WithDType>(rows: &[T], d: &Dims, dx: &mut [T]) {
    let (c, run) = (d.c, d.k * d.c);
    for oy in 0..d.oh {
        for ox in 0..d.ow {
            let row = &rows[(oy * d.ow + ox) * d.rows()..][..d.rows()];
            for (ky, src) in row.chunks(run).enumerate() {
                let Some((iy, lo, hi)) = tap_run(d, oy, ox, ky) else { continue };
                let first = (iy * d.w + ox * d.stride + lo - d.pad) * c;
                for (o, &v) in dx[first..first + (hi - lo) * c].iter_mut().zip(&src[lo * c..hi * c]) {
                    *o += v;
                }
            }
        }
    }
}

/// Each consecutive (rows x cols) block of `src`, transposed.
pub(crate) fn transpose_blocks<T: WithDType>(src: &[T], rows: usize, cols: usize) -> Vec<T> {
    // In squares of 32 x 32, which stay in cache between their reads and their writes: a
    // ResNet's 512 x 4608 kernel transposed element by element took milliseconds. Blocks of a
    // large kernel are shared among the threads (a pure copy: the same result on
    // any number of them), at least 64k values a piece.
    const SQUARE: usize = 32;
    let size = (rows * cols).max(1);
    let fill = |out: &mut [MaybeUninit<T>]| {
        let pieces = out.par_chunks_mut(size).zip(src.par_chunks(size)).with_min_len((1 << 16) / size);
        pieces.for_each(|(dst, block)| {
            for r0 in (0..rows).step_by(SQUARE) {
                for c0 in (0..cols).step_by(SQUARE) {
                    for r in r0..(r0 + SQUARE).min(rows) {
                        for c in c0..(c0 + SQUARE).min(cols) {
                            dst[c * rows + r].write(block[r * cols + c]);
                        }
                    }
                }
            }
        });
    };
    assert_eq!(src.len() % size, 0, "transpose_blocks: {} values are not whole {rows} x {cols} blocks", src.len());
    // SAFETY: `src` is whole blocks (asserted), and each block's r·cols + c lands once on
    // c·rows + r of its own block: every value of `out` is written.
    unsafe { written_vec(src.len(), fill) }
}

/// The kernel (O, C, k, k) with each output's row in im2row's order (ky, kx, c). A 1x1 kernel is
/// in that order already and is borrowed as it is.
pub(crate) fn kernel_rows<'a, T: WithDType>(w: &'a [T], d: &Dims) -> Cow<'a, [T]> {
    if d.taps() == 1 {
        Cow::Borrowed(w)
    } else {
        Cow::Owned(transpose_blocks(w, d.c, d.taps()))
    }
}

/// A kernel gradient in im2row's order back to (O, C, k, k).
pub(crate) fn kernel_from_rows<T: WithDType>(rows: Vec<T>, d: &Dims) -> Vec<T> {
    if d.taps() == 1 {
        rows
    } else {
        transpose_blocks(&rows, d.taps(), d.c)
    }
}
