//! Limited-memory BFGS (Nocedal and Wright, algorithm 7.5) with a backtracking line search under
//! the Armijo condition; curvature pairs that are not positive are skipped. Enough for the smooth,
//! strictly convex objectives of the linear probe.

/// When to stop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Stop {
    /// Largest absolute gradient entry below which the point is optimal.
    pub grad_tol: f64,
    /// Iterations at most.
    pub max_iter: usize,
}

/// Minimises `f`, which returns the value and writes the gradient, from `x`; returns the number
/// of iterations run and whether the gradient tolerance was reached.
pub(crate) fn minimize(x: &mut [f64], stop: Stop, mut f: impl FnMut(&[f64], &mut [f64]) -> f64) -> (usize, bool) {
    const MEMORY: usize = 10;
    let n = x.len();
    let mut g = vec![0.0; n];
    let mut fx = f(x, &mut g);
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut rho: Vec<f64> = Vec::new();
    let mut x_new = vec![0.0; n];
    let mut g_new = vec![0.0; n];
    for iter in 0..stop.max_iter {
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < stop.grad_tol {
            return (iter, true);
        }
        // Two-loop recursion: d = -H g.
        let mut d: Vec<f64> = g.iter().map(|v| -v).collect();
        let mut alpha = vec![0.0; s_hist.len()];
        for i in (0..s_hist.len()).rev() {
            alpha[i] = rho[i] * dot(&s_hist[i], &d);
            axpy(-alpha[i], &y_hist[i], &mut d);
        }
        if let (Some(s), Some(y)) = (s_hist.last(), y_hist.last()) {
            let gamma = dot(s, y) / dot(y, y);
            d.iter_mut().for_each(|v| *v *= gamma);
        }
        for i in 0..s_hist.len() {
            let beta = rho[i] * dot(&y_hist[i], &d);
            axpy(alpha[i] - beta, &s_hist[i], &mut d);
        }
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            rho.clear();
            d = g.iter().map(|v| -v).collect();
            slope = -dot(&g, &g);
        }
        let mut step = if s_hist.is_empty() { 1.0 / dot(&g, &g).sqrt().max(1.0) } else { 1.0 };
        let mut accepted = false;
        for _ in 0..60 {
            for i in 0..n {
                x_new[i] = x[i] + step * d[i];
            }
            let f_new = f(&x_new, &mut g_new);
            if f_new.is_finite() && f_new <= fx + 1e-4 * step * slope {
                let s: Vec<f64> = x_new.iter().zip(x.iter()).map(|(a, b)| a - b).collect();
                let y: Vec<f64> = g_new.iter().zip(g.iter()).map(|(a, b)| a - b).collect();
                let sy = dot(&s, &y);
                if sy > 1e-12 * dot(&y, &y).max(f64::MIN_POSITIVE) {
                    if s_hist.len() == MEMORY {
                        s_hist.remove(0);
                        y_hist.remove(0);
                        rho.remove(0);
                    }
                    s_hist.push(s);
                    y_hist.push(y);
                    rho.push(1.0 / sy);
                }
                x.copy_from_slice(&x_new);
                g.copy_from_slice(&g_new);
                let converged_value = (fx - f_new).abs() <= 1e-15 * fx.abs().max(1.0);
                fx = f_new;
                accepted = true;
                if converged_value && g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < stop.grad_tol.sqrt() {
                    return (iter + 1, true);
                }
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            // No decrease along d at any step: x is optimal to machine precision.
            return (iter, g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < stop.grad_tol.sqrt());
        }
    }
    (stop.max_iter, false)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_the_rosenbrock_function() {
        let mut x = vec![-1.2, 1.0];
        let (_, ok) = minimize(&mut x, Stop { grad_tol: 1e-9, max_iter: 500 }, |x, g| {
            let (a, b) = (x[0], x[1]);
            g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            g[1] = 200.0 * (b - a * a);
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        });
        assert!(ok);
        assert!((x[0] - 1.0).abs() < 1e-6 && (x[1] - 1.0).abs() < 1e-6, "{x:?}");
    }
}
