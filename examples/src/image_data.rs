//! Where the image examples find their data: `--data PATH` in any layout `ImageSplit` reads
//! (files are read one at a time, never all at once), or Fashion-MNIST as
//! `scripts/fetch-assets fashion-mnist` fetches it; and the flags of reading images.

use crate::assets::Asset;
use crate::recipe::Recipe;
use clap::Args;
use contrastive_core::data::Dataset;
use contrastive_core::Result;
use contrastive_vision::augment::Normalize;
use contrastive_vision::{ImageSet, ImageSplit, Unreadable};
use serde::Serialize;
use std::path::Path;

/// How the image examples read their images.
#[derive(Args, Clone, Debug, Serialize)]
pub struct ImageFlags {
    /// Side of the square views the encoder trains and is evaluated on. Default: the images' own
    /// size for IDX files; for image files, which may be of any size, the recipe's (reference 32,
    /// simclr 96, moco-v2 224).
    #[arg(long, value_name = "N", value_parser = crate::flags::at_least_one())]
    pub image_size: Option<usize>,
    /// Stop at the first image file that cannot be read, naming it (default: leave it out with a
    /// warning naming it, and count the skipped files at the end).
    #[arg(long)]
    pub stop_on_unreadable: bool,
    /// Batches decoded and augmented ahead of the one training.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = crate::flags::at_least_one())]
    pub prefetch: usize,
    /// Evaluate (baselines, monitor, final kNN and probe, saved embeddings) on at most N training
    /// images and N/4 test images, spread over the sets (default: all of them).
    #[arg(long, value_name = "N", value_parser = crate::flags::at_least_one())]
    pub eval_images: Option<usize>,
    /// Side of a ViT's square patches, in pixels (`--encoder vit-*`; it must divide the views'
    /// side: 16 for 96 or 224, 4 or 7 for Fashion-MNIST's 28).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = crate::flags::at_least_one())]
    pub patch_size: usize,
    /// A ViT's stochastic depth in its last block (rising linearly from 0 in the first; timm's
    /// `drop_path_rate`, DINO's ViT-S 0.1).
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = crate::flags::below_one)]
    pub drop_path: f64,
}

impl ImageFlags {
    /// What an unreadable file does.
    pub fn unreadable(&self) -> Unreadable {
        if self.stop_on_unreadable {
            Unreadable::Fail
        } else {
            Unreadable::Skip
        }
    }

    /// The (height, width) of the views for `data` and `recipe`.
    pub fn size(&self, data: &ImageSplit, recipe: Recipe) -> (usize, usize) {
        match (self.image_size, data.train.size()) {
            (Some(n), _) => (n, n),
            (None, Some(size)) => size,
            (None, None) => (recipe.default_side(), recipe.default_side()),
        }
    }
}

/// Reads `path`, or the default Fashion-MNIST when there is none.
pub fn load_image_data(path: Option<&Path>, unreadable: Unreadable) -> Result<ImageSplit> {
    match path {
        Some(p) => ImageSplit::open(p, unreadable),
        None => ImageSplit::open(
            &Asset::FashionMnist.require("--data PATH (IDX files, image folders or a list file)")?,
            unreadable,
        ),
    }
}

/// The normalisation to train from scratch with: every image's statistics for a set in memory;
/// for files, those of 512 images spread evenly over the set (reading them all would be a pass
/// over the whole dataset before the first step).
pub fn fit_normalize(train: &ImageSet) -> Result<Normalize> {
    match train {
        ImageSet::Memory(m) => Normalize::fit(m),
        ImageSet::Files(_) => Normalize::fit(&sample_of(train, 512)?),
    }
}

/// At most `n` images of the set: the first `n` of a set in memory (IDX sets come in random
/// order), `n` spread evenly over image files (they are listed class by class, so the first `n`
/// would be a few classes only).
pub fn sample_of(set: &ImageSet, n: usize) -> Result<ImageSet> {
    let len = set.len();
    match set {
        _ if n >= len => Ok(set.clone()),
        ImageSet::Memory(_) => Ok(set.head(n)),
        ImageSet::Files(_) => set.select(&(0..n).map(|i| i * len / n).collect::<Vec<_>>()),
    }
}

/// What the images at `rows` of `set` are, for the projector and the report: labels (class names
/// for a folder of classes) and thumbnails, at the images' own size up to 64 pixels a side in
/// memory, else 48 x 48.
pub fn image_items(set: &ImageSet, rows: &[usize]) -> Result<contrastive_eval::Items> {
    let chosen = set.select(rows)?;
    let size = match set.size() {
        Some((h, w)) if h.max(w) <= 64 => None,
        _ => Some((48, 48)),
    };
    let images = chosen.to_memory(size)?;
    let thumbnails =
        contrastive_eval::Thumbnails::from_unit_chw(images.channels, images.height, images.width, &images.pixels)?;
    let class_names = match set {
        ImageSet::Files(f) if f.labelled() => f.classes().to_vec(),
        _ => Vec::new(),
    };
    Ok(contrastive_eval::Items {
        labels: set.labelled().then(|| images.labels.clone()),
        class_names,
        content: contrastive_eval::Content::Thumbnails(thumbnails),
    })
}
