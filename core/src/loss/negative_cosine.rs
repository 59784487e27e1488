//! BYOL's and SimSiam's loss (Grill et al. 2020, arXiv:2006.07733; Chen and He 2021,
//! arXiv:2011.10566): the negative cosine similarity of a prediction and a target,
//!
//! ```text
//! loss = -(1/N) Σ_i cos(p_i, z_i)
//! ```
//!
//! There are no negatives: what keeps the embeddings from collapsing is that the target carries
//! no gradient (SimSiam's stop-gradient, BYOL's momentum network), so pass `z` detached or from a
//! target network. BYOL writes it as the normalised squared error 2 - 2 cos, the same gradient
//! times two. lightly's `NegativeCosineSimilarity`.

use crate::similarity::{check_pair, l2_normalize};
use candle_core::{bail, Result, Tensor};

/// The mean negative cosine similarity of rows `p` (N, D) and `z` (N, D), row i with row i.
pub fn negative_cosine(p: &Tensor, z: &Tensor) -> Result<Tensor> {
    let (n, m, _) = check_pair("negative_cosine", p, z)?;
    if n != m {
        bail!("negative_cosine: {n} predictions and {m} targets; row i of each must form a pair");
    }
    if n == 0 {
        bail!("negative_cosine: no rows");
    }
    (l2_normalize(p)? * l2_normalize(z)?)?.sum_all()?.neg()? / n as f64
}
