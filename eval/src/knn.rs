//! k-nearest-neighbour classification of embeddings by cosine similarity: the weighted vote of
//! InstDisc (Wu et al. 2018, arXiv:1805.01978) as lightly's `knn_predict` computes it, and the
//! plain majority vote of scikit-learn's `KNeighborsClassifier(metric="cosine")`.

use crate::check;
use candle_core::Tensor;
use contrastive_core::similarity::{BlockSize, Similarity};
use contrastive_core::{Error, Result};

/// How the k neighbours vote.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Vote {
    /// Each neighbour adds exp(similarity / temperature) to its class (InstDisc, lightly).
    Weighted {
        /// Temperature of the weights (0.1 by default).
        temperature: f64,
    },
    /// Each neighbour adds 1; ties go to the smallest class index, as scikit-learn's mode does.
    Majority,
}

/// A kNN classifier's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Knn {
    /// Neighbours consulted (200 by default).
    pub k: usize,
    /// How they vote.
    pub vote: Vote,
    /// Block size of the similarity search: the full (test, train) matrix is never held.
    pub block: BlockSize,
}

impl Default for Knn {
    /// k = 200, weighted with temperature 0.1 (InstDisc's and lightly's defaults).
    fn default() -> Self {
        Self { k: 200, vote: Vote::Weighted { temperature: 0.1 }, block: BlockSize::default() }
    }
}

/// Top-1 and top-5 accuracy, as fractions in [0, 1].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnnAccuracy {
    /// The highest-scoring class is the true one.
    pub top1: f64,
    /// The true class is among the five highest-scoring ones.
    pub top5: f64,
}

impl Knn {
    /// For every test row, the classes ranked by their vote, best first (classes without a vote
    /// follow in index order). `train` (N, D) with `train_labels` (N); `test` (M, D).
    pub fn rank_classes(&self, train: &Tensor, train_labels: &[u32], test: &Tensor) -> Result<Vec<Vec<u32>>> {
        let (n, d) = check::embeddings("kNN train", train)?;
        let test_shape = check::embeddings("kNN test", test)?;
        check::labels("kNN train", train_labels, n)?;
        check::same_width("kNN test", test_shape, d, "the train embeddings")?;
        if self.k == 0 || self.k > n {
            return Err(Error::config(
                "kNN k",
                format!("k = {} must be between 1 and the {n} training samples", self.k),
            ));
        }
        if let Vote::Weighted { temperature } = self.vote {
            if !(temperature.is_finite() && temperature > 0.0) {
                return Err(Error::config(
                    "kNN vote temperature",
                    format!("must be finite and > 0, got {temperature}"),
                ));
            }
        }
        let classes = train_labels.iter().max().map_or(0, |&c| c as usize + 1);
        let top = Similarity::Cosine.top_k(test, train, self.k, self.block)?;
        let m = test.dims()[0];
        Ok((0..m)
            .map(|q| {
                let mut scores = vec![0.0f64; classes];
                for (&i, &s) in top.indices_of(q).iter().zip(top.values_of(q)) {
                    scores[train_labels[i as usize] as usize] += match self.vote {
                        Vote::Weighted { temperature } => (f64::from(s) / temperature).exp(),
                        Vote::Majority => 1.0,
                    };
                }
                let mut order: Vec<u32> = (0..classes as u32).collect();
                order.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
                order
            })
            .collect())
    }

    /// The predicted class of every test row.
    pub fn predict(&self, train: &Tensor, train_labels: &[u32], test: &Tensor) -> Result<Vec<u32>> {
        Ok(self.rank_classes(train, train_labels, test)?.into_iter().map(|r| r[0]).collect())
    }

    /// Top-1 and top-5 accuracy on labelled test rows.
    pub fn accuracy(
        &self,
        train: &Tensor,
        train_labels: &[u32],
        test: &Tensor,
        test_labels: &[u32],
    ) -> Result<KnnAccuracy> {
        check::labels("kNN test", test_labels, test.dims().first().copied().unwrap_or(0))?;
        let ranked = self.rank_classes(train, train_labels, test)?;
        let m = ranked.len() as f64;
        let hits = |within: usize| {
            ranked.iter().zip(test_labels).filter(|(r, l)| r.iter().take(within).any(|c| c == *l)).count() as f64 / m
        };
        Ok(KnnAccuracy { top1: hits(1), top5: hits(5) })
    }
}
