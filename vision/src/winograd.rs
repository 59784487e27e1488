//! Winograd's minimal filtering F(4x4, 3x3) for the 3x3 convolutions at stride 1 and padding 1 of
//! channels-last images (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
//! 2016): each 4x4 block of outputs is `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` over the 6x6 input tile `d`
//! around it, so the products over channels are 36 matrix products (one per position ξ of the
//! transformed tile, tiles x C times C x O) of 36/16 = 2.25 multiply-adds per output where the
//! direct convolution has 9: 4 times fewer. The transforms (interpolation at 0, ±1, ±2 and ∞,
//! coefficients up to 8 and down to 1/24) add a few operations per value, compiled for the CPU's
//! widest vectors, and no im2row copy is made. F(2x2, 3x3), which this replaced, saved 2.25
//! times, and its transforms, built on arrays of lanes for baseline x86-64, cost what it saved
//! below 128 channels.
//!
//! The gradients are the adjoints of the same linear maps: the kernel's from the 36 products
//! `dUξ = dMξᵀ · Vξ` over the tiles (then `Gᵀ dU G`), the input's from `dVξ = dMξ · Uξ` folded
//! back by `B dV Bᵀ` onto the overlapping tiles, where `dM = A dY Aᵀ`.

use crate::unfold::{transpose_blocks, Dims};
use contrastive_core::kernel::{gemm, KernelFloat, Strided, Threads, VectorWidth};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Outputs along a tile's side, and the inputs a tile reads along its side (OUT + 2).
const OUT: usize = 4;
const IN: usize = 6;
/// Positions of a transformed tile (6x6), and outputs of a tile (4x4).
const TAPS: usize = IN * IN;
const OUTS: usize = OUT * OUT;

/// Channels transformed at a time: one AVX-512 register of f32.
const LANES: usize = 16;

/// `c` as a T (the transforms' constants, folded at compile time).
#[inline(always)]
fn k<T: KernelFloat>(c: f64) -> T {
    <T as candle_core::WithDType>::from_f64(c)
}

// The transforms along one axis, on one value per position (the interpolation points 0, ±1, ±2 and
// ∞); each 2-D one applies its map to the columns, then the rows, in [`tile_map`].

/// Bᵀ, the input transform:
/// [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1].
#[inline(always)]
fn bt<T: KernelFloat>([x0, x1, x2, x3, x4, x5]: [T; IN]) -> [T; IN] {
    let (t0, t1) = (x4 - k::<T>(4.0) * x2, x3 - k::<T>(4.0) * x1);
    let (t2, t3) = (x4 - x2, k::<T>(2.0) * (x3 - x1));
    [
        k::<T>(4.0) * x0 - k::<T>(5.0) * x2 + x4,
        t0 + t1,
        t0 - t1,
        t2 + t3,
        t2 - t3,
        k::<T>(4.0) * x1 - k::<T>(5.0) * x3 + x5,
    ]
}
/// B, its adjoint (Bᵀ transposed).
#[inline(always)]
fn b<T: KernelFloat>([y0, y1, y2, y3, y4, y5]: [T; IN]) -> [T; IN] {
    let (s12, d21, s34, d43) = (y1 + y2, y2 - y1, y3 + y4, y4 - y3);
    [
        k::<T>(4.0) * y0,
        k::<T>(4.0) * (d21 + y5) + k::<T>(2.0) * d43,
        -k::<T>(5.0) * y0 - k::<T>(4.0) * s12 - s34,
        -d21 - k::<T>(2.0) * d43 - k::<T>(5.0) * y5,
        y0 + s12 + s34,
        y5,
    ]
}
/// Aᵀ = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1], the output transform.
#[inline(always)]
fn at<T: KernelFloat>([x0, x1, x2, x3, x4, x5]: [T; IN]) -> [T; OUT] {
    let (s, d, s2, d2) = (x1 + x2, x1 - x2, x3 + x4, x3 - x4);
    [x0 + s + s2, d + k::<T>(2.0) * d2, s + k::<T>(4.0) * s2, d + k::<T>(8.0) * d2 + x5]
}
/// A, its adjoint.
#[inline(always)]
fn a<T: KernelFloat>([y0, y1, y2, y3]: [T; OUT]) -> [T; IN] {
    let (e, f) = (y0 + y2, y1 + y3);
    let (e2, f2) = (y0 + k::<T>(4.0) * y2, k::<T>(2.0) * y1 + k::<T>(8.0) * y3);
    [y0, e + f, e - f, e2 + f2, e2 - f2, y3]
}
/// G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1], the kernel
/// transform.
#[inline(always)]
fn g<T: KernelFloat>([x0, x1, x2]: [T; 3]) -> [T; IN] {
    let p = -(x0 + x2) * k::<T>(1.0 / 6.0);
    let q = x0 * k::<T>(1.0 / 24.0) + x2 * k::<T>(1.0 / 6.0);
    let (x1_6, x1_12) = (x1 * k::<T>(1.0 / 6.0), x1 * k::<T>(1.0 / 12.0));
    [x0 * k::<T>(0.25), p - x1_6, p + x1_6, q + x1_12, q - x1_12, x2]
}
/// Gᵀ, its adjoint.
#[inline(always)]
fn gt<T: KernelFloat>([y0, y1, y2, y3, y4, y5]: [T; IN]) -> [T; 3] {
    let (s12, s34) = (y1 + y2, y3 + y4);
    [
        y0 * k::<T>(0.25) - s12 * k::<T>(1.0 / 6.0) + s34 * k::<T>(1.0 / 24.0),
        (y2 - y1) * k::<T>(1.0 / 6.0) + (y3 - y4) * k::<T>(1.0 / 12.0),
        (s34 - s12) * k::<T>(1.0 / 6.0) + y5,
    ]
}

/// Runs the 2-D transform `L · X · Lᵀ` whose 1-D map `x ↦ L x` is `f` over a tile of N x N input
/// rows of `len` values (row a·N + b of the tile is `inputs[a·N + b]`), LANES values of each at a
/// time, handing `store(k, first value, values)` the M x M output rows, k = i·M + j (MM = M·M).
/// Written on one value per position and looped over the lanes, so that the loop vectorises into
/// one register per position (built on arrays of lanes, the maps moved them through memory, a
/// `memcpy` per call and more time than the products at 64 channels).
fn tile_map<T: KernelFloat, const N: usize, const M: usize, const NN: usize, const MM: usize>(
    len: usize,
    inputs: &[&[T]; NN],
    f: impl Fn([T; N]) -> [T; M] + Copy,
    store: impl FnMut(usize, usize, &[T]),
) {
    match VectorWidth::of_this_cpu() {
        // SAFETY: the CPU has the features the function enables (checked by `of_this_cpu`).
        #[cfg(target_arch = "x86_64")]
        VectorWidth::Avx512 => unsafe { wide::avx512::<T, N, M, NN, MM>(len, inputs, f, store) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        VectorWidth::Avx2 => unsafe { wide::avx2::<T, N, M, NN, MM>(len, inputs, f, store) },
        _ => tile_map_lanes::<T, N, M, NN, MM>(len, inputs, f, store),
    }
}

/// [`tile_map`]'s loop, inlined into each of [`wide`]'s functions so that it compiles for their
/// vector unit (passed to them as a closure it stayed a function of its own, built for baseline
/// x86-64: SSE on four lanes).
#[inline(always)]
fn tile_map_lanes<T: KernelFloat, const N: usize, const M: usize, const NN: usize, const MM: usize>(
    len: usize,
    inputs: &[&[T]; NN],
    f: impl Fn([T; N]) -> [T; M] + Copy,
    mut store: impl FnMut(usize, usize, &[T]),
) {
    let mut x = [[T::zero(); LANES]; NN];
    let mut out = [[T::zero(); LANES]; MM];
    for first in (0..len).step_by(LANES) {
        let n = LANES.min(len - first);
        for (lanes, row) in x.iter_mut().zip(inputs) {
            put(lanes, &row[first..first + n]);
        }
        for l in 0..LANES {
            // mid[i][b] = (L · column b of X)[i], then output row i = L · mid[i]
            let mut mid = [[T::zero(); N]; M];
            for b in 0..N {
                for (i, v) in f(std::array::from_fn(|a| x[a * N + b][l])).into_iter().enumerate() {
                    mid[i][b] = v;
                }
            }
            for (i, row) in mid.into_iter().enumerate() {
                for (j, v) in f(row).into_iter().enumerate() {
                    out[i * M + j][l] = v;
                }
            }
        }
        for (k, lanes) in out.iter().enumerate() {
            store(k, first, &lanes[..n]);
        }
    }
}

/// [`tile_map_lanes`] compiled for a vector unit.
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{tile_map_lanes, KernelFloat};

    #[target_feature(enable = "avx512f")]
    pub(super) fn avx512<T: KernelFloat, const N: usize, const M: usize, const NN: usize, const MM: usize>(
        len: usize,
        inputs: &[&[T]; NN],
        f: impl Fn([T; N]) -> [T; M] + Copy,
        store: impl FnMut(usize, usize, &[T]),
    ) {
        tile_map_lanes::<T, N, M, NN, MM>(len, inputs, f, store)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn avx2<T: KernelFloat, const N: usize, const M: usize, const NN: usize, const MM: usize>(
        len: usize,
        inputs: &[&[T]; NN],
        f: impl Fn([T; N]) -> [T; M] + Copy,
        store: impl FnMut(usize, usize, &[T]),
    ) {
        tile_map_lanes::<T, N, M, NN, MM>(len, inputs, f, store)
    }
}

/// Copies `src` (at most LANES values) to the start of `dst`: a whole lane as one fixed-size move,
/// which compiles to vector loads and stores where a slice copy of unknown length calls `memcpy`
/// (6% of a ResNet-18 step went to those calls).
#[inline(always)]
fn put<T: Copy>(dst: &mut [T], src: &[T]) {
    let dst = &mut dst[..src.len()];
    match <&[T; LANES]>::try_from(src) {
        Ok(lane) => {
            if let Ok(d) = <&mut [T; LANES]>::try_from(dst) {
                *d = *lane;
            }
        }
        Err(_) => dst.copy_from_slice(src),
    }
}

/// The transformed kernel U as the forward products read it, (36, C, O): `G g Gᵀ` of the kernel
/// `w` (O, C, 3, 3), each tap's C x O block row-major. gemm packs its right operand for every
/// product unless its rows are contiguous, and the late maps' products (few tiles, large kernels)
/// spent more time packing it than multiplying.
pub(crate) fn forward_kernel<T: KernelFloat>(w: &[T], d: &Dims) -> Vec<T> {
    // (C, 3, 3, O): each input channel and tap's O weights contiguous.
    transformed(&transpose_blocks(w, d.o, 9 * d.c), d.c, d.o)
}

/// The transformed kernel U as the backward products read it, (36, O, C), from the kernel in
/// im2row's order (O, ky, kx, C).
pub(crate) fn backward_kernel<T: KernelFloat>(w_rows: &[T], d: &Dims) -> Vec<T> {
    transformed(w_rows, d.o, d.c)
}

/// `G g Gᵀ` of `count` groups of 3x3 rows of `width` values (`taps`, each group's 9 rows in
/// turn), as (36, count, width), the groups in parallel.
fn transformed<T: KernelFloat>(taps: &[T], count: usize, width: usize) -> Vec<T> {
    let mut u = vec![T::zero(); TAPS * count * width];
    let rows = TapRows::new(&mut u, count, width);
    taps.par_chunks(9 * width).enumerate().for_each(|(i, group)| {
        let taps: [&[T]; 9] = std::array::from_fn(|k| &group[k * width..][..width]);
        tile_map::<T, 3, IN, 9, TAPS>(width, &taps, g, |xi, first, v| {
            // SAFETY: group i's rows are this closure's alone.
            put(unsafe { &mut rows.row(xi, i)[first..] }, v)
        });
    });
    u
}

/// The kernel's gradient in im2row's order (O, ky, kx, C) from the transformed one's (36, O, C):
/// `Gᵀ dU G`, the adjoint of [`backward_kernel`].
pub(crate) fn kernel_transform_adjoint<T: KernelFloat>(du: &[T], d: &Dims) -> Vec<T> {
    let (c, o) = (d.c, d.o);
    let mut dw = vec![T::zero(); o * 9 * c];
    dw.par_chunks_mut(9 * c).enumerate().for_each(|(oi, dst)| {
        let rows: [&[T]; TAPS] = std::array::from_fn(|xi| &du[(xi * o + oi) * c..][..c]);
        tile_map::<T, IN, 3, TAPS, 9>(c, &rows, gt, |k, first, v| put(&mut dst[k * c + first..], v));
    });
    dw
}

/// Below this many input or output channels the transforms weigh as much as the products save
/// (each transformed value feeds C or O multiply-adds): timed layer by layer (forward and
/// backward, least of 8 runs), 64 channels on 32x32 maps at batch 64 took 15.0 + 34.5 ms against
/// the direct convolution's 16.4 + 41.8, and on 24x24 at batch 32 3.4 + 6.4 against 4.4 + 9.8.
const MIN_CHANNELS: usize = 64;

/// Multiply-adds per input and output channel that the batch must save over the direct
/// convolution: the kernel's transforms (36 x O x C values written, twice a step, and the
/// gradient's adjoint) are a fixed cost per call, which a few tiles do not repay. 512 channels
/// on 3x3 maps at batch 32 (1440) took 12.6 + 19.0 ms against the direct convolution's 7.8 +
/// 11.5; 256 channels on 6x6 at batch 32 (5760) took 4.0 + 8.3 against 4.8 + 9.6.
const MIN_SAVING: usize = 4096;

/// Whether the convolution of `images` images runs as F(4x4, 3x3): a 3x3 kernel at stride 1 and
/// padding 1, enough channels, a map whose tiles keep the multiply-adds per output (36 per tile
/// over the positions the tiles hold inside the map) at most two thirds of the direct
/// convolution's 9 (a 3x3 map, one tile, has 4 per output; a 2x2 map 9), and a batch that saves
/// enough of them.
pub(crate) fn applies(d: &Dims, images: usize) -> bool {
    let (direct, winograd) = (9 * d.positions(), TAPS * tiles(d));
    d.k == 3
        && d.stride == 1
        && d.pad == 1
        && d.c >= MIN_CHANNELS
        && d.o >= MIN_CHANNELS
        && 3 * winograd <= 2 * direct
        && images * direct.saturating_sub(winograd) >= MIN_SAVING
}

/// 4x4 output tiles per image.
fn tiles(d: &Dims) -> usize {
    d.oh.div_ceil(OUT) * d.ow.div_ceil(OUT)
}

/// Images a block of products covers, and a task of the convolution, for a batch of `images`:
/// about 256 tiles, so that each product's fixed costs weigh little beside it, split evenly (29
/// images of 9 tiles each and then 3 left one thread idle through most of a 32-image batch). A
/// function of the shapes alone, so that the kernel's gradient sums in one order on any number
/// of threads.
pub(crate) fn images_per_block(d: &Dims, images: usize) -> usize {
    let most = 256usize.div_ceil(tiles(d).max(1));
    let blocks = images.div_ceil(most).max(1);
    images.div_ceil(blocks).max(1)
}

/// The output positions (y, x) of tile t's 4x4 outputs, `None` past the map's last row or column.
fn tile_outputs(d: &Dims, t: usize) -> [Option<usize>; OUTS] {
    let tw = d.ow.div_ceil(OUT);
    std::array::from_fn(|k| {
        let (oy, ox) = (OUT * (t / tw) + k / OUT, OUT * (t % tw) + k % OUT);
        (oy < d.oh && ox < d.ow).then_some(oy * d.ow + ox)
    })
}

/// The input positions of tile t's 6x6 inputs, `None` where the tile reaches past the image.
fn tile_inputs(d: &Dims, t: usize) -> [Option<usize>; TAPS] {
    let tw = d.ow.div_ceil(OUT);
    std::array::from_fn(|k| {
        let (iy, ix) = ((OUT * (t / tw) + k / IN).wrapping_sub(1), (OUT * (t % tw) + k % IN).wrapping_sub(1));
        (iy < d.h && ix < d.w).then(|| iy * d.w + ix)
    })
}

/// Tiles per parallel piece of a block's transforms: the whole block (its own task's thread)
/// where the tasks fill the threads, else 8 tiles a piece, so the pool shares the transforms of
/// the late maps' one or two blocks as it shares their products.
fn min_len(threads: Threads, tiles: usize) -> usize {
    match threads {
        Threads::One => tiles.max(1),
        Threads::Pool => 8,
    }
}

/// A (36, T, width) buffer whose rows the parallel pieces of a transform write, each piece the
/// rows of its own tiles, or of a kernel's channels (one tile writes row t of every tap, rows T
/// apart, which no safe split of the slice hands out). Products read each tap's T x width block contiguously; a (T, 36, width)
/// layout, which safe chunks could split, made them gather rows 36 x width apart, and gemm's
/// packing of those took as long as the products on the late maps.
struct TapRows<'a, T> {
    ptr: *mut T,
    len: usize,
    tiles: usize,
    width: usize,
    _buffer: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: the rows handed out to different threads are disjoint (see `row`).
unsafe impl<T: Send> Sync for TapRows<'_, T> {}

impl<'a, T> TapRows<'a, T> {
    fn new(buffer: &'a mut [T], tiles: usize, width: usize) -> Self {
        assert!(buffer.len() >= TAPS * tiles * width, "winograd: a buffer too small for its tiles");
        Self { ptr: buffer.as_mut_ptr(), len: buffer.len(), tiles, width, _buffer: std::marker::PhantomData }
    }

    /// Row `tile` of tap `xi`.
    ///
    /// # Safety
    ///
    /// No two live borrows may name the same row: each tile's rows belong to one piece of work.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, xi: usize, tile: usize) -> &mut [T] {
        let start = (xi * self.tiles + tile) * self.width;
        assert!(xi < TAPS && tile < self.tiles && start + self.width <= self.len, "winograd: row out of range");
        // SAFETY: inside the buffer (checked above), borrowed for 'a; no other borrow of this row
        // is live (the caller's contract).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), self.width) }
    }
}

/// Scratch of one thread: the transformed inputs V (36, T, C) of a block of T tiles (then their
/// gradient dV), the products M (36, T, O) (then their gradient dM), and a row of zeros.
pub(crate) struct Scratch<T> {
    v: Vec<T>,
    m: Vec<T>,
    zeros: Vec<T>,
}

// Not derived: that would ask T for a default of its own.
impl<T> Default for Scratch<T> {
    fn default() -> Self {
        Self { v: Vec::new(), m: Vec::new(), zeros: Vec::new() }
    }
}

impl<T: KernelFloat> Scratch<T> {
    /// V (36, T, C) of `xs`' images, `Bᵀ d B` of each tile, tile t of image i at row
    /// `i·tiles + t`. Returns T.
    fn transform_inputs(&mut self, xs: &[T], d: &Dims, threads: Threads) -> usize {
        let c = d.c;
        let t_all = xs.len() / d.in_len() * tiles(d);
        self.v.resize(TAPS * t_all * c, T::zero());
        self.zeros.resize(c.max(d.o), T::zero());
        let Scratch { v, zeros, .. } = self;
        let zeros = &zeros[..c];
        let v = TapRows::new(v, t_all, c);
        (0..t_all).into_par_iter().with_min_len(min_len(threads, t_all)).for_each(|row| {
            let (x, t) = (&xs[row / tiles(d) * d.in_len()..][..d.in_len()], row % tiles(d));
            let rows = tile_inputs(d, t).map(|p| p.map_or(zeros, |p| &x[p * c..][..c]));
            tile_map::<T, IN, IN, TAPS, TAPS>(c, &rows, bt, |xi, first, vals| {
                // SAFETY: this tile's rows are this closure's alone.
                put(unsafe { &mut v.row(xi, row)[first..] }, vals)
            });
        });
        t_all
    }
}

/// The convolution of a block of channels-last images `xs` with the transformed kernel `u`
/// ([`forward_kernel`]),
/// written whole into `ys` (their outputs, (images, OH, OW, O)). Returns `ys`, initialised.
pub(crate) fn forward_block<'y, T: KernelFloat>(
    xs: &[T],
    u: &[T],
    d: &Dims,
    scratch: &mut Scratch<T>,
    ys: &'y mut [MaybeUninit<T>],
    threads: Threads,
) -> &'y mut [T] {
    let (c, o) = (d.c, d.o);
    let t_all = scratch.transform_inputs(xs, d, threads);
    let Scratch { v, m, .. } = scratch;
    m.resize(TAPS * t_all * o, T::zero());
    for xi in 0..TAPS {
        // Mξ (T x O) = Vξ (T x C) · Uξᵀ (C x O)
        let vx = Strided::new(&v[xi * t_all * c..][..t_all * c], (c, 1));
        let mx = &mut m[xi * t_all * o..][..t_all * o];
        let ux = Strided::new(&u[xi * c * o..][..c * o], (o, 1));
        gemm(mx, (t_all, o, c), false, vx, ux, T::one(), threads);
    }
    // Y = Aᵀ M A per tile.
    let per_image = min_len(threads, t_all).div_ceil(tiles(d));
    ys.par_chunks_mut(d.out_len()).with_min_len(per_image).enumerate().for_each(|(i, y)| {
        for t in 0..tiles(d) {
            let row = i * tiles(d) + t;
            let rows: [&[T]; TAPS] = std::array::from_fn(|xi| &m[(xi * t_all + row) * o..][..o]);
            let outputs = tile_outputs(d, t);
            tile_map::<T, IN, OUT, TAPS, OUTS>(o, &rows, at, |k, first, vals| {
                if let Some(p) = outputs[k] {
                    for (dst, &v) in y[p * o + first..][..vals.len()].iter_mut().zip(vals) {
                        dst.write(v);
                    }
                }
            });
        }
    });
    // SAFETY: every output position lies in exactly one tile, and each tile wrote all of its
    // positions inside the map, O values each: the whole of `ys`.
    unsafe { &mut *(ys as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// The backward of [`forward_block`] for a block of images, `u` from [`backward_kernel`]: writes
/// the transformed kernel's gradient into `du` (36, O, C), and adds the input gradient into `dxs`
/// if given.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_block<T: KernelFloat>(
    xs: &[T],
    dys: &[T],
    u: &[T],
    d: &Dims,
    scratch: &mut Scratch<T>,
    du: &mut [T],
    dxs: Option<&mut [T]>,
    threads: Threads,
) {
    let (c, o) = (d.c, d.o);
    let t_all = scratch.transform_inputs(xs, d, threads);
    let Scratch { v, m, zeros } = scratch;
    // dM (36, T, O) = A dY Aᵀ per tile, zeros for outputs past the map.
    m.resize(TAPS * t_all * o, T::zero());
    let zeros = &zeros[..o];
    let dm = TapRows::new(m, t_all, o);
    (0..t_all).into_par_iter().with_min_len(min_len(threads, t_all)).for_each(|row| {
        let (dy, t) = (&dys[row / tiles(d) * d.out_len()..][..d.out_len()], row % tiles(d));
        let rows = tile_outputs(d, t).map(|p| p.map_or(zeros, |p| &dy[p * o..][..o]));
        tile_map::<T, OUT, IN, OUTS, TAPS>(o, &rows, a, |xi, first, vals| {
            // SAFETY: this tile's rows are this closure's alone.
            put(unsafe { &mut dm.row(xi, row)[first..] }, vals)
        });
    });
    for xi in 0..TAPS {
        // dUξ (O x C) = dMξᵀ (O x T) · Vξ (T x C)
        let (dm, vx) = (
            Strided::new(&m[xi * t_all * o..][..t_all * o], (1, o)),
            Strided::new(&v[xi * t_all * c..][..t_all * c], (c, 1)),
        );
        let dst = &mut du[xi * o * c..][..o * c];
        gemm(dst, (o, c, t_all), false, dm, vx, T::one(), threads);
    }
    let Some(dxs) = dxs else { return };
    for xi in 0..TAPS {
        // dVξ (T x C) = dMξ (T x O) · Uξ (O x C), into V (no longer needed)
        let dm = Strided::new(&m[xi * t_all * o..][..t_all * o], (o, 1));
        let dst = &mut v[xi * t_all * c..][..t_all * c];
        let ux = Strided::new(&u[xi * o * c..][..o * c], (c, 1));
        gemm(dst, (t_all, c, o), false, dm, ux, T::one(), threads);
    }
    // dX += B dV Bᵀ per tile, onto the tile's 6x6 inputs inside the image.
    let per_image = min_len(threads, t_all).div_ceil(tiles(d));
    dxs.par_chunks_mut(d.in_len()).with_min_len(per_image).enumerate().for_each(|(i, dx)| {
        for t in 0..tiles(d) {
            let row = i * tiles(d) + t;
            let rows: [&[T]; TAPS] = std::array::from_fn(|xi| &v[(xi * t_all + row) * c..][..c]);
            let inputs = tile_inputs(d, t);
            tile_map::<T, IN, IN, TAPS, TAPS>(c, &rows, b, |k, first, vals| {
                if let Some(p) = inputs[k] {
                    for (dst, &g) in dx[p * c + first..][..vals.len()].iter_mut().zip(vals) {
                        *dst += g;
                    }
                }
            });
        }
    });
}
