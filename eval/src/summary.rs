//! The mean and spread of repeated measurements (folds, seeds), as papers report them.

use serde::Serialize;

/// Mean and population standard deviation of a set of figures, and the figures themselves.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MeanStd {
    /// The mean (NaN for no figure).
    pub mean: f64,
    /// The population standard deviation (divided by n, as scikit-learn's `cross_val_score`
    /// reports are usually summarised with `np.std`).
    pub std: f64,
    /// The figures, in order.
    pub values: Vec<f64>,
}

impl MeanStd {
    /// The summary of `values`.
    pub fn of(values: &[f64]) -> Self {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        Self { mean, std, values: values.to_vec() }
    }
}

#[cfg(test)]
mod tests {
    use super::MeanStd;

    #[test]
    fn mean_and_population_std() {
        // numpy: np.mean([2, 4, 4, 4, 5, 5, 7, 9]) = 5.0, np.std(...) = 2.0
        let s = MeanStd::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!((s.mean, s.std, s.values.len()), (5.0, 2.0, 8));
        assert!(MeanStd::of(&[]).mean.is_nan());
    }
}
