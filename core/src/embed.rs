//! Embedding a whole dataset with a trained model, in eval mode and a batch at a time: the one
//! path that every modality crate, `eval`, `--save-embeddings` and the examples share. Each
//! modality says how a batch of its items becomes vectors ([`Embed`]); [`embed`] does the rest.

use crate::backbone::Backbone;
use crate::data::Dataset;
use crate::error::{Error, Result};
use candle_core::{DType, Tensor};
use rayon::prelude::*;

/// A model that turns a batch of items (images, sentences, graphs) into their embeddings,
/// (items, D), in eval mode (no dropout, running BatchNorm statistics).
pub trait Embed<T> {
    /// The embeddings of `items`, one row each, in order.
    fn embed_batch(&self, items: Vec<T>) -> Result<Tensor>;
}

/// Any [`Backbone`] as an [`Embed`]: `input` makes a batch of items into the backbone's input
/// (a graph batch, a token batch), which is encoded in eval mode. For a model defined in a few
/// lines, or one tower of a two-tower model, without an `Embed` of its own.
pub struct BackboneEmbedder<'a, B, F> {
    /// The encoder.
    pub backbone: &'a B,
    /// How a batch of items becomes the backbone's input.
    pub input: F,
}

impl<T, B: Backbone, F: Fn(Vec<T>) -> Result<B::Input>> Embed<T> for BackboneEmbedder<'_, B, F> {
    fn embed_batch(&self, items: Vec<T>) -> Result<Tensor> {
        Ok(self.backbone.encode(&(self.input)(items)?, false)?)
    }
}

/// The embeddings of every item of `dataset`, in its order, `batch_size` items at a time:
/// (len, D) f32, detached from any graph. The items of a batch are read on rayon's threads. An
/// empty dataset or a batch size of 0 is an error, as is a model that returns a row count other
/// than its batch's. For a dataset whose embeddings do not fit in memory, [`embed_each`].
pub fn embed<D: Dataset + ?Sized>(model: &impl Embed<D::Item>, dataset: &D, batch_size: usize) -> Result<Tensor> {
    let mut parts = Vec::with_capacity(dataset.len().div_ceil(batch_size.max(1)));
    embed_each(model, dataset, batch_size, |_, z| {
        parts.push(z);
        Ok(())
    })?;
    Ok(Tensor::cat(&parts, 0)?)
}

/// As [`embed`], but each batch's embeddings (rows, D) f32 go to `sink(first_item, embeddings)`
/// as soon as they are computed, in order, and nothing is kept: the path for writing embeddings
/// of a dataset of any size to disk.
pub fn embed_each<D: Dataset + ?Sized>(
    model: &impl Embed<D::Item>,
    dataset: &D,
    batch_size: usize,
    mut sink: impl FnMut(usize, Tensor) -> Result<()>,
) -> Result<()> {
    if batch_size == 0 {
        return Err(Error::config("embed.batch_size", "must be at least 1"));
    }
    let n = dataset.len();
    if n == 0 {
        return Err(Error::Data("embed: the dataset has no item".into()));
    }
    for start in (0..n).step_by(batch_size) {
        let end = (start + batch_size).min(n);
        // Items are read in parallel: decoding image files is most of the work here.
        let items = (start..end).into_par_iter().map(|i| dataset.get(i)).collect::<Result<Vec<_>>>()?;
        let z = model.embed_batch(items)?;
        if z.rank() != 2 || z.dim(0)? != end - start {
            let what = format!("embed: the embeddings of items {start}..{end}");
            return Err(Error::shape(what, format!("({}, D)", end - start), z.dims()));
        }
        sink(start, z.detach().to_dtype(DType::F32)?)?;
    }
    Ok(())
}
