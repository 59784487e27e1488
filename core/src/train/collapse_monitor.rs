//! The collapse monitor: the spread of a fixed sample's embeddings in the history, every few
//! epochs, and a warning when they collapse.

use super::{Objective, Progress, Trainer};
use crate::error::Result;

impl<O: Objective> Trainer<O> {
    /// Watches for collapse, the failure of the methods without negatives (BYOL, SimSiam, Barlow
    /// Twins, VICReg, DINO): after every `every_epochs` epochs, `embed` returns embeddings of a
    /// fixed sample (N, D), and their [`Spread`](crate::collapse::Spread) goes into the history as
    /// `embedding_std` (the per-dimension standard deviation of the l2-normalised rows, times
    /// sqrt(D): about 1 when spread, 0 when collapsed), `effective_rank` and `uniformity` (t = 2);
    /// a collapsed set prints a warning that says which.
    pub fn add_collapse_monitor(
        &mut self,
        every_epochs: usize,
        mut embed: impl FnMut(&mut O, &Progress) -> Result<candle_core::Tensor> + 'static,
    ) {
        self.evaluations.push((
            every_epochs.max(1),
            Box::new(move |o, p| {
                let spread = crate::collapse::Spread::of(&embed(o, p)?)?;
                if let Some(warning) = spread.collapse() {
                    tracing::warn!(epoch = p.epoch, "{warning}");
                    eprintln!("warning: epoch {}: {warning}", p.epoch + 1);
                }
                Ok(vec![
                    ("embedding_std".to_string(), spread.scaled_std),
                    ("effective_rank".to_string(), spread.effective_rank),
                    ("uniformity".to_string(), spread.uniformity),
                ])
            }),
        ));
    }
}
