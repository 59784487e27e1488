//! Embeddings of a dataset of any size on disk: a folder of safetensors shards, each
//! `embeddings` (rows, D) f32 and, for labelled sets, `labels` (rows) i64, with an `index.json`
//! that lists them. [`ShardWriter`] takes embeddings a batch at a time and writes a shard each
//! `rows_per_shard` rows, so nothing but one shard is ever held; [`EmbeddingShards`] reads the set
//! back one shard at a time, for exact nearest-neighbour search over all of it
//! ([`EmbeddingShards::top_k`], [`Knn::rank_classes_in_shards`](crate::Knn)) or an HNSW index
//! ([`ApproximateIndex::build_from_shards`](crate::ApproximateIndex)).
//!
//! ```python
//! import json, numpy as np
//! from safetensors.numpy import load_file
//! index = json.load(open("embeddings/index.json"))
//! x = np.concatenate([load_file(f"embeddings/{s['file']}")["embeddings"] for s in index["shards"]])
//! ```
//!
//! The index is written last and atomically: a folder without one is an unfinished set, and
//! opening it says so rather than reading part of it.

use crate::check;
use candle_core::{DType, Device, Tensor};
use contrastive_core::similarity::{BlockSize, RunningTopK, Similarity, TopK};
use contrastive_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The `format` field of every index.
const FORMAT: &str = "contrastive-embedding-shards";
/// The index's file name inside the folder.
pub const INDEX_FILE: &str = "index.json";

/// One shard as the index lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name inside the folder.
    pub file: String,
    /// Rows it holds.
    pub rows: usize,
}

/// The contents of `index.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardIndex {
    /// Always `contrastive-embedding-shards`.
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// Embedding width D.
    pub dim: usize,
    /// Rows over all shards.
    pub rows: usize,
    /// Whether every shard holds `labels`.
    pub labelled: bool,
    /// The shards, in row order.
    pub shards: Vec<ShardEntry>,
}

/// Writes embeddings a batch at a time into a folder of shards; [`ShardWriter::finish`] writes
/// the index. Dropped without `finish`, it leaves shards but no index: an unfinished set.
pub struct ShardWriter {
    dir: PathBuf,
    rows_per_shard: usize,
    dim: Option<usize>,
    labelled: Option<bool>,
    pending: Vec<f32>,
    pending_labels: Vec<i64>,
    pending_rows: usize,
    shards: Vec<ShardEntry>,
    rows: usize,
}

impl ShardWriter {
    /// Starts a set in `dir` (created if missing), a shard per `rows_per_shard` rows. An earlier
    /// set in the folder is replaced: its index goes first, then its shards; any other file in
    /// the folder is an error, so a mistyped path never deletes a user's files.
    pub fn create(dir: &Path, rows_per_shard: usize) -> Result<Self> {
        if rows_per_shard == 0 {
            return Err(Error::config("rows_per_shard", "must be at least 1"));
        }
        let mut ours = Self::check_target(dir)?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        // The index first: a crash in between leaves an unfinished set, never a wrong one.
        ours.sort_by_key(|p| p.file_name().is_some_and(|n| n != INDEX_FILE));
        for path in ours {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            rows_per_shard,
            dim: None,
            labelled: None,
            pending: Vec::new(),
            pending_labels: Vec::new(),
            pending_rows: 0,
            shards: Vec::new(),
            rows: 0,
        })
    }

    /// Checks that a set can be written in `dir` without touching anything else: it is missing,
    /// or a folder that holds nothing but an earlier set's index and shards. Returns those files.
    /// For checking a path before hours of work that end by writing there.
    pub fn check_target(dir: &Path) -> Result<Vec<PathBuf>> {
        if dir.is_file() {
            return Err(Error::in_file(dir, None, "is a file: embedding shards go in a folder"));
        }
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut ours = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name == INDEX_FILE || is_shard_name(name) {
                ours.push(path);
            } else {
                return Err(Error::in_file(
                    &path,
                    None,
                    "is not part of an embedding shard set: shards go in a folder that is new, empty or \
                     holds an earlier set",
                ));
            }
        }
        Ok(ours)
    }

    /// Adds `embeddings` (rows, D) and, for a labelled set, their `labels`: every call must give
    /// labels or none, and the same D.
    pub fn push(&mut self, embeddings: &Tensor, labels: Option<&[u32]>) -> Result<()> {
        let (n, d) = check::embeddings("embedding shards", embeddings)?;
        if let Some(dim) = self.dim {
            check::same_width("embedding shards", (n, d), dim, "the rows written before")?;
        }
        if let Some(labelled) = self.labelled {
            if labelled != labels.is_some() {
                return Err(Error::config(
                    "embedding shards labels",
                    "every batch must come with labels, or none must: a set is labelled or not",
                ));
            }
        }
        if let Some(labels) = labels {
            check::labels("embedding shards", labels, n)?;
        }
        self.dim = Some(d);
        self.labelled = Some(labels.is_some());
        let values = embeddings.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut row = 0;
        while row < n {
            let take = (self.rows_per_shard - self.pending_rows).min(n - row);
            self.pending.extend_from_slice(&values[row * d..(row + take) * d]);
            if let Some(labels) = labels {
                self.pending_labels.extend(labels[row..row + take].iter().map(|&l| i64::from(l)));
            }
            self.pending_rows += take;
            row += take;
            if self.pending_rows == self.rows_per_shard {
                self.write_pending()?;
            }
        }
        Ok(())
    }

    fn write_pending(&mut self) -> Result<()> {
        let (rows, d) = (self.pending_rows, self.dim.unwrap_or(0));
        if rows == 0 {
            return Ok(());
        }
        let file = format!("shard-{:05}.safetensors", self.shards.len());
        let mut tensors = HashMap::from([(
            "embeddings".to_string(),
            Tensor::from_vec(std::mem::take(&mut self.pending), (rows, d), &Device::Cpu)?,
        )]);
        if self.labelled == Some(true) {
            let labels = std::mem::take(&mut self.pending_labels);
            tensors.insert("labels".to_string(), Tensor::from_vec(labels, rows, &Device::Cpu)?);
        }
        contrastive_core::atomic::save_safetensors(&tensors, &self.dir.join(&file))?;
        self.shards.push(ShardEntry { file, rows });
        self.rows += rows;
        self.pending_rows = 0;
        Ok(())
    }

    /// Rows taken so far.
    pub fn rows(&self) -> usize {
        self.rows + self.pending_rows
    }

    /// Writes the last shard and the index; the set can then be opened. A set without a row is
    /// an error.
    pub fn finish(mut self) -> Result<EmbeddingShards> {
        self.write_pending()?;
        let Some(dim) = self.dim else {
            return Err(Error::Data(format!("embedding shards in {}: no row was written", self.dir.display())));
        };
        let index = ShardIndex {
            format: FORMAT.to_string(),
            version: 1,
            dim,
            rows: self.rows,
            labelled: self.labelled == Some(true),
            shards: self.shards,
        };
        let path = self.dir.join(INDEX_FILE);
        let json = serde_json::to_vec_pretty(&index).map_err(|e| Error::in_file(&path, None, e.to_string()))?;
        contrastive_core::atomic::write_bytes_atomically(&path, &json)?;
        Ok(EmbeddingShards { dir: self.dir, index })
    }
}

/// Bad data in `field` of a shard set's file (index or shard), which has no lines to name.
fn field_error(path: &Path, field: &str, message: impl Into<String>) -> Error {
    Error::File { path: path.to_path_buf(), line: None, field: Some(field.to_string()), message: message.into() }
}

fn is_shard_name(name: &str) -> bool {
    name.strip_prefix("shard-")
        .and_then(|r| r.strip_suffix(".safetensors"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A finished set of embedding shards, read one shard at a time.
#[derive(Clone, Debug)]
pub struct EmbeddingShards {
    dir: PathBuf,
    index: ShardIndex,
}

impl EmbeddingShards {
    /// Opens the set in `dir`: its index must be there (else the set is unfinished), of this
    /// format, with shard rows that add up and shard files that exist.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(INDEX_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::in_file(
                    &path,
                    None,
                    "missing: not a folder of embedding shards, or one whose writing never finished",
                )
            } else {
                Error::io(&path, e)
            }
        })?;
        let index: ShardIndex =
            serde_json::from_slice(&bytes).map_err(|e| Error::in_file(&path, Some(e.line()), e.to_string()))?;
        if index.format != FORMAT || index.version != 1 {
            return Err(field_error(
                &path,
                "format",
                format!("expected {FORMAT} version 1, found {} version {}", index.format, index.version),
            ));
        }
        let total: usize = index.shards.iter().map(|s| s.rows).sum();
        if total != index.rows || index.dim == 0 {
            return Err(field_error(
                &path,
                "rows",
                format!("{} rows of width {} but its shards hold {total}", index.rows, index.dim),
            ));
        }
        for shard in &index.shards {
            if !is_shard_name(&shard.file) {
                return Err(field_error(&path, "shards", format!("{:?} is not a shard file name", shard.file)));
            }
            let file = dir.join(&shard.file);
            if !file.is_file() {
                return Err(Error::in_file(&file, None, format!("missing: {INDEX_FILE} lists it")));
            }
        }
        Ok(Self { dir: dir.to_path_buf(), index })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index.
    pub fn index(&self) -> &ShardIndex {
        &self.index
    }

    /// Rows over all shards.
    pub fn len(&self) -> usize {
        self.index.rows
    }

    /// Whether the set has no row (a finished set always has one).
    pub fn is_empty(&self) -> bool {
        self.index.rows == 0
    }

    /// Embedding width D.
    pub fn dim(&self) -> usize {
        self.index.dim
    }

    /// Whether the shards hold labels.
    pub fn labelled(&self) -> bool {
        self.index.labelled
    }

    /// Shard `i`: its embeddings (rows, D) f32 and, for a labelled set, its labels. A file whose
    /// tensors disagree with the index is named.
    pub fn shard(&self, i: usize) -> Result<(Tensor, Option<Vec<u32>>)> {
        let entry =
            self.index.shards.get(i).ok_or_else(|| Error::index("embedding shard", i, self.index.shards.len()))?;
        let path = self.dir.join(&entry.file);
        let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu)
            .map_err(|e| Error::in_file(&path, None, format!("not a readable safetensors file: {e}")))?;
        let x = tensors.remove("embeddings").ok_or_else(|| field_error(&path, "embeddings", "missing"))?;
        if x.dims() != [entry.rows, self.index.dim] || x.dtype() != DType::F32 {
            return Err(field_error(
                &path,
                "embeddings",
                format!(
                    "{:?} {:?} where {INDEX_FILE} says ({}, {}) F32",
                    x.dims(),
                    x.dtype(),
                    entry.rows,
                    self.index.dim
                ),
            ));
        }
        let labels = if self.index.labelled {
            let y = tensors.remove("labels").ok_or_else(|| field_error(&path, "labels", "missing"))?;
            if y.dims() != [entry.rows] {
                return Err(field_error(&path, "labels", format!("shape {:?}, expected ({},)", y.dims(), entry.rows)));
            }
            let y = y.to_dtype(DType::I64)?.to_vec1::<i64>()?;
            let labels = y
                .iter()
                .map(|&l| u32::try_from(l))
                .collect::<std::result::Result<Vec<u32>, _>>()
                .map_err(|_| field_error(&path, "labels", "a label is negative or above u32::MAX"))?;
            Some(labels)
        } else {
            None
        };
        Ok((x, labels))
    }

    /// Every shard in order, read as it is reached.
    pub fn iter(&self) -> impl Iterator<Item = Result<(Tensor, Option<Vec<u32>>)>> + '_ {
        (0..self.index.shards.len()).map(|i| self.shard(i))
    }

    /// All labels, in row order (4 bytes a row, read shard by shard); an error for an unlabelled
    /// set.
    pub fn labels(&self) -> Result<Vec<u32>> {
        if !self.index.labelled {
            return Err(Error::Data(format!("the embedding shards in {} hold no labels", self.dir.display())));
        }
        let mut all = Vec::with_capacity(self.index.rows);
        for shard in self.iter() {
            all.extend(shard?.1.unwrap_or_default());
        }
        Ok(all)
    }

    /// The whole set as one (N, D) tensor: for sets that fit in memory.
    pub fn to_tensor(&self) -> Result<Tensor> {
        let parts = self.iter().map(|s| s.map(|(x, _)| x)).collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// The exact `k` most similar rows of the whole set for each row of `queries`, reading one
    /// shard at a time: memory is one shard plus the queries' candidates, whatever the set's size.
    pub fn top_k(&self, similarity: Similarity, queries: &Tensor, k: usize, block: BlockSize) -> Result<TopK> {
        self.search(similarity, queries, k, block, None)
    }

    /// [`Self::top_k`] and every label in row order, gathered in the same pass over the shards
    /// (kNN needs both: one read of the set, not two); an error for an unlabelled set.
    pub fn top_k_and_labels(
        &self,
        similarity: Similarity,
        queries: &Tensor,
        k: usize,
        block: BlockSize,
    ) -> Result<(TopK, Vec<u32>)> {
        if !self.index.labelled {
            return Err(Error::Data(format!("the embedding shards in {} hold no labels", self.dir.display())));
        }
        let mut labels = Vec::with_capacity(self.index.rows);
        let top = self.search(similarity, queries, k, block, Some(&mut labels))?;
        Ok((top, labels))
    }

    fn search(
        &self,
        similarity: Similarity,
        queries: &Tensor,
        k: usize,
        block: BlockSize,
        mut labels: Option<&mut Vec<u32>>,
    ) -> Result<TopK> {
        let shape = check::embeddings("shard search queries", queries)?;
        check::same_width("shard search queries", shape, self.index.dim, "the embedding shards")?;
        let mut running = RunningTopK::new(similarity, &queries.to_dtype(DType::F32)?, k, block)?;
        for shard in self.iter() {
            let (x, y) = shard?;
            running.add(&x)?;
            if let Some(all) = labels.as_deref_mut() {
                all.extend(y.unwrap_or_default());
            }
        }
        Ok(running.finish()?)
    }
}
