//! Winograd's minimal filtering F(2x2, 3x3) for the 3x3 convolutions at stride 1 and padding 1 of
//! channels-last images (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
//! 2016): each 2x2 block of outputs is `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` over the 4x4 input tile `d`
//! around it, so the products over channels are 16 matrix products (one per tile position ξ of
//! the transformed tile, tiles x C times C x O) of 4 multiply-adds per output where the direct
//! convolution has 9: 2.25 times fewer. The transforms' coefficients are 0, ±1 and ±1/2, exact in
//! floating point; they add a few additions per value, and no im2row copy is made.
//!
//! The gradients are the adjoints of the same linear maps: the kernel's from the 16 products
//! `dUξ = dMξᵀ · Vξ` over the tiles (then `Gᵀ dU G`), the input's from `dVξ = dMξ · Uξᵀ` folded
//! back by `B dV Bᵀ` onto the overlapping tiles, where `dM = A dY Aᵀ`.

use crate::unfold::Dims;
use contrastive_core::kernel::{gemm, KernelFloat, Strided, Threads};
use std::mem::MaybeUninit;

/// Positions of a transformed tile (4x4).
const TAPS: usize = 16;

/// Channels transformed at a time, in registers.
const LANES: usize = 16;
type Lanes<T> = [T; LANES];

fn add<T: KernelFloat>(a: Lanes<T>, b: Lanes<T>) -> Lanes<T> {
    std::array::from_fn(|l| a[l] + b[l])
}
fn sub<T: KernelFloat>(a: Lanes<T>, b: Lanes<T>) -> Lanes<T> {
    std::array::from_fn(|l| a[l] - b[l])
}
fn neg<T: KernelFloat>(a: Lanes<T>) -> Lanes<T> {
    std::array::from_fn(|l| -a[l])
}
fn half<T: KernelFloat>(a: Lanes<T>) -> Lanes<T> {
    let h = <T as candle_core::WithDType>::from_f64(0.5);
    std::array::from_fn(|l| a[l] * h)
}

// The transforms along one axis; each 2-D one applies its map to the columns, then the rows.

/// Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], the input transform.
fn bt<T: KernelFloat>([x0, x1, x2, x3]: [Lanes<T>; 4]) -> [Lanes<T>; 4] {
    [sub(x0, x2), add(x1, x2), sub(x2, x1), sub(x1, x3)]
}
/// B, its adjoint (Bᵀ transposed).
fn b<T: KernelFloat>([x0, x1, x2, x3]: [Lanes<T>; 4]) -> [Lanes<T>; 4] {
    [x0, add(sub(x1, x2), x3), sub(add(x1, x2), x0), neg(x3)]
}
/// Aᵀ = [1 1 1 0; 0 1 -1 -1], the output transform.
fn at<T: KernelFloat>([x0, x1, x2, x3]: [Lanes<T>; 4]) -> [Lanes<T>; 2] {
    [add(add(x0, x1), x2), sub(sub(x1, x2), x3)]
}
/// A, its adjoint.
fn a<T: KernelFloat>([x0, x1]: [Lanes<T>; 2]) -> [Lanes<T>; 4] {
    [x0, add(x0, x1), sub(x0, x1), neg(x1)]
}
/// G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], the kernel transform.
fn g<T: KernelFloat>([x0, x1, x2]: [Lanes<T>; 3]) -> [Lanes<T>; 4] {
    let ends = add(x0, x2);
    [x0, half(add(ends, x1)), half(sub(ends, x1)), x2]
}
/// Gᵀ, its adjoint.
fn gt<T: KernelFloat>([x0, x1, x2, x3]: [Lanes<T>; 4]) -> [Lanes<T>; 3] {
    let (sum, diff) = (half(add(x1, x2)), half(sub(x1, x2)));
    [add(x0, sum), diff, add(sum, x3)]
}

/// The 2-D transform `L · X · Lᵀ` of an N x N tile (row-major, NN = N·N values) whose 1-D map
/// `x ↦ L x` is `f`: M x M values (MM = M·M).
fn separable<T: KernelFloat, const N: usize, const M: usize, const NN: usize, const MM: usize>(
    x: &[Lanes<T>; NN],
    f: fn([Lanes<T>; N]) -> [Lanes<T>; M],
) -> [Lanes<T>; MM] {
    // mid[b] = L · (column b of X), then out row i = L · (row i of mid)
    let mid: [[Lanes<T>; M]; N] = std::array::from_fn(|b| f(std::array::from_fn(|a| x[a * N + b])));
    let mut out = [[T::zero(); LANES]; MM];
    for i in 0..M {
        for (j, v) in f(std::array::from_fn(|b| mid[b][i])).into_iter().enumerate() {
            out[i * M + j] = v;
        }
    }
    out
}

/// Runs `transform` over tiles of I rows of `len` values (`inputs`), LANES values of each row at
/// a time, handing `store(output row, first value, values)` its O rows.
fn tile_map<T: KernelFloat, const I: usize, const O: usize>(
    len: usize,
    inputs: &[&[T]; I],
    transform: impl Fn(&[Lanes<T>; I]) -> [Lanes<T>; O],
    mut store: impl FnMut(usize, usize, &[T]),
) {
    for first in (0..len).step_by(LANES) {
        let n = LANES.min(len - first);
        let mut x = [[T::zero(); LANES]; I];
        for (lanes, row) in x.iter_mut().zip(inputs) {
            put(lanes, &row[first..first + n]);
        }
        for (k, lanes) in transform(&x).iter().enumerate() {
            store(k, first, &lanes[..n]);
        }
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

/// The transformed kernel U (16, O, C) from the kernel in im2row's order (O, ky, kx, C):
/// `G g Gᵀ` for each output and input channel.
pub(crate) fn kernel_transform<T: KernelFloat>(w_rows: &[T], d: &Dims) -> Vec<T> {
    let (c, o) = (d.c, d.o);
    let mut u = vec![T::zero(); TAPS * o * c];
    for (oi, w) in w_rows.chunks(9 * c).enumerate() {
        let taps: [&[T]; 9] = std::array::from_fn(|k| &w[k * c..][..c]);
        tile_map(
            c,
            &taps,
            |x| separable::<T, 3, 4, 9, TAPS>(x, g),
            |xi, first, v| put(&mut u[(xi * o + oi) * c + first..], v),
        );
    }
    u
}

/// The kernel's gradient in im2row's order (O, ky, kx, C) from the transformed one's (16, O, C):
/// `Gᵀ dU G`, the adjoint of [`kernel_transform`].
pub(crate) fn kernel_transform_adjoint<T: KernelFloat>(du: &[T], d: &Dims) -> Vec<T> {
    let (c, o) = (d.c, d.o);
    let mut dw = vec![T::zero(); o * 9 * c];
    for (oi, dst) in dw.chunks_mut(9 * c).enumerate() {
        let rows: [&[T]; TAPS] = std::array::from_fn(|xi| &du[(xi * o + oi) * c..][..c]);
        tile_map(c, &rows, |x| separable::<T, 4, 3, TAPS, 9>(x, gt), |k, first, v| put(&mut dst[k * c + first..], v));
    }
    dw
}

/// Below this many input or output channels the transforms weigh as much as the products save:
/// timed layer by layer (forward and backward, batch 64, least of 12 runs, against the direct
/// convolution) F(2x2, 3x3) took 28 ms for 38 at 256 channels on 8x8 maps, 43 for 52 at 128 on
/// 16x16, 18.5 for 23.8 at 128 on 12x12, but 24.7 for 25.6 at 64 on 24x24 and 54 for 60 then 73
/// for 49 ms at 32 to 64 channels on 14x14 (batch 512).
const MIN_CHANNELS: usize = 128;

/// Whether the convolution runs as F(2x2, 3x3): a 3x3 kernel at stride 1 and padding 1, enough
/// channels, and a map whose 2x2 tiles waste at most an eighth of their outputs on an odd side (a
/// 3x3 map's tiles cover 16 positions for its 9, which would eat the saving).
pub(crate) fn applies(d: &Dims) -> bool {
    let covered = 4 * d.oh.div_ceil(2) * d.ow.div_ceil(2);
    d.k == 3
        && d.stride == 1
        && d.pad == 1
        && d.c >= MIN_CHANNELS
        && d.o >= MIN_CHANNELS
        && 8 * covered <= 9 * d.positions()
}

/// 2x2 output tiles per image.
fn tiles(d: &Dims) -> usize {
    d.oh.div_ceil(2) * d.ow.div_ceil(2)
}

/// Images a block of products covers, and a task of the convolution: at least 256 tiles, so that
/// packing the transformed kernel (16 x O x C, afresh for each product) weighs little beside the
/// products, and few enough that the late small maps of a batch make several tasks.
pub(crate) fn images_per_block(d: &Dims) -> usize {
    256usize.div_ceil(tiles(d).max(1))
}

/// The output positions (y, x) of tile t's 2x2 outputs, `None` past an odd side.
fn tile_outputs(d: &Dims, t: usize) -> [Option<usize>; 4] {
    let tw = d.ow.div_ceil(2);
    std::array::from_fn(|k| {
        let (oy, ox) = (2 * (t / tw) + k / 2, 2 * (t % tw) + k % 2);
        (oy < d.oh && ox < d.ow).then_some(oy * d.ow + ox)
    })
}

/// The input positions of tile t's 4x4 inputs, `None` where the tile reaches past the image.
fn tile_inputs(d: &Dims, t: usize) -> [Option<usize>; TAPS] {
    let tw = d.ow.div_ceil(2);
    std::array::from_fn(|k| {
        let (iy, ix) = ((2 * (t / tw) + k / 4).wrapping_sub(1), (2 * (t % tw) + k % 4).wrapping_sub(1));
        (iy < d.h && ix < d.w).then(|| iy * d.w + ix)
    })
}

/// Scratch of one thread: the transformed inputs V (16, T, C) and the products M (16, T, O) of a
/// block of T tiles, and a row of zeros.
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
    /// V (16, T, C) of `xs`' images, `Bᵀ d B` of each tile, tile t of image i at row
    /// `i·tiles + t`. Returns T.
    fn transform_inputs(&mut self, xs: &[T], d: &Dims) -> usize {
        let c = d.c;
        let t_all = xs.len() / d.in_len() * tiles(d);
        self.v.resize(TAPS * t_all * c, T::zero());
        self.zeros.resize(c.max(d.o), T::zero());
        let Scratch { v, zeros, .. } = self;
        for (i, x) in xs.chunks(d.in_len()).enumerate() {
            for t in 0..tiles(d) {
                let rows = tile_inputs(d, t).map(|p| p.map_or(&zeros[..c], |p| &x[p * c..][..c]));
                let row = i * tiles(d) + t;
                tile_map(
                    c,
                    &rows,
                    |x| separable::<T, 4, 4, TAPS, TAPS>(x, bt),
                    |xi, first, vals| put(&mut v[(xi * t_all + row) * c + first..], vals),
                );
            }
        }
        t_all
    }
}

/// The convolution of a block of channels-last images `xs` with the transformed kernel `u`,
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
    let t_all = scratch.transform_inputs(xs, d);
    let Scratch { v, m, .. } = scratch;
    m.resize(TAPS * t_all * o, T::zero());
    for xi in 0..TAPS {
        // Mξ (T x O) = Vξ (T x C) · Uξᵀ (C x O)
        let (vx, ux) = (&v[xi * t_all * c..][..t_all * c], &u[xi * o * c..][..o * c]);
        let mx = &mut m[xi * t_all * o..][..t_all * o];
        gemm(mx, (t_all, o, c), false, Strided::new(vx, (c, 1)), Strided::new(ux, (1, c)), T::one(), threads);
    }
    // Y = Aᵀ M A per tile.
    for (i, y) in ys.chunks_mut(d.out_len()).enumerate() {
        for t in 0..tiles(d) {
            let row = i * tiles(d) + t;
            let rows: [&[T]; TAPS] = std::array::from_fn(|xi| &m[(xi * t_all + row) * o..][..o]);
            let outputs = tile_outputs(d, t);
            tile_map(
                o,
                &rows,
                |x| separable::<T, 4, 2, TAPS, 4>(x, at),
                |k, first, vals| {
                    if let Some(p) = outputs[k] {
                        for (dst, &v) in y[p * o + first..][..vals.len()].iter_mut().zip(vals) {
                            dst.write(v);
                        }
                    }
                },
            );
        }
    }
    // SAFETY: every output position lies in exactly one tile, and each tile wrote all of its
    // positions inside the map, O values each: the whole of `ys`.
    unsafe { &mut *(ys as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// The backward of [`forward_block`] for a block of images: adds the transformed kernel's
/// gradient into `du` (16, O, C; overwrites it when not `accumulate`), and the input gradient
/// into `dxs` if given.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_block<T: KernelFloat>(
    xs: &[T],
    dys: &[T],
    u: &[T],
    d: &Dims,
    scratch: &mut Scratch<T>,
    du: &mut [T],
    accumulate: bool,
    dxs: Option<&mut [T]>,
    threads: Threads,
) {
    let (c, o) = (d.c, d.o);
    let t_all = scratch.transform_inputs(xs, d);
    let Scratch { v, m, zeros } = scratch;
    // dM (16, T, O) = A dY Aᵀ per tile, zeros for outputs past an odd side.
    m.resize(TAPS * t_all * o, T::zero());
    for (i, dy) in dys.chunks(d.out_len()).enumerate() {
        for t in 0..tiles(d) {
            let rows = tile_outputs(d, t).map(|p| p.map_or(&zeros[..o], |p| &dy[p * o..][..o]));
            let row = i * tiles(d) + t;
            tile_map(
                o,
                &rows,
                |x| separable::<T, 2, 4, 4, TAPS>(x, a),
                |xi, first, vals| put(&mut m[(xi * t_all + row) * o + first..], vals),
            );
        }
    }
    for xi in 0..TAPS {
        // dUξ (O x C) += dMξᵀ (O x T) · Vξ (T x C)
        let (dm, vx) = (&m[xi * t_all * o..][..t_all * o], &v[xi * t_all * c..][..t_all * c]);
        let dst = &mut du[xi * o * c..][..o * c];
        gemm(dst, (o, c, t_all), accumulate, Strided::new(dm, (1, o)), Strided::new(vx, (c, 1)), T::one(), threads);
    }
    let Some(dxs) = dxs else { return };
    for xi in 0..TAPS {
        // dVξ (T x C) = dMξ (T x O) · Uξ (O x C), into V (no longer needed)
        let (dm, ux) = (&m[xi * t_all * o..][..t_all * o], &u[xi * o * c..][..o * c]);
        let dst = &mut v[xi * t_all * c..][..t_all * c];
        gemm(dst, (t_all, c, o), false, Strided::new(dm, (o, 1)), Strided::new(ux, (c, 1)), T::one(), threads);
    }
    // dX += B dV Bᵀ per tile, onto the tile's 4x4 inputs inside the image.
    for (i, dx) in dxs.chunks_mut(d.in_len()).enumerate() {
        for t in 0..tiles(d) {
            let row = i * tiles(d) + t;
            let rows: [&[T]; TAPS] = std::array::from_fn(|xi| &v[(xi * t_all + row) * c..][..c]);
            let inputs = tile_inputs(d, t);
            tile_map(
                c,
                &rows,
                |x| separable::<T, 4, 4, TAPS, TAPS>(x, b),
                |k, first, vals| {
                    if let Some(p) = inputs[k] {
                        for (dst, &g) in dx[p * c + first..][..vals.len()].iter_mut().zip(vals) {
                            *dst += g;
                        }
                    }
                },
            );
        }
    }
}
