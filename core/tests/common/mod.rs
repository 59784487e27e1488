//! Naive f64 loop implementations of the losses, written straight from the papers' formulas with
//! no masks, no log-domain tricks and no shared code with the library: the reference the library
//! is tested against. Also seeded random inputs.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub type Rows = Vec<Vec<f64>>;

pub fn random_rows(seed: u64, n: usize, d: usize, scale: f64) -> Rows {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| (0..d).map(|_| rng.random_range(-1.0..1.0) * scale).collect()).collect()
}

pub fn tensor(rows: &Rows, dtype: DType) -> Tensor {
    let (n, d) = (rows.len(), rows[0].len());
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (n, d), &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

pub fn rows_of(t: &Tensor) -> Rows {
    t.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap()
}

pub fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

pub fn cos(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    dot / (na * nb)
}

fn stack(z1: &Rows, z2: &Rows) -> Rows {
    z1.iter().chain(z2).cloned().collect()
}

/// SimCLR: -log(e^{s_ip} / Σ_{j≠i} e^{s_ij}) averaged over the 2N anchors.
pub fn nt_xent(z1: &Rows, z2: &Rows, t: f64) -> f64 {
    let z = stack(z1, z2);
    let n = z1.len();
    let mut total = 0.0;
    for i in 0..2 * n {
        let p = (i + n) % (2 * n);
        let den: f64 = (0..2 * n).filter(|&j| j != i).map(|j| (cos(&z[i], &z[j]) / t).exp()).sum();
        total += -((cos(&z[i], &z[p]) / t).exp() / den).ln();
    }
    total / (2 * n) as f64
}

/// Decoupled: the positive left out of the denominator.
pub fn decoupled(z1: &Rows, z2: &Rows, t: f64) -> f64 {
    let z = stack(z1, z2);
    let n = z1.len();
    let mut total = 0.0;
    for i in 0..2 * n {
        let p = (i + n) % (2 * n);
        let den: f64 = (0..2 * n).filter(|&j| j != i && j != p).map(|j| (cos(&z[i], &z[j]) / t).exp()).sum();
        total += -(cos(&z[i], &z[p]) / t) + den.ln();
    }
    total / (2 * n) as f64
}

/// One direction: query i against positive i, the other positives and every extra negative.
pub fn info_nce(q: &Rows, p: &Rows, extra: &Rows, t: f64) -> f64 {
    let mut total = 0.0;
    for i in 0..q.len() {
        let den: f64 = p.iter().chain(extra).map(|c| (cos(&q[i], c) / t).exp()).sum();
        total += -((cos(&q[i], &p[i]) / t).exp() / den).ln();
    }
    total / q.len() as f64
}

/// Chuang et al. (beta = 0) and Robinson et al. (beta > 0), from their formulas.
pub fn hcl(z1: &Rows, z2: &Rows, t: f64, beta: f64, tau_plus: f64) -> f64 {
    let z = stack(z1, z2);
    let n = z1.len();
    let big_n = (2 * n - 2) as f64;
    let mut total = 0.0;
    for i in 0..2 * n {
        let p = (i + n) % (2 * n);
        let pos = (cos(&z[i], &z[p]) / t).exp();
        let negs: Vec<f64> = (0..2 * n).filter(|&j| j != i && j != p).map(|j| (cos(&z[i], &z[j]) / t).exp()).collect();
        let imp: Vec<f64> = negs.iter().map(|v| v.powf(beta)).collect();
        let imp_mean = imp.iter().sum::<f64>() / negs.len() as f64;
        let reweighted = imp.iter().zip(&negs).map(|(w, v)| w * v).sum::<f64>() / imp_mean;
        let ng = ((-tau_plus * big_n * pos + reweighted) / (1.0 - tau_plus)).max(big_n * (-1.0 / t).exp());
        total += -(pos / (pos + ng)).ln();
    }
    total / (2 * n) as f64
}

/// Khosla et al. L_out, averaged over anchors that have a positive.
pub fn supcon(z: &Rows, labels: &[i64], t: f64) -> f64 {
    let n = z.len();
    let (mut total, mut anchors) = (0.0, 0);
    for i in 0..n {
        let pos: Vec<usize> = (0..n).filter(|&j| j != i && labels[j] == labels[i]).collect();
        if pos.is_empty() {
            continue;
        }
        let den: f64 = (0..n).filter(|&j| j != i).map(|j| (cos(&z[i], &z[j]) / t).exp()).sum();
        total += -pos.iter().map(|&p| ((cos(&z[i], &z[p]) / t).exp() / den).ln()).sum::<f64>() / pos.len() as f64;
        anchors += 1;
    }
    total / anchors as f64
}

/// Central finite differences of `f` at every coordinate of `x`.
pub fn finite_differences(x: &Rows, h: f64, f: impl Fn(&Rows) -> f64) -> Rows {
    let mut g = vec![vec![0.0; x[0].len()]; x.len()];
    for i in 0..x.len() {
        for d in 0..x[0].len() {
            let mut plus = x.clone();
            plus[i][d] += h;
            let mut minus = x.clone();
            minus[i][d] -= h;
            g[i][d] = (f(&plus) - f(&minus)) / (2.0 * h);
        }
    }
    g
}

pub fn max_abs_diff(a: &Rows, b: &Rows) -> f64 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// The closed-form inputs of `core/tests/golden/losses.py` and `non_contrastive.py`, `fixture()`:
/// z1, z2 (6 x 5) and z3 (4 x 5).
pub fn golden_fixture() -> (Rows, Rows, Rows) {
    let z1 =
        (0..6).map(|i| (0..5).map(|d| (0.37 * ((i + 1) * (d + 1)) as f64 + 0.11 * i as f64).sin()).collect()).collect();
    let z2 = (0..6)
        .map(|i| {
            (0..5).map(|d| (0.23 * (i + 1) as f64 - 0.41 * (d + 2) as f64).cos() * (1.0 + 0.1 * d as f64)).collect()
        })
        .collect();
    let z3 = (0..4).map(|i| (0..5).map(|d| (0.5 * i as f64 - 0.3 * d as f64 + 1.0).sin()).collect()).collect();
    (z1, z2, z3)
}
