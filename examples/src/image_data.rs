//! Where the image examples find their data: `--data DIR` in any layout `ImageSplit` reads, or
//! Fashion-MNIST as `scripts/fetch-assets fashion-mnist` fetches it.

use crate::assets::Asset;
use contrastive_core::Result;
use contrastive_vision::ImageSplit;
use std::path::Path;

/// Reads `dir`, or the default Fashion-MNIST when there is none.
pub fn load_image_data(dir: Option<&Path>) -> Result<ImageSplit> {
    match dir {
        Some(d) => ImageSplit::open(d),
        None => ImageSplit::open(&Asset::FashionMnist.require("--data DIR (IDX files or class folders)")?),
    }
}
