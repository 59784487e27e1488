//! Where the image examples find their data: a folder of IDX files (the MNIST family), a folder
//! with `train/` and `test/` class folders, or one folder of class folders split 4:1.

use crate::assets::Asset;
use contrastive_core::{Error, Result};
use contrastive_vision::{load_idx_folder, ColorMode, ImageFolder, InMemoryImages, Unreadable};
use std::path::{Path, PathBuf};

/// Training and evaluation images, and where they came from.
pub struct ImageData {
    /// Training images (their labels are only used for evaluation).
    pub train: InMemoryImages,
    /// Evaluation images.
    pub test: InMemoryImages,
    /// What was read.
    pub source: String,
}

/// Reads `dir` (default: Fashion-MNIST as `scripts/fetch-assets fashion-mnist` fetches it).
pub fn load_image_data(dir: Option<&Path>) -> Result<ImageData> {
    let dir: PathBuf = match dir {
        Some(d) => d.to_path_buf(),
        None => Asset::FashionMnist.require("--data DIR (IDX files or class folders)")?,
    };
    if !dir.is_dir() {
        return Err(Error::Data(format!(
            "{} is not a folder: pass --data DIR with train-images-idx3-ubyte[.gz] and the other IDX files, \
             or a folder of class folders",
            dir.display()
        )));
    }
    let has = |name: &str| dir.join(name).exists() || dir.join(format!("{name}.gz")).exists();
    if has("train-images-idx3-ubyte") {
        let (train, test) = load_idx_folder(&dir)?;
        return Ok(ImageData { train, test, source: format!("IDX files in {}", dir.display()) });
    }
    if dir.join("train").is_dir() && dir.join("test").is_dir() {
        let train = materialise(&dir.join("train"), None)?;
        let size = (train.height, train.width);
        let test = materialise(&dir.join("test"), Some(size))?;
        return Ok(ImageData { train, test, source: format!("image folders {0}/train and {0}/test", dir.display()) });
    }
    let all = materialise(&dir, None)?;
    let folds = contrastive_eval::stratified_folds(&all.labels, 5, 0);
    let (test_idx, train_idx): (Vec<usize>, Vec<usize>) = (0..all.labels.len()).partition(|&i| folds[i] == 0);
    Ok(ImageData {
        train: all.select(&train_idx)?,
        test: all.select(&test_idx)?,
        source: format!("image folder {} split 4:1 by class", dir.display()),
    })
}

/// Decodes every image of a class-folder tree into memory as RGB (unreadable files left out
/// with a warning), resized to `size` (default: the first image's size).
fn materialise(root: &Path, size: Option<(usize, usize)>) -> Result<InMemoryImages> {
    ImageFolder::open(root, ColorMode::Rgb, Unreadable::Skip)?.to_memory(size)
}

/// The first `n` images of each set, for short runs.
pub fn truncate(data: &InMemoryImages, n: usize) -> Result<InMemoryImages> {
    data.select(&(0..n.min(data.labels.len())).collect::<Vec<_>>())
}
