//! The toolkit every CPU kernel of the workspace shares (the fused losses and `nn` here, the
//! convolution and BatchNorm of `contrastive-vision`): one float trait for the element types the
//! kernels run in, and one matrix product over strided operands.

mod cpu;
mod exp;
mod path;

pub use cpu::{contiguous_slice, with_cpu_slice};
pub use path::{
    generic_ops_forced, path_differences, runs_kernel, set_generic_ops, with_generic_ops, OpPath, GENERIC_OPS_ENV,
};

use candle_core::WithDType;
pub use exp::VectorWidth;
pub(crate) use exp::{exp_cephes, exp_shifted_sum_f32, exp_shifted_sum_f64};
use num_traits::Float;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// The element types the kernels run in (f32 and f64).
pub trait KernelFloat:
    Float
    + WithDType
    + Send
    + Sync
    + 'static
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::ops::DivAssign
{
    /// `row[j] = exp(row[j] - shift)`, returning the sum (vectorised for both types).
    fn exp_shifted_sum(row: &mut [Self], shift: Self) -> Self;
}

impl KernelFloat for f32 {
    fn exp_shifted_sum(row: &mut [Self], shift: Self) -> Self {
        exp_shifted_sum_f32(row, shift)
    }
}

impl KernelFloat for f64 {
    fn exp_shifted_sum(row: &mut [Self], shift: Self) -> Self {
        exp_shifted_sum_f64(row, shift)
    }
}

/// Runs `$body` with the type alias `$T` set to the element type `$dtype` names (f32 or f64);
/// any other type is an error naming `$op`. The one dispatch of every custom op's CPU paths:
///
/// ```
/// use candle_core::{DType, WithDType};
/// fn bytes(dtype: DType) -> candle_core::Result<usize> {
///     Ok(contrastive_core::with_kernel_float!(dtype, "demo", |T| std::mem::size_of::<T>()))
/// }
/// assert_eq!((bytes(DType::F32).unwrap(), bytes(DType::F64).unwrap()), (4, 8));
/// assert!(bytes(DType::U8).unwrap_err().to_string().contains("demo: f32 or f64 expected"));
/// ```
#[macro_export]
macro_rules! with_kernel_float {
    ($dtype:expr, $op:expr, |$T:ident| $body:expr) => {
        match $dtype {
            candle_core::DType::F32 => {
                type $T = f32;
                $body
            }
            candle_core::DType::F64 => {
                type $T = f64;
                $body
            }
            other => candle_core::bail!("{}: f32 or f64 expected, got {:?}", $op, other),
        }
    };
}

/// A matrix operand read in place: element (i, j) is `data[i * row_stride + j * col_stride]`, so
/// a row-major matrix is `(cols, 1)` and its transpose `(1, cols)`.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a, T> {
    /// The elements.
    pub data: &'a [T],
    /// Step between rows.
    pub row_stride: usize,
    /// Step between columns.
    pub col_stride: usize,
}

impl<'a, T> Strided<'a, T> {
    /// `data` with `(row_stride, col_stride)`.
    pub fn new(data: &'a [T], (row_stride, col_stride): (usize, usize)) -> Self {
        Self { data, row_stride, col_stride }
    }

    /// Whether a (rows, cols) matrix under these strides lies inside `data`.
    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || self.data.len() > (rows - 1) * self.row_stride + (cols - 1) * self.col_stride
    }
}

/// How a product uses threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// The calling thread only (the caller already runs products in parallel).
    One,
    /// The current rayon pool.
    Pool,
}

/// `dst (m × n, row-major) = [dst +] scale · a (m × k) · b (k × n)`, on gemm's kernels (AVX-512
/// where the CPU has it). Panics if an operand or `dst` is smaller than its shape and strides
/// need: a caller's bug, never the data's.
pub fn gemm<T: KernelFloat>(
    dst: &mut [T],
    dims: (usize, usize, usize),
    accumulate: bool,
    a: Strided<'_, T>,
    b: Strided<'_, T>,
    scale: T,
    threads: Threads,
) {
    assert!(dst.len() >= dims.0 * dims.1, "gemm: destination holds {} of {} x {}", dst.len(), dims.0, dims.1);
    // SAFETY: `dst` holds m × n initialised elements (checked above).
    unsafe { gemm_raw(dst.as_mut_ptr(), dims, accumulate, a, b, scale, threads) }
}

/// [`gemm()`] without accumulation into an uninitialised `dst`, which it writes whole (gemm never
/// reads the destination it does not accumulate into): for a product into a fresh buffer, which
/// zeroing first would cost a pass of its own. Returns `dst`, now initialised.
pub fn gemm_into_uninit<'d, T: KernelFloat>(
    dst: &'d mut [MaybeUninit<T>],
    dims: (usize, usize, usize),
    a: Strided<'_, T>,
    b: Strided<'_, T>,
    scale: T,
    threads: Threads,
) -> &'d mut [T] {
    let (m, n, _) = dims;
    assert!(dst.len() >= m * n, "gemm: destination holds {} of {m} x {n}", dst.len());
    let dst = &mut dst[..m * n];
    // SAFETY: `dst` holds m × n elements (checked above); without accumulation gemm writes every
    // one of them and reads none.
    unsafe {
        gemm_raw(dst.as_mut_ptr().cast::<T>(), dims, false, a, b, scale, threads);
        &mut *(dst as *mut [MaybeUninit<T>] as *mut [T])
    }
}

/// A vector of `len` elements for a kernel that writes every one of them: `fill` gets them
/// uninitialised (as `vec![0; len]` would not leave them, at the cost of a zeroing pass).
///
/// # Safety
///
/// `fill` must initialise every element of the slice it is given before it returns.
pub unsafe fn written_vec<T>(len: usize, fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the capacity is at least `len`, and `fill` initialised the first `len` elements
    // (the caller's contract).
    unsafe { v.set_len(len) };
    v
}

/// The product behind [`gemm()`] and [`gemm_into_uninit`].
///
/// # Safety
///
/// `dst` must be valid for writes of m × n elements (and for reads of them when `accumulate`),
/// and alias neither operand.
unsafe fn gemm_raw<T: KernelFloat>(
    dst: *mut T,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    a: Strided<'_, T>,
    b: Strided<'_, T>,
    scale: T,
    threads: Threads,
) {
    assert!(a.covers(m, k) && b.covers(k, n), "gemm: an operand is smaller than {m} x {k} x {n} under its strides");
    let parallelism = match (threads, rayon::current_num_threads()) {
        (Threads::One, _) | (Threads::Pool, 0 | 1) => gemm::Parallelism::None,
        (Threads::Pool, t) => gemm::Parallelism::Rayon(t),
    };
    // SAFETY: every element the strides reach lies inside its operand's slice (checked above),
    // and `dst` is valid and distinct (the caller's contract).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            if accumulate { T::one() } else { T::zero() },
            scale,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Elements per partial sum of [`column_sums`]: a block holds `max(1, SUM_BLOCK / width)` rows,
/// a function of the width only, so the sum runs in one order on any number of threads.
const SUM_BLOCK: usize = 1 << 16;

/// The column sums of `g`, rows of `width` (a bias's or a shift's gradient): partial sums over
/// blocks of rows in parallel, added in order, all in f64 (so the result is the exact sum rounded
/// once, whatever the blocks: the data-parallel tests compare a batch summed whole with its halves
/// summed apart, through layers that amplify rounding).
pub fn column_sums<T: KernelFloat>(g: &[T], width: usize) -> Vec<T> {
    let rows_per_block = (SUM_BLOCK / width.max(1)).max(1);
    let partials: Vec<Vec<f64>> = g
        .par_chunks(width.max(1) * rows_per_block)
        .map(|rows| {
            let mut acc = vec![0.0f64; width];
            for row in rows.chunks(width.max(1)) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += WithDType::to_f64(v);
                }
            }
            acc
        })
        .collect();
    let mut sums = vec![0.0f64; width];
    for p in partials {
        for (s, v) in sums.iter_mut().zip(p) {
            *s += v;
        }
    }
    sums.into_iter().map(<T as WithDType>::from_f64).collect()
}
