//! The one error type for I/O, configuration, data and training. Tensor maths stays on
//! `candle_core::Result`; a candle error that reaches training is wrapped here.

use std::path::PathBuf;

/// What went wrong, naming the file, field, tensor or step involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file could not be read or written.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What serde said.
        message: String,
    },
    /// A configuration value is invalid.
    #[error("invalid config: {field}: {message}")]
    Config {
        /// The field, e.g. `optimizer.momentum`.
        field: String,
        /// Why it is invalid.
        message: String,
    },
    /// A checkpoint is missing, truncated or does not match the model.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file within the checkpoint.
        path: PathBuf,
        /// What is wrong, naming the tensor where there is one.
        message: String,
    },
    /// Bad data in a file, where in it is known: the line (1-based) and the field.
    #[error("data: {}{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), field.as_ref().map(|f| format!(": field {f}")).unwrap_or_default())]
    File {
        /// The file.
        path: PathBuf,
        /// The line, from 1, when the error is on one.
        line: Option<usize>,
        /// The field of that line (a column number from 1, or a name), when the error is in one.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A tensor or batch whose shape is not the one expected.
    #[error("{what}: expected shape {expected}, found {found:?}")]
    Shape {
        /// The tensor or input, as the caller names it.
        what: String,
        /// The shape expected, in words where a dimension is free (e.g. `(N, 64)`).
        expected: String,
        /// The shape found.
        found: Vec<usize>,
    },
    /// An index past the end of a dataset, list or table.
    #[error("{what}: index {index} is out of range for {len} items")]
    Index {
        /// What was indexed, as the caller names it.
        what: String,
        /// The index asked for.
        index: usize,
        /// How many items there are.
        len: usize,
    },
    /// Bad input data that no file, field, shape or index pins down: a content problem of the
    /// whole input (a single class where a classifier needs two, a constant series, no text).
    #[error("data: {0}")]
    Data(String),
    /// A Hugging Face Hub repository or file could not be had (online or from the cache).
    #[error("hub: {0}")]
    Hub(String),
    /// The loss became NaN or infinite; the last good checkpoint stays on disk.
    #[error("loss is {value} at step {step} (epoch {epoch}); training stopped, {}", kept(.checkpoint))]
    NonFiniteLoss {
        /// The optimiser step (0-based) whose loss was not finite.
        step: usize,
        /// Its epoch.
        epoch: usize,
        /// The loss value.
        value: f64,
        /// The newest checkpoint on disk, which the run can resume from, if there is one.
        checkpoint: Option<PathBuf>,
    },
    /// A gradient became NaN or infinite (the loss was finite); no step was taken with it.
    #[error("the gradient of {parameter} is not finite at step {step} (epoch {epoch}, loss {loss}); training stopped, {}", kept(.checkpoint))]
    NonFiniteGradient {
        /// The optimiser step (0-based) whose gradient was not finite.
        step: usize,
        /// Its epoch.
        epoch: usize,
        /// The first parameter (in name order) whose gradient had a NaN or infinity.
        parameter: String,
        /// The step's loss.
        loss: f64,
        /// The newest checkpoint on disk, if there is one.
        checkpoint: Option<PathBuf>,
    },
    /// Training was stopped on request (Ctrl-C) before its end.
    #[error("interrupted after step {step}; {}", kept(.checkpoint))]
    Interrupted {
        /// Steps taken.
        step: usize,
        /// The checkpoint saved when it stopped, if the run has a folder.
        checkpoint: Option<PathBuf>,
    },
    /// An error from candle's tensor maths.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// What a failed run leaves to resume from, in words.
fn kept(checkpoint: &Option<PathBuf>) -> String {
    match checkpoint {
        Some(path) => format!("the last checkpoint, {}, is kept (--resume continues from it)", path.display()),
        None => "no checkpoint had been saved".to_string(),
    }
}

impl Error {
    /// An invalid config field.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { field: field.into(), message: message.into() }
    }

    /// A checkpoint problem in `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint { path: path.into(), message: message.into() }
    }

    /// Bad data in `path`, on `line` (from 1) when the error is on one.
    pub fn in_file(path: impl Into<PathBuf>, line: Option<usize>, message: impl Into<String>) -> Self {
        Error::File { path: path.into(), line, field: None, message: message.into() }
    }

    /// Bad data in field `field` of line `line` (from 1) of `path`.
    pub fn in_field(
        path: impl Into<PathBuf>,
        line: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::File { path: path.into(), line: Some(line), field: Some(field.into()), message: message.into() }
    }

    /// A tensor or input `what` of shape `found` where `expected` was wanted.
    pub fn shape(what: impl Into<String>, expected: impl Into<String>, found: &[usize]) -> Self {
        Error::Shape { what: what.into(), expected: expected.into(), found: found.to_vec() }
    }

    /// Index `index` of `what`, which holds `len` items, is out of range.
    pub fn index(what: impl Into<String>, index: usize, len: usize) -> Self {
        Error::Index { what: what.into(), index, len }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
