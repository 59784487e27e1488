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
        return Err(Error::Data(format!("--init {init}: not a file (expected a .safetensors file)")));
    }
    hub(init)
}

#[cfg(feature = "hub")]
fn hub(init: &str) -> Result<PathBuf> {
    use hf_hub::{Repo, RepoType};
    let (repo_id, revision) = match init.split_once('@') {
        Some((r, v)) => (r.to_string(), v.to_string()),
        None => (init.to_string(), "main".to_string()),
    };
    if repo_id.split('/').count() != 2 {
        return Err(Error::Data(format!("--init {init}: no such file, and not a Hub repository id (owner/name)")));
    }
    let repo = Repo::with_revision(repo_id.clone(), RepoType::Model, revision.clone());
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1");
    if offline {
        let cache = hf_hub::Cache::from_env();
        return cache.repo(repo).get("model.safetensors").ok_or_else(|| {
            Error::Data(format!(
                "--init {init}: HF_HUB_OFFLINE=1 and model.safetensors of {repo_id}@{revision} is not in the cache {}",
                cache.path().display()
            ))
        });
    }
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| Error::Data(format!("--init {init}: cannot start the Hub client: {e}")))?;
    api.repo(repo)
        .get("model.safetensors")
        .map_err(|e| Error::Data(format!("--init {init}: cannot fetch model.safetensors of {repo_id}@{revision}: {e}")))
}

#[cfg(not(feature = "hub"))]
fn hub(init: &str) -> Result<PathBuf> {
    Err(Error::Data(format!(
        "--init {init}: no such file. To load a Hugging Face Hub repository, build with the `hub` feature \
         (cargo run --features hub ...)"
    )))
}
