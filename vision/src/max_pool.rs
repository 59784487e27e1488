//! Max pooling with a backward for any kernel and stride. candle's pooling backward needs kernel
//! == stride, so the ImageNet stem's 3x3 stride-2 pool would refuse to train.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use contrastive_core::kernel::{contiguous_slice, KernelFloat};
use contrastive_core::with_kernel_float;
use rayon::prelude::*;

/// Max pooling over square windows with implicit -∞ padding (PyTorch's `MaxPool2d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Window side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Padding on each side (at most half the kernel).
    pub padding: usize,
}

impl MaxPool2d {
    fn check(&self, x: &Tensor, (h, w): (usize, usize)) -> Result<()> {
        if self.kernel == 0 || self.stride == 0 || 2 * self.padding > self.kernel {
            bail!("max pool: kernel and stride must be positive and padding at most half the kernel, got {self:?}");
        }
        if h + 2 * self.padding < self.kernel || w + 2 * self.padding < self.kernel {
            bail!("max pool: input {:?} is smaller than the window {}", x.dims(), self.kernel);
        }
        Ok(())
    }

    /// Pools channels-last images (N, H, W, C) to (N, OH, OW, C): on the CPU in f32 or f64 each
    /// window compares whole runs of C channels (the ResNet's stem pools without permuting its
    /// activations twice); elsewhere the channels-first pool between permutes.
    pub fn forward_channels_last(&self, x: &Tensor) -> Result<Tensor> {
        let (_, h, w, _) = x.dims4()?;
        self.check(x, (h, w))?;
        if contrastive_core::kernel::runs_kernel(x) {
            x.contiguous()?.apply_op1(PoolOp { pool: *self, channels_last: true })
        } else {
            self.forward_generic(&x.permute((0, 3, 1, 2))?.contiguous()?)?.permute((0, 2, 3, 1))
        }
    }

    /// Pools (N, C, H, W) on the CPU in f32 or f64.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        self.check(x, (h, w))?;
        if contrastive_core::kernel::runs_kernel(x) {
            x.contiguous()?.apply_op1(PoolOp { pool: *self, channels_last: false })
        } else {
            self.forward_generic(x)
        }
    }

    /// The device-generic path, in candle's tensor ops: the padded input's k² strided windows
    /// (gathered by `index_select`), their maximum, and the gradient routed to the first window
    /// that holds it, as the kernel and PyTorch do (candle's `maximum` would split it on ties, and
    /// ties are everywhere after a ReLU); a window with a NaN gives NaN, as theirs do.
    fn forward_generic(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (oh, ow) = self.out_dims(h, w);
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let x = if p > 0 {
            let minus_inf =
                |shape: (usize, usize, usize, usize)| Tensor::ones(shape, x.dtype(), x.device())? * f64::NEG_INFINITY;
            let x = Tensor::cat(&[&minus_inf((n, c, h, p))?, x, &minus_inf((n, c, h, p))?], 3)?;
            Tensor::cat(&[&minus_inf((n, c, p, w + 2 * p))?, &x, &minus_inf((n, c, p, w + 2 * p))?], 2)?
        } else {
            x.clone()
        };
        let positions = |o: usize, offset: usize| {
            Tensor::from_vec((0..o).map(|i| (i * s + offset) as u32).collect::<Vec<_>>(), o, x.device())
        };
        let mut windows = Vec::with_capacity(k * k);
        for ky in 0..k {
            let rows = x.index_select(&positions(oh, ky)?, 2)?;
            for kx in 0..k {
                windows.push(rows.index_select(&positions(ow, kx)?, 3)?);
            }
        }
        let nans = windows
            .iter()
            .map(|w| {
                let w = w.detach();
                w.ne(&w)
            })
            .collect::<Result<Vec<_>>>()?;
        // The maximum of each window's numbers (candle's `maximum` would drop or keep a NaN
        // depending on its side).
        let minus_inf = (windows[0].detach().zeros_like()? - f64::INFINITY)?;
        let mut max = nans[0].where_cond(&minus_inf, &windows[0].detach())?;
        for (window, nan) in windows.iter().zip(&nans).skip(1) {
            max = max.maximum(&nan.where_cond(&minus_inf, &window.detach())?)?;
        }
        // A window holding a NaN gives its last NaN, as the kernel does (a NaN tap is always
        // taken, PyTorch's propagation)...
        let mut taken = nans[0].zeros_like()?;
        let mut nan_picks = Vec::with_capacity(nans.len());
        for nan in nans.iter().rev() {
            let pick = nan.mul(&taken.eq(0u8)?)?;
            taken = taken.maximum(&pick)?;
            nan_picks.push(pick);
        }
        nan_picks.reverse();
        // ... and any other its first tap equal to the maximum.
        let zeros = max.zeros_like()?;
        let mut y = zeros.clone();
        for (window, nan_pick) in windows.iter().zip(&nan_picks) {
            let first = window.detach().eq(&max)?.mul(&taken.eq(0u8)?)?;
            taken = taken.maximum(&first)?;
            y = (y + first.maximum(nan_pick)?.where_cond(window, &zeros)?)?;
        }
        Ok(y)
    }

    fn out_dims(&self, h: usize, w: usize) -> (usize, usize) {
        let o = |s: usize| (s + 2 * self.padding - self.kernel) / self.stride + 1;
        (o(h), o(w))
    }

    /// For each output position of one plane, the input offset of its maximum (first on ties).
    fn argmax<T: KernelFloat>(&self, plane: &[T], h: usize, w: usize, out: &mut [usize]) {
        let (oh, ow) = self.out_dims(h, w);
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = usize::MAX;
                let mut best_v = T::neg_infinity();
                for ky in 0..self.kernel {
                    let iy = (oy * self.stride + ky) as isize - self.padding as isize;
                    if iy < 0 || iy as usize >= h {
                        continue;
                    }
                    for kx in 0..self.kernel {
                        let ix = (ox * self.stride + kx) as isize - self.padding as isize;
                        if ix < 0 || ix as usize >= w {
                            continue;
                        }
                        let i = iy as usize * w + ix as usize;
                        // NaN propagates as the maximum, as in PyTorch.
                        if best == usize::MAX || plane[i] > best_v || plane[i].is_nan() {
                            best = i;
                            best_v = plane[i];
                        }
                    }
                }
                out[oy * ow + ox] = best;
            }
        }
    }

    fn run<T: KernelFloat>(&self, x: &[T], h: usize, w: usize) -> Vec<T> {
        let (oh, ow) = self.out_dims(h, w);
        let mut y = vec![T::zero(); x.len() / (h * w) * oh * ow];
        y.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).for_each_init(
            || vec![0usize; oh * ow],
            |idx, (yp, xp)| {
                self.argmax(xp, h, w, idx);
                for (o, &i) in yp.iter_mut().zip(idx.iter()) {
                    *o = xp[i];
                }
            },
        );
        y
    }

    fn run_backward<T: KernelFloat>(&self, x: &[T], dy: &[T], h: usize, w: usize) -> Vec<T> {
        let (oh, ow) = self.out_dims(h, w);
        let mut dx = vec![T::zero(); x.len()];
        dx.par_chunks_mut(h * w).zip(x.par_chunks(h * w)).zip(dy.par_chunks(oh * ow)).for_each_init(
            || vec![0usize; oh * ow],
            |idx, ((dxp, xp), dyp)| {
                self.argmax(xp, h, w, idx);
                for (&i, &g) in idx.iter().zip(dyp) {
                    dxp[i] += g;
                }
            },
        );
        dx
    }
}

/// [`MaxPool2d`] over channels-last images (N, H, W, C).
#[derive(Clone, Copy)]
struct ChannelsLast(MaxPool2d);

impl ChannelsLast {
    /// The input positions (H·W indices) the window of output position (oy, ox) covers inside
    /// an image of `h` x `w`, in (ky, kx) order.
    fn taps(&self, (h, w): (usize, usize), oy: usize, ox: usize) -> impl Iterator<Item = usize> {
        let p = self.0;
        let inside =
            move |o: usize, k: usize, side: usize| (o * p.stride + k).checked_sub(p.padding).filter(|&i| i < side);
        (0..p.kernel)
            .filter_map(move |ky| inside(oy, ky, h))
            .flat_map(move |iy| (0..p.kernel).filter_map(move |kx| inside(ox, kx, w)).map(move |ix| iy * w + ix))
    }

    /// The maximum of each channel over the window of output position (oy, ox) of one image (H·W,
    /// C), in `best`, and the input position it came from, in `at`: the first on ties and NaN
    /// propagating, as the channels-first pool and PyTorch do.
    #[allow(clippy::too_many_arguments)]
    fn window<T: KernelFloat>(
        &self,
        x: &[T],
        (h, w, c): (usize, usize, usize),
        oy: usize,
        ox: usize,
        best: &mut [T],
        at: &mut [usize],
    ) {
        at.fill(usize::MAX);
        for i in self.taps((h, w), oy, ox) {
            for ((b, a), &v) in best.iter_mut().zip(at.iter_mut()).zip(&x[i * c..][..c]) {
                if *a == usize::MAX || v > *b || v.is_nan() {
                    *b = v;
                    *a = i;
                }
            }
        }
    }

    /// The values [`Self::window`] picks, without their positions: the same comparisons as
    /// branch-free selects, which vectorise over the channels (the forward needs no positions).
    fn window_max<T: KernelFloat>(
        &self,
        x: &[T],
        (h, w, c): (usize, usize, usize),
        oy: usize,
        ox: usize,
        best: &mut [T],
    ) {
        let mut taps = self.taps((h, w), oy, ox);
        // The padding is at most half the window, so every window holds an input.
        if let Some(i) = taps.next() {
            best.copy_from_slice(&x[i * c..][..c]);
        }
        for i in taps {
            for (b, &v) in best.iter_mut().zip(&x[i * c..][..c]) {
                // NaN propagates: a NaN tap is taken, and nothing is greater than a NaN kept.
                *b = if v > *b || v.is_nan() { v } else { *b };
            }
        }
    }

    fn run<T: KernelFloat>(&self, x: &[T], (h, w, c): (usize, usize, usize)) -> Vec<T> {
        let (oh, ow) = self.0.out_dims(h, w);
        let mut y = vec![T::zero(); x.len() / (h * w) * oh * ow];
        y.par_chunks_mut(oh * ow * c).zip(x.par_chunks(h * w * c)).for_each(|(yi, xi)| {
            for (o, best) in yi.chunks_mut(c).enumerate() {
                self.window_max(xi, (h, w, c), o / ow, o % ow, best);
            }
        });
        y
    }

    /// The input gradient from the input `x`, the forward's output `y` and its gradient `dy`:
    /// each output's gradient goes to the first tap equal to its maximum, which is the tap
    /// [`Self::window`] picks, found by selects over the channels with the taps in reverse
    /// (searching the window again per channel, with positions, ran a scalar branch per value).
    /// An output with a NaN takes the window's own search, which picks the last NaN.
    fn run_backward<T: KernelFloat>(&self, x: &[T], y: &[T], dy: &[T], (h, w, c): (usize, usize, usize)) -> Vec<T> {
        let (oh, ow) = self.0.out_dims(h, w);
        let mut dx = vec![T::zero(); x.len()];
        let images = dx.par_chunks_mut(h * w * c).zip(x.par_chunks(h * w * c));
        images.zip(y.par_chunks(oh * ow * c).zip(dy.par_chunks(oh * ow * c))).for_each_init(
            || (vec![T::zero(); c], vec![0usize; c], vec![0u32; c], Vec::new()),
            |(best, at, first, taps), ((dxi, xi), (yi, dyi))| {
                for (o, (m, g)) in yi.chunks(c).zip(dyi.chunks(c)).enumerate() {
                    if m.iter().any(|v| v.is_nan()) {
                        self.window(xi, (h, w, c), o / ow, o % ow, best, at);
                        for (ch, (&i, &g)) in at.iter().zip(g).enumerate() {
                            dxi[i * c + ch] += g;
                        }
                        continue;
                    }
                    taps.clear();
                    taps.extend(self.taps((h, w), o / ow, o % ow));
                    // Every channel's maximum is one of its taps: `first` ends on the first.
                    first.fill(0);
                    for (n, &i) in taps.iter().enumerate().rev() {
                        let n = n as u32;
                        for ((f, &v), &m) in first.iter_mut().zip(&xi[i * c..][..c]).zip(m) {
                            *f = if v == m { n } else { *f };
                        }
                    }
                    for (ch, (&f, &g)) in first.iter().zip(g).enumerate() {
                        dxi[taps[f as usize] * c + ch] += g;
                    }
                }
            },
        );
        dx
    }
}

/// The pooling op on either layout.
#[derive(Clone, Copy)]
struct PoolOp {
    pool: MaxPool2d,
    /// Images (N, H, W, C) rather than (N, C, H, W).
    channels_last: bool,
}

impl PoolOp {
    /// (N, H, W, C) of the input, whichever its layout.
    fn dims(&self, l: &Layout) -> Result<(usize, usize, usize, usize)> {
        let (n, a, b, c) = l.shape().dims4()?;
        Ok(if self.channels_last { (n, a, b, c) } else { (n, b, c, a) })
    }
}

impl CustomOp1 for PoolOp {
    fn name(&self) -> &'static str {
        "max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, h, w, c) = self.dims(l)?;
        let (oh, ow) = self.pool.out_dims(h, w);
        let y = with_kernel_float!(s.dtype(), "max pool", |T| {
            let x = contiguous_slice::<T>(s, l, "max pool")?;
            let y = if self.channels_last { ChannelsLast(self.pool).run(x, (h, w, c)) } else { self.pool.run(x, h, w) };
            <T as candle_core::WithDType>::to_cpu_storage_owned(y)
        });
        let shape = if self.channels_last { (n, oh, ow, c) } else { (n, c, oh, ow) };
        Ok((y, Shape::from(shape)))
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op3_no_bwd(&res.contiguous()?, &grad.contiguous()?, &PoolBackward(*self))?))
    }
}

/// The input gradient of a max pool from its input, output and output gradient: each output's
/// gradient goes to its window's maximum.
struct PoolBackward(PoolOp);

impl CustomOp3 for PoolBackward {
    fn name(&self) -> &'static str {
        "max-pool2d-backward"
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
        let (_, h, w, c) = self.0.dims(l1)?;
        let dx = with_kernel_float!(s1.dtype(), "max pool", |T| {
            let x = contiguous_slice::<T>(s1, l1, "max pool")?;
            let (y, dy) = (contiguous_slice::<T>(s2, l2, "max pool")?, contiguous_slice::<T>(s3, l3, "max pool")?);
            let dx = if self.0.channels_last {
                ChannelsLast(self.0.pool).run_backward(x, y, dy, (h, w, c))
            } else {
                self.0.pool.run_backward(x, dy, h, w)
            };
            <T as candle_core::WithDType>::to_cpu_storage_owned(dx)
        });
        Ok((dx, l1.shape().clone()))
    }
}
