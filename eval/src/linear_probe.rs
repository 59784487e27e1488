//! The linear probe: multinomial logistic regression with an L2 penalty on frozen, standardised
//! embeddings, fitted to convergence by L-BFGS, with its regularisation chosen by stratified
//! k-fold cross validation; and the label-efficient variants that train on a fraction of labels.
//!
//! The objective is scikit-learn's `LogisticRegression(penalty="l2", C=c)` (multinomial, bias not
//! penalised): c · Σ_i CE(W x_i + b, y_i) + ½‖W‖².

use crate::check;
use crate::lbfgs::{minimize, Stop};
use candle_core::{DType, Device, Tensor, D};
use contrastive_core::data::{stratified_folds, stratified_subset};
use contrastive_core::{Error, Result};

/// A fitted multinomial logistic regression.
#[derive(Clone, Debug, PartialEq)]
pub struct LogisticRegression {
    /// The distinct training labels, sorted: column k of the scores is class `class_ids[k]`
    /// (scikit-learn's `classes_`), so sparse or large ids cost nothing.
    class_ids: Vec<u32>,
    classes: usize,
    dim: usize,
    /// (classes, dim), in the standardised space.
    weights: Vec<f64>,
    bias: Vec<f64>,
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// L-BFGS iterations run.
    pub iterations: usize,
    /// Whether the gradient tolerance was reached.
    pub converged: bool,
}

/// Standardisation: (x - mean) / std per dimension (std with ddof 0; a constant dimension gets 1),
/// as scikit-learn's StandardScaler.
fn standardise_params(x: &[f64], n: usize, d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut mean = vec![0.0; d];
    for row in x.chunks(d) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut var = vec![0.0; d];
    for row in x.chunks(d) {
        for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (v - m) * (v - m);
        }
    }
    let scale = var.into_iter().map(|v| (v / n as f64).sqrt()).map(|s| if s > 0.0 { s } else { 1.0 }).collect();
    (mean, scale)
}

fn rows_f64(what: &str, x: &Tensor) -> Result<(Vec<f64>, usize, usize)> {
    let (n, d) = check::embeddings(what, x)?;
    Ok((x.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?, n, d))
}

impl LogisticRegression {
    /// Fits on `x` (N, D) and labels `y` with inverse regularisation `c`; `standardise` learns and
    /// applies per-dimension scaling first.
    pub fn fit(x: &Tensor, y: &[u32], c: f64, standardise: bool) -> Result<Self> {
        let (values, n, d) = rows_f64("logistic regression", x)?;
        Self::fit_rows(&values, n, d, y, c, standardise, Stop { grad_tol: 1e-8, max_iter: 2000 })
    }

    fn fit_rows(values: &[f64], n: usize, d: usize, y: &[u32], c: f64, standardise: bool, stop: Stop) -> Result<Self> {
        check::labels("logistic regression", y, n)?;
        if !(c.is_finite() && c > 0.0) {
            return Err(Error::config("logistic regression C", format!("must be finite and > 0, got {c}")));
        }
        let class_ids: Vec<u32> = y.iter().copied().collect::<std::collections::BTreeSet<u32>>().into_iter().collect();
        let classes = class_ids.len();
        if classes < 2 {
            return Err(Error::Data(format!(
                "logistic regression: the training labels hold a single class ({}); a classifier needs two",
                y.first().copied().unwrap_or(0)
            )));
        }
        let (mean, scale) = if standardise { standardise_params(values, n, d) } else { (vec![0.0; d], vec![1.0; d]) };
        let xs: Vec<f64> =
            values.chunks(d).flat_map(|r| r.iter().zip(&mean).zip(&scale).map(|((v, m), s)| (v - m) / s)).collect();
        let dev = Device::Cpu;
        let x = Tensor::from_vec(xs, (n, d), &dev)?;
        let mut onehot = vec![0.0f64; n * classes];
        for (i, l) in y.iter().enumerate() {
            onehot[i * classes + class_ids.binary_search(l).unwrap_or(0)] = 1.0;
        }
        let onehot = Tensor::from_vec(onehot, (n, classes), &dev)?;
        let mut params = vec![0.0; classes * d + classes];
        let mut failure: Option<candle_core::Error> = None;
        let (iterations, converged) =
            minimize(&mut params, stop, |p, g| match objective(p, &x, &onehot, classes, d, c, g) {
                Ok(v) => v,
                Err(e) => {
                    failure.get_or_insert(e);
                    f64::NAN
                }
            });
        if let Some(e) = failure {
            return Err(e.into());
        }
        let bias = params.split_off(classes * d);
        Ok(Self { class_ids, classes, dim: d, weights: params, bias, mean, scale, iterations, converged })
    }

    /// Weights (classes, dim) and biases (classes), in the standardised space.
    pub fn coefficients(&self) -> (&[f64], &[f64]) {
        (&self.weights, &self.bias)
    }

    /// The training labels each score column stands for, sorted (scikit-learn's `classes_`).
    pub fn classes(&self) -> &[u32] {
        &self.class_ids
    }

    /// The class scores (N, classes) of `x`, one column per entry of [`Self::classes`].
    pub fn decision_function(&self, x: &Tensor) -> Result<Vec<Vec<f64>>> {
        let (values, n, d) = rows_f64("logistic regression", x)?;
        check::same_width("logistic regression input", (n, d), self.dim, "the embeddings it was fitted on")?;
        Ok(values
            .chunks(d)
            .map(|row| {
                let xs: Vec<f64> = row.iter().zip(&self.mean).zip(&self.scale).map(|((v, m), s)| (v - m) / s).collect();
                (0..self.classes)
                    .map(|k| {
                        self.bias[k] + self.weights[k * d..(k + 1) * d].iter().zip(&xs).map(|(w, v)| w * v).sum::<f64>()
                    })
                    .collect()
            })
            .collect())
    }

    /// The predicted class of each row (ties to the lower class, as numpy's argmax).
    pub fn predict(&self, x: &Tensor) -> Result<Vec<u32>> {
        Ok(self
            .decision_function(x)?
            .into_iter()
            .map(|s| {
                let best =
                    s.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (k, &v)| if v > b.1 { (k, v) } else { b }).0;
                self.class_ids[best]
            })
            .collect())
    }

    /// The fraction of rows predicted correctly.
    pub fn accuracy(&self, x: &Tensor, y: &[u32]) -> Result<f64> {
        let pred = self.predict(x)?;
        check::labels("logistic regression", y, pred.len())?;
        Ok(pred.iter().zip(y).filter(|(p, t)| p == t).count() as f64 / y.len() as f64)
    }
}

/// Value and gradient of c · Σ CE + ½‖W‖² at `p` = [W (classes, d), b (classes)].
fn objective(
    p: &[f64],
    x: &Tensor,
    onehot: &Tensor,
    classes: usize,
    d: usize,
    c: f64,
    g: &mut [f64],
) -> candle_core::Result<f64> {
    let dev = x.device();
    let w = Tensor::from_slice(&p[..classes * d], (classes, d), dev)?;
    let b = Tensor::from_slice(&p[classes * d..], classes, dev)?;
    let z = x.matmul(&w.t()?)?.broadcast_add(&b)?;
    let max = z.max_keepdim(D::Minus1)?;
    let lse = z.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()?.add(&max)?;
    let ce = (lse.sum_all()?.to_scalar::<f64>()? - (&z * onehot)?.sum_all()?.to_scalar::<f64>()?) * c;
    let reg = 0.5 * p[..classes * d].iter().map(|v| v * v).sum::<f64>();
    let diff = (z.broadcast_sub(&lse)?.exp()? - onehot)?;
    let gw = ((diff.t()?.matmul(x)? * c)? + &w)?.flatten_all()?.to_vec1::<f64>()?;
    let gb = (diff.sum(0)? * c)?.to_vec1::<f64>()?;
    g[..classes * d].copy_from_slice(&gw);
    g[classes * d..].copy_from_slice(&gb);
    Ok(ce + reg)
}

/// The linear-probe protocol.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearProbe {
    /// Candidate values of C (inverse regularisation), chosen among by cross validation.
    pub c_grid: Vec<f64>,
    /// Folds of the stratified cross validation.
    pub folds: usize,
    /// Seed of the folds and of label subsets.
    pub seed: u64,
    /// Standardise the embeddings (mean 0, std 1 per dimension, fitted on the training part).
    pub standardise: bool,
    /// Largest gradient entry at convergence.
    pub tol: f64,
    /// L-BFGS iterations at most per fit.
    pub max_iter: usize,
}

impl Default for LinearProbe {
    /// C in {1e-3, 1e-2, 0.1, 1, 10, 100}, 5 folds, standardised.
    fn default() -> Self {
        Self {
            c_grid: vec![1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0],
            folds: 5,
            seed: 0,
            standardise: true,
            tol: 1e-6,
            max_iter: 1000,
        }
    }
}

/// What a probe reports.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeReport {
    /// Test accuracy of the classifier refitted on all training samples with the chosen C.
    pub accuracy: f64,
    /// The chosen C.
    pub c: f64,
    /// Mean cross-validated accuracy of every C tried, in grid order.
    pub cv_accuracy: Vec<(f64, f64)>,
    /// Training samples used.
    pub train_samples: usize,
}

impl LinearProbe {
    /// Chooses C by cross validation on the training set, refits on all of it, scores the test set.
    pub fn evaluate(
        &self,
        train: &Tensor,
        train_labels: &[u32],
        test: &Tensor,
        test_labels: &[u32],
    ) -> Result<ProbeReport> {
        let (values, n, d) = rows_f64("linear probe train", train)?;
        check::labels("linear probe train", train_labels, n)?;
        let test_shape = check::embeddings("linear probe test", test)?;
        check::same_width("linear probe test", test_shape, d, "the train embeddings")?;
        if self.c_grid.is_empty() {
            return Err(Error::config("linear probe c_grid", "is empty"));
        }
        let stop = Stop { grad_tol: self.tol, max_iter: self.max_iter };
        let mut cv_accuracy = Vec::with_capacity(self.c_grid.len());
        let best_c = if self.c_grid.len() == 1 {
            self.c_grid[0]
        } else {
            let mut per_class = std::collections::HashMap::new();
            train_labels.iter().for_each(|l| *per_class.entry(l).or_insert(0usize) += 1);
            let smallest = per_class.values().copied().min().unwrap_or(0);
            let k = self.folds.min(smallest);
            if k < 2 {
                return Err(Error::Data(format!(
                    "linear probe: cross validation needs at least 2 samples of every class, the rarest has {smallest}"
                )));
            }
            let folds = stratified_folds(train_labels, k, self.seed);
            for &c in &self.c_grid {
                let mut total = 0.0;
                for f in 0..k {
                    let (fit_idx, held): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| folds[i] != f);
                    let pick = |idx: &[usize]| -> Vec<f64> {
                        idx.iter().flat_map(|&i| values[i * d..(i + 1) * d].iter().copied()).collect()
                    };
                    let labels = |idx: &[usize]| -> Vec<u32> { idx.iter().map(|&i| train_labels[i]).collect() };
                    let model = LogisticRegression::fit_rows(
                        &pick(&fit_idx),
                        fit_idx.len(),
                        d,
                        &labels(&fit_idx),
                        c,
                        self.standardise,
                        stop,
                    )?;
                    let held_x = Tensor::from_vec(pick(&held), (held.len(), d), &Device::Cpu)?;
                    total += model.accuracy(&held_x, &labels(&held))?;
                }
                cv_accuracy.push((c, total / k as f64));
            }
            // The best mean accuracy; ties go to the stronger regularisation (earlier in the grid).
            cv_accuracy
                .iter()
                .fold((self.c_grid[0], f64::NEG_INFINITY), |b, &(c, a)| if a > b.1 { (c, a) } else { b })
                .0
        };
        let model = LogisticRegression::fit_rows(&values, n, d, train_labels, best_c, self.standardise, stop)?;
        Ok(ProbeReport { accuracy: model.accuracy(test, test_labels)?, c: best_c, cv_accuracy, train_samples: n })
    }

    /// [`LinearProbe::evaluate`] on a stratified `fraction` of the training labels.
    pub fn evaluate_fraction(
        &self,
        fraction: f64,
        train: &Tensor,
        train_labels: &[u32],
        test: &Tensor,
        test_labels: &[u32],
    ) -> Result<ProbeReport> {
        check::labels("linear probe train", train_labels, train.dims().first().copied().unwrap_or(0))?;
        let keep = stratified_subset(train_labels, fraction, self.seed)?;
        let idx = Tensor::from_vec(keep.iter().map(|&i| i as u32).collect::<Vec<_>>(), keep.len(), train.device())?;
        let labels: Vec<u32> = keep.iter().map(|&i| train_labels[i]).collect();
        self.evaluate(&train.index_select(&idx, 0)?, &labels, test, test_labels)
    }
}
