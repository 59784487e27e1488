//! k-nearest-neighbour classification of embeddings by cosine similarity: the weighted vote of
//! InstDisc (Wu et al. 2018, arXiv:1805.01978) as lightly's `knn_predict` computes it, and the
//! plain majority vote of scikit-learn's `KNeighborsClassifier(metric="cosine")`.

use crate::{check, ApproximateIndex, EmbeddingShards};
use candle_core::Tensor;
use contrastive_core::similarity::{BlockSize, Similarity, TopK};
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
        self.check(n)?;
        let top = Similarity::Cosine.top_k(test, train, self.k, self.block)?;
        self.rank_neighbours(&top, train_labels)
    }

    /// As [`Knn::rank_classes`], with the training embeddings and labels in a set of shards on
    /// disk, searched exactly one shard at a time: for training sets that do not fit in memory.
    pub fn rank_classes_in_shards(&self, train: &EmbeddingShards, test: &Tensor) -> Result<Vec<Vec<u32>>> {
        self.check(train.len())?;
        let (top, labels) = train.top_k_and_labels(Similarity::Cosine, test, self.k, self.block)?;
        self.rank_neighbours(&top, &labels)
    }

    /// As [`Knn::rank_classes`], with the neighbours found by an HNSW index over the training
    /// embeddings (approximate, for sets where exact search is too slow); `train_labels` in the
    /// index's row order. The index's `ef_search` must be at least `k`.
    pub fn rank_classes_approximate(
        &self,
        index: &ApproximateIndex,
        train_labels: &[u32],
        test: &Tensor,
    ) -> Result<Vec<Vec<u32>>> {
        check::labels("kNN train", train_labels, index.len())?;
        self.check(index.len())?;
        let top = index.top_k(test, self.k)?;
        self.rank_neighbours(&top, train_labels)
    }

    fn check(&self, n: usize) -> Result<()> {
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
        Ok(())
    }

    /// The vote of each query's neighbours (`top`, cosine similarities), classes best first.
    fn rank_neighbours(&self, top: &TopK, train_labels: &[u32]) -> Result<Vec<Vec<u32>>> {
        let classes = train_labels.iter().max().map_or(0, |&c| c as usize + 1);
        let m = top.indices.len().checked_div(top.k).unwrap_or(0);
        (0..m)
            .map(|q| {
                let mut scores = vec![0.0f64; classes];
                for (&i, &s) in top.indices_of(q).iter().zip(top.values_of(q)) {
                    let label = train_labels
                        .get(i as usize)
                        .ok_or_else(|| Error::index("kNN neighbour", i as usize, train_labels.len()))?;
                    scores[*label as usize] += match self.vote {
                        Vote::Weighted { temperature } => (f64::from(s) / temperature).exp(),
                        Vote::Majority => 1.0,
                    };
                }
                let mut order: Vec<u32> = (0..classes as u32).collect();
                order.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
                Ok(order)
            })
            .collect()
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
        KnnAccuracy::of(&self.rank_classes(train, train_labels, test)?, test_labels)
    }

    /// As [`Knn::accuracy`], the training set in shards on disk (see [`Knn::rank_classes_in_shards`]).
    pub fn accuracy_in_shards(
        &self,
        train: &EmbeddingShards,
        test: &Tensor,
        test_labels: &[u32],
    ) -> Result<KnnAccuracy> {
        check::labels("kNN test", test_labels, test.dims().first().copied().unwrap_or(0))?;
        KnnAccuracy::of(&self.rank_classes_in_shards(train, test)?, test_labels)
    }
}

impl KnnAccuracy {
    /// The accuracy of classes ranked best first against the true labels.
    pub fn of(ranked: &[Vec<u32>], test_labels: &[u32]) -> Result<Self> {
        if ranked.len() != test_labels.len() || ranked.is_empty() {
            return Err(Error::config(
                "kNN accuracy",
                format!(
                    "{} ranked rows for {} labels (both must be equal and non-zero)",
                    ranked.len(),
                    test_labels.len()
                ),
            ));
        }
        let m = ranked.len() as f64;
        let hits = |within: usize| {
            ranked.iter().zip(test_labels).filter(|(r, l)| r.iter().take(within).any(|c| c == *l)).count() as f64 / m
        };
        Ok(Self { top1: hits(1), top5: hits(5) })
    }
}
