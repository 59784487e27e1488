//! JSON files as the workspace keeps them: pretty, written atomically, errors naming the file.

use crate::error::{Error, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

/// Writes `value` as pretty JSON, atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Error::Json { path: path.into(), message: e.to_string() })?;
    crate::atomic::write_bytes_atomically(path, text.as_bytes())
}

/// Reads JSON, naming the file in any error.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::checkpoint(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| Error::Json { path: path.into(), message: e.to_string() })
}
