//! The collapse figures on sets whose answer is known in closed form: k orthogonal directions of
//! equal weight have effective rank k; one point has rank 1 and spread 0; the eigenvalues of
//! Q diag(λ) Qᵀ (Q a Householder reflection) are the λ.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{random_rows, tensor, Rows};
use contrastive_core::collapse::{symmetric_eigenvalues, Spread};

#[test]
fn jacobi_finds_the_eigenvalues_of_a_matrix_built_from_them() {
    for (n, seed) in [(2, 1), (7, 2), (30, 3)] {
        let lambda: Vec<f64> = (0..n).map(|i| (i as f64 * 1.7 - 3.0) * if i % 2 == 0 { 1.0 } else { 0.3 }).collect();
        let v = &random_rows(seed, 1, n, 1.0)[0];
        let vv: f64 = v.iter().map(|x| x * x).sum();
        // Q = I - 2 v vᵀ / vᵀv, symmetric and orthogonal; A = Q diag(λ) Q.
        let q: Vec<Vec<f64>> =
            (0..n).map(|i| (0..n).map(|j| f64::from(u8::from(i == j)) - 2.0 * v[i] * v[j] / vv).collect()).collect();
        let a: Vec<f64> = (0..n)
            .flat_map(|i| {
                let q = &q;
                let lambda = &lambda;
                (0..n).map(move |j| (0..n).map(|k| q[i][k] * lambda[k] * q[k][j]).sum::<f64>())
            })
            .collect();
        let mut got = symmetric_eigenvalues(a, n);
        got.sort_by(f64::total_cmp);
        let mut want = lambda.clone();
        want.sort_by(f64::total_cmp);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-9, "n = {n}: eigenvalue {g}, built from {w}");
        }
    }
}

/// `copies` copies of each of the first `k` unit vectors of width `d`, scaled by `scale`.
fn directions(k: usize, copies: usize, d: usize, scale: f64) -> Rows {
    (0..k * copies).map(|i| (0..d).map(|j| if j == i % k { scale } else { 0.0 }).collect()).collect()
}

#[test]
fn orthogonal_directions_of_equal_weight_have_that_effective_rank() {
    for (k, d) in [(1, 4), (3, 6), (5, 5), (4, 40)] {
        let spread = Spread::of(&tensor(&directions(k, 4, d, 2.5), DType::F32)).unwrap();
        assert!((spread.effective_rank - k as f64).abs() < 1e-6, "k = {k}: {spread:?}");
        assert_eq!(spread.max_rank, d.min(4 * k));
    }
    // Unequal weights: singular values 2 and 1 (4 unit rows along the first axis, 1 along the
    // second): p = 2/3, 1/3 and the rank exp(-(2/3) ln(2/3) - (1/3) ln(1/3)).
    let mut rows = directions(1, 4, 3, 1.0);
    rows.push(vec![0.0, 1.0, 0.0]);
    let spread = Spread::of(&tensor(&rows, DType::F64)).unwrap();
    let (p, q) = (2.0f64 / 3.0, 1.0f64 / 3.0);
    let want = (-(p * p.ln()) - q * q.ln()).exp();
    assert!((spread.effective_rank - want).abs() < 1e-9, "{spread:?}, want {want}");
}

#[test]
fn one_point_is_complete_collapse_and_gaussian_embeddings_are_spread() {
    let point: Rows = vec![vec![0.3, -1.2, 0.7, 2.0]; 50];
    let spread = Spread::of(&tensor(&point, DType::F32)).unwrap();
    assert!(spread.std < 1e-7 && (spread.effective_rank - 1.0).abs() < 1e-6, "{spread:?}");
    assert!(spread.collapse().unwrap().contains("collapsed to a point"));
    assert!(spread.uniformity.abs() < 1e-9, "one point: every pair at distance 0, log 1: {spread:?}");
    // [e1, -e1, e1, -e1]: 2 of the 6 pairs at distance 0, 4 at squared distance 4:
    // log((2 + 4 e^-8) / 6).
    let poles: Rows = (0..4).map(|i| vec![if i % 2 == 0 { 1.0 } else { -1.0 }, 0.0, 0.0]).collect();
    let want = ((2.0 + 4.0 * (-8.0f64).exp()) / 6.0).ln();
    assert!((Spread::of(&tensor(&poles, DType::F64)).unwrap().uniformity - want).abs() < 1e-12);
    // Gaussian rows fill every direction: std x sqrt(D) near 1, rank near D.
    let gaussian = random_rows(7, 2000, 16, 1.0);
    let spread = Spread::of(&tensor(&gaussian, DType::F32)).unwrap();
    assert!((spread.scaled_std - 1.0).abs() < 0.2 && spread.effective_rank > 15.0, "{spread:?}");
    assert!(spread.collapse().is_none(), "{spread:?}");
    // Two directions in 64: dimensional collapse.
    let flat = Spread::of(&tensor(&directions(2, 30, 64, 1.0), DType::F32)).unwrap();
    assert!(flat.collapse().unwrap().contains("few directions"), "{flat:?}");
    // More rows and dimensions than the largest matrix: a sample of rows, rank at most 512.
    let wide = Spread::of(&tensor(&random_rows(8, 600, 520, 1.0), DType::F32)).unwrap();
    assert_eq!(wide.max_rank, 512);
    assert!(wide.effective_rank > 300.0 && wide.effective_rank <= 512.0, "{wide:?}");
}

#[test]
fn bad_embeddings_are_named() {
    let dev = Device::Cpu;
    let e = Spread::of(&Tensor::zeros((3, 2, 2), DType::F32, &dev).unwrap()).unwrap_err().to_string();
    assert!(e.contains("(N, D)"), "{e}");
    let e = Spread::of(&Tensor::zeros((1, 4), DType::F32, &dev).unwrap()).unwrap_err().to_string();
    assert!(e.contains("at least 2"), "{e}");
    let nan = Tensor::new(&[[1.0f32, f32::NAN], [0.0, 1.0]], &dev).unwrap();
    assert!(Spread::of(&nan).unwrap_err().to_string().contains("NaN"));
}
