//! Files of a Hugging Face Hub model repository, downloaded once into the Hub cache that the
//! Python tools share (feature `hub`, hf-hub's blocking client).
//!
//! ```no_run
//! use contrastive_core::hub::HubRepo;
//! // `owner/name`, or `owner/name@revision` to pin a branch, tag or commit.
//! let repo = HubRepo::parse("sentence-transformers/all-MiniLM-L6-v2@main")?;
//! let config = repo.get("config.json")?; // a path inside the cache's snapshot of the revision
//! let pooling = repo.get_optional("1_Pooling/config.json")?; // None when the repo has no such file
//! # Ok::<(), contrastive_core::Error>(())
//! ```
//!
//! The environment is honoured as by the Python client: `HF_HOME` (cache at `$HF_HOME/hub`),
//! `HF_ENDPOINT` (a mirror), and `HF_HUB_OFFLINE=1` (read the cache only, and say which file is
//! missing from it).

use crate::{Error, Result};
use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use std::path::PathBuf;

/// One revision of a model repository on the Hub (or a mirror), and where it is cached.
#[derive(Clone, Debug)]
pub struct HubRepo {
    id: String,
    revision: String,
    endpoint: Option<String>,
    cache_dir: Option<PathBuf>,
    offline: bool,
}

impl HubRepo {
    /// `owner/name` (revision `main`) or `owner/name@revision`; anything else is an error that
    /// quotes it.
    pub fn parse(spec: &str) -> Result<Self> {
        let (id, revision) = spec.split_once('@').unwrap_or((spec, "main"));
        let parts: Vec<&str> = id.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) || revision.is_empty() {
            return Err(Error::Hub(format!("{spec:?} is not a repository id (owner/name or owner/name@revision)")));
        }
        Ok(Self {
            id: id.to_string(),
            revision: revision.to_string(),
            endpoint: None,
            cache_dir: None,
            offline: std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
        })
    }

    /// Downloads from `endpoint` (default: `HF_ENDPOINT`, else huggingface.co).
    pub fn with_endpoint(mut self, endpoint: &str) -> Self {
        self.endpoint = Some(endpoint.trim_end_matches('/').to_string());
        self
    }

    /// Caches under `dir`, laid out as the Hub cache (default: `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`).
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Reads the cache only, never the network (default: `HF_HUB_OFFLINE=1`).
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Whether only the cache is read.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// `owner/name@revision`, as errors quote it.
    pub fn name(&self) -> String {
        format!("{}@{}", self.id, self.revision)
    }

    fn cache(&self) -> Cache {
        match &self.cache_dir {
            Some(dir) => Cache::new(dir.clone()),
            None => Cache::from_env(),
        }
    }

    fn repo(&self) -> Repo {
        Repo::with_revision(self.id.clone(), RepoType::Model, self.revision.clone())
    }

    /// The cached path of `file` (a path inside the repository), downloading it first unless it
    /// is cached. A file the repository lacks, a network failure, or (offline) a file missing from
    /// the cache is an error naming the repository, the revision and the file.
    pub fn get(&self, file: &str) -> Result<PathBuf> {
        match self.get_optional(file)? {
            Some(path) => Ok(path),
            None if self.offline => Err(Error::Hub(format!(
                "{}: offline (HF_HUB_OFFLINE=1) and {file} is not in the cache {}",
                self.name(),
                self.cache().path().display()
            ))),
            None => Err(Error::Hub(format!("{}: the repository has no file {file}", self.name()))),
        }
    }

    /// Like [`HubRepo::get`], but `None` when the repository has no such file (HTTP 404); offline,
    /// `None` when the cache lacks it.
    pub fn get_optional(&self, file: &str) -> Result<Option<PathBuf>> {
        let cache = self.cache();
        if let Some(path) = cache.repo(self.repo()).get(file) {
            return Ok(Some(path));
        }
        if self.offline {
            tracing::debug!("offline: {file} of {} is not in the cache {}", self.name(), cache.path().display());
            return Ok(None);
        }
        let mut builder = ApiBuilder::from_cache(cache).with_progress(false);
        match (&self.endpoint, std::env::var("HF_ENDPOINT")) {
            (Some(e), _) => builder = builder.with_endpoint(e.clone()),
            (None, Ok(e)) => builder = builder.with_endpoint(e),
            (None, Err(_)) => {}
        }
        let api =
            builder.build().map_err(|e| Error::Hub(format!("{}: cannot start the Hub client: {e}", self.name())))?;
        match api.repo(self.repo()).download(file) {
            Ok(path) => Ok(Some(path)),
            Err(ApiError::RequestError(e)) if matches!(*e, ureq::Error::StatusCode(404)) => Ok(None),
            Err(e) => Err(Error::Hub(format!("{}: cannot download {file}: {e}", self.name()))),
        }
    }
}
