//! k-means (Lloyd's algorithm) with k-means++ seeding (Arthur and Vassilvitskii 2007) and
//! restarts, seeded: the clustering whose agreement with the labels `nmi` and `ari` measure.

use crate::check;
use candle_core::{DType, Device, Tensor};
use contrastive_core::rng::keyed_rng;
use contrastive_core::{Error, Result};
use rand::Rng;

/// k-means settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KMeans {
    /// Number of clusters.
    pub k: usize,
    /// Independent k-means++ starts; the lowest inertia wins.
    pub restarts: usize,
    /// Lloyd iterations at most per start.
    pub max_iter: usize,
    /// Seed of the starts.
    pub seed: u64,
}

impl KMeans {
    /// `k` clusters, 10 restarts of at most 300 iterations (scikit-learn's defaults), seed 0.
    pub fn new(k: usize) -> Self {
        Self { k, restarts: 10, max_iter: 300, seed: 0 }
    }
}

/// A clustering.
#[derive(Clone, Debug, PartialEq)]
pub struct Clustering {
    /// The cluster of each row.
    pub labels: Vec<u32>,
    /// (k, D) centroids, row-major.
    pub centroids: Vec<f64>,
    /// Sum of squared distances of the rows to their centroids.
    pub inertia: f64,
}

impl KMeans {
    /// Clusters the rows of `x` (N, D).
    pub fn fit(&self, x: &Tensor) -> Result<Clustering> {
        let (n, d) = check::embeddings("k-means", x)?;
        if self.k == 0 || self.k > n {
            return Err(Error::config("k-means k", format!("k = {} must be between 1 and the {n} samples", self.k)));
        }
        let x = x.to_dtype(DType::F64)?;
        let values = x.flatten_all()?.to_vec1::<f64>()?;
        let norms: Vec<f64> = values.chunks(d).map(|r| r.iter().map(|v| v * v).sum()).collect();
        let mut best: Option<Clustering> = None;
        for start in 0..self.restarts.max(1) {
            let mut rng = keyed_rng(self.seed, &[20, start as u64]);
            let mut centroids = plus_plus(&values, &norms, n, d, self.k, &mut rng);
            let mut labels = vec![u32::MAX; n];
            let mut inertia = f64::INFINITY;
            for _ in 0..self.max_iter {
                let (new_labels, dists) = assign(&x, &norms, &centroids, self.k, d)?;
                inertia = dists.iter().sum();
                let changed = new_labels != labels;
                labels = new_labels;
                if !changed {
                    break;
                }
                centroids = update(&values, &labels, &dists, n, d, self.k);
            }
            if best.as_ref().is_none_or(|b| inertia < b.inertia) {
                best = Some(Clustering { labels, centroids, inertia });
            }
        }
        best.ok_or_else(|| Error::Data("k-means: no start ran".into()))
    }
}

/// k-means++: the first centre uniformly, each next one with probability proportional to the
/// squared distance to the nearest centre so far.
fn plus_plus(values: &[f64], norms: &[f64], n: usize, d: usize, k: usize, rng: &mut impl Rng) -> Vec<f64> {
    let mut centroids = Vec::with_capacity(k * d);
    let first = rng.random_range(0..n);
    centroids.extend_from_slice(&values[first * d..(first + 1) * d]);
    let sq = |i: usize, c: &[f64]| -> f64 {
        (norms[i] - 2.0 * values[i * d..(i + 1) * d].iter().zip(c).map(|(a, b)| a * b).sum::<f64>()
            + c.iter().map(|v| v * v).sum::<f64>())
        .max(0.0)
    };
    let mut nearest: Vec<f64> = (0..n).map(|i| sq(i, &centroids[..d])).collect();
    while centroids.len() < k * d {
        let total: f64 = nearest.iter().sum();
        let pick = if total > 0.0 {
            let mut u = rng.random_range(0.0..total);
            nearest
                .iter()
                .position(|&w| {
                    u -= w;
                    u < 0.0
                })
                .unwrap_or(n - 1)
        } else {
            rng.random_range(0..n)
        };
        let c = values[pick * d..(pick + 1) * d].to_vec();
        for (i, best) in nearest.iter_mut().enumerate() {
            *best = best.min(sq(i, &c));
        }
        centroids.extend_from_slice(&c);
    }
    centroids
}

/// Nearest centroid of every row and the squared distance to it.
fn assign(x: &Tensor, norms: &[f64], centroids: &[f64], k: usize, d: usize) -> Result<(Vec<u32>, Vec<f64>)> {
    let c = Tensor::from_slice(centroids, (k, d), &Device::Cpu)?;
    let c_norms: Vec<f64> = centroids.chunks(d).map(|r| r.iter().map(|v| v * v).sum()).collect();
    let dots = x.matmul(&c.t()?)?.to_vec2::<f64>()?;
    Ok(dots
        .iter()
        .zip(norms)
        .map(|(row, xn)| {
            let (j, dist) = row
                .iter()
                .enumerate()
                .map(|(j, dot)| (j, (xn - 2.0 * dot + c_norms[j]).max(0.0)))
                .fold((0, f64::INFINITY), |b, (j, v)| if v < b.1 { (j, v) } else { b });
            (j as u32, dist)
        })
        .unzip())
}

/// Means of the clusters; an empty cluster takes the row farthest from its centroid.
fn update(values: &[f64], labels: &[u32], dists: &[f64], n: usize, d: usize, k: usize) -> Vec<f64> {
    let mut sums = vec![0.0; k * d];
    let mut counts = vec![0usize; k];
    for i in 0..n {
        let c = labels[i] as usize;
        counts[c] += 1;
        for (s, v) in sums[c * d..(c + 1) * d].iter_mut().zip(&values[i * d..(i + 1) * d]) {
            *s += v;
        }
    }
    let mut taken = vec![false; n];
    for c in 0..k {
        if counts[c] == 0 {
            let far = (0..n).filter(|&i| !taken[i]).max_by(|&a, &b| dists[a].total_cmp(&dists[b])).unwrap_or(0);
            taken[far] = true;
            sums[c * d..(c + 1) * d].copy_from_slice(&values[far * d..(far + 1) * d]);
        } else {
            sums[c * d..(c + 1) * d].iter_mut().for_each(|s| *s /= counts[c] as f64);
        }
    }
    sums
}
