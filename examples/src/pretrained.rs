//! Where `--init` weights come from: a local file, or (with the `hub` feature) the Hugging Face Hub.

use contrastive_core::{Error, Result};
use std::path::PathBuf;

/// The local path of `--init`: the file itself, or `model.safetensors` of a Hub repository
/// (`owner/name`, optionally `owner/name@revision`) downloaded into the Hub cache (`HF_HOME`,
/// `HF_ENDPOINT` honoured; with `HF_HUB_OFFLINE=1` only the cache is read).
pub fn resolve_init(init: &str) -> Result<PathBuf> {
    let path = PathBuf::from(init);
    if path.is_file() {
        return Ok(path);
    }
    if path.exists() {
        return Err(Error::config("--init", format!("{init}: not a file (expected a .safetensors file)")));
    }
    hub(init)
}

#[cfg(feature = "hub")]
fn hub(init: &str) -> Result<PathBuf> {
    let repo = contrastive_core::hub::HubRepo::parse(init)
        .map_err(|e| Error::config("--init", format!("{init}: no such file, and {e}")))?;
    repo.get("model.safetensors")
}

#[cfg(not(feature = "hub"))]
fn hub(init: &str) -> Result<PathBuf> {
    Err(Error::config(
        "--init",
        format!(
            "{init}: no such file. To load a Hugging Face Hub repository, build with the `hub` feature \
         (the default: leave out --no-default-features)"
        ),
    ))
}
