//! `row[j] = exp(row[j] - shift)` and the row sum in one pass: the hot loop of the fused loss.
//!
//! `f32::exp` calls libm one element at a time, which alone would take longer than PyTorch's
//! whole NT-Xent. This is the Cephes single-precision polynomial (relative error about 2e-7)
//! written without branches so that LLVM vectorises it, compiled for AVX-512 and AVX2 and picked
//! at run time. f64 stays on the exact libm `exp` (the f64 path is for gradient checks).

/// Below this the result is flushed to 0 (exp(-87.3) is the smallest normal f32).
const MIN_ARG: f32 = -87.336_55;
const MAX_ARG: f32 = 88.722_83;
const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const LANES: usize = 16;

#[inline(always)]
pub(crate) fn exp_cephes(x: f32) -> f32 {
    let xc = x.clamp(MIN_ARG, MAX_ARG);
    let k = (xc * LOG2E + 0.5).floor();
    let r = xc - k * LN2_HI - k * LN2_LO;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * r2 + r + 1.0;
    let scale = f32::from_bits(((k as i32 + 127) << 23) as u32);
    let v = y * scale;
    if x < MIN_ARG {
        0.0
    } else {
        v
    }
}

#[inline(always)]
fn exp_shifted_sum_body(row: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (a, v) in acc.iter_mut().zip(chunk.iter_mut()) {
            *v = exp_cephes(*v - shift);
            *a += *v;
        }
    }
    let mut tail = 0.0f32;
    for v in chunks.into_remainder() {
        *v = exp_cephes(*v - shift);
        tail += *v;
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp_shifted_sum_avx512(row: &mut [f32], shift: f32) -> f32 {
    exp_shifted_sum_body(row, shift)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp_shifted_sum_avx2(row: &mut [f32], shift: f32) -> f32 {
    exp_shifted_sum_body(row, shift)
}

/// Replaces each `v` of `row` by `exp(v - shift)` and returns their sum. Entries at `-inf` (or
/// far below `shift`) become exactly 0.
pub(crate) fn exp_shifted_sum_f32(row: &mut [f32], shift: f32) -> f32 {
    match VectorWidth::of_this_cpu() {
        // SAFETY: the CPU supports the enabled features (checked by `of_this_cpu`).
        #[cfg(target_arch = "x86_64")]
        VectorWidth::Avx512 => unsafe { exp_shifted_sum_avx512(row, shift) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        VectorWidth::Avx2 => unsafe { exp_shifted_sum_avx2(row, shift) },
        _ => exp_shifted_sum_body(row, shift),
    }
}

/// The widest vector unit of this CPU that the f32 loops are compiled for (each such loop has an
/// AVX-512 and an AVX2 build beside its baseline one, picked at run time): the build targets
/// baseline x86-64, whose vectors hold 4 floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub enum VectorWidth {
    /// AVX-512F.
    Avx512,
    /// AVX2 with FMA.
    Avx2,
    /// Neither (or not x86-64): the baseline build.
    Baseline,
}

impl VectorWidth {
    /// Detected once per call (the standard library caches the CPU's features).
    pub fn of_this_cpu() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Self::Avx2;
            }
        }
        Self::Baseline
    }
}

/// The f64 counterpart, exact to libm.
pub(crate) fn exp_shifted_sum_f64(row: &mut [f64], shift: f64) -> f64 {
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - shift).exp();
        sum += *v;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_libm_over_the_useful_range() {
        // Every argument the loss produces is <= 0 (shifted by the row maximum).
        let mut worst: f64 = 0.0;
        let xs: Vec<f32> = (0..200_001).map(|i| -87.0 + 87.0 * i as f32 / 200_000.0).collect();
        let mut row = xs.clone();
        exp_shifted_sum_f32(&mut row, 0.0);
        for (x, y) in xs.iter().zip(&row) {
            let exact = (*x as f64).exp();
            worst = worst.max(((*y as f64) - exact).abs() / exact);
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
    }

    #[test]
    fn underflow_and_minus_infinity_give_zero_and_sum_is_exact() {
        let mut row = vec![f32::NEG_INFINITY, -1e30, -100.0, 0.0, 1.0];
        let sum = exp_shifted_sum_f32(&mut row, 1.0);
        assert_eq!(&row[..3], &[0.0, 0.0, 0.0]);
        assert!((row[3] - (-1.0f32).exp()).abs() < 1e-7);
        assert_eq!(row[4], 1.0);
        assert!((sum - (1.0 + (-1.0f32).exp())).abs() < 1e-6);
    }

    #[test]
    fn long_rows_sum_like_f64() {
        let mut row: Vec<f32> = (0..10_007).map(|i| -((i % 97) as f32) * 0.1).collect();
        let exact: f64 = row.iter().map(|v| (*v as f64).exp()).sum();
        let sum = exp_shifted_sum_f32(&mut row, 0.0);
        assert!(((sum as f64) - exact).abs() / exact < 1e-6, "{sum} vs {exact}");
    }
}
