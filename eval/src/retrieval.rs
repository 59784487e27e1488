//! Retrieval: rank a corpus for each query by cosine similarity and score the ranking (recall@k,
//! MRR, mAP); exact search block by block, and an approximate HNSW index for large corpora.
//!
//! The approximate index is `instant-distance` (Malkov and Yashunin's HNSW, arXiv:1603.09320):
//! pure Rust (no C++ toolchain, unlike faiss or usearch bindings), a small dependency tree (no
//! logging or memory-mapping stack, unlike hnsw_rs), parallel construction on rayon, and a seeded
//! builder, so the index is a function of the data and the seed. [`approximate_recall`] reports
//! how much of the exact top-k it finds.

use crate::{check, EmbeddingShards};
use candle_core::{DType, Tensor};
use contrastive_core::similarity::{l2_normalize, BlockSize, Similarity, TopK};
use contrastive_core::{Error, Result};

/// Ranking quality over a query set.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrievalReport {
    /// (k, recall@k): the mean over queries of the fraction of their relevant items ranked in the
    /// top k (with one relevant item per query: the fraction of queries whose item is there).
    pub recall_at: Vec<(usize, f64)>,
    /// Mean reciprocal rank of the first relevant item.
    pub mrr: f64,
    /// Mean average precision.
    pub map: f64,
}

impl RetrievalReport {
    /// What a uniformly random ranking of a corpus of `n` items scores when each query has one
    /// relevant item: recall@k = min(k, n) / n, and MRR = mAP = H(n) / n (H the harmonic number),
    /// the mean of 1 / rank over the n equally likely ranks. The baseline a trained model's
    /// retrieval is read against.
    pub fn chance(n: usize, ks: &[usize]) -> Result<Self> {
        if n == 0 {
            return Err(Error::config("retrieval chance n", "the corpus must hold at least 1 item"));
        }
        if let Some(&k) = ks.iter().find(|&&k| k == 0) {
            return Err(Error::config("retrieval ks", format!("k = {k} must be at least 1")));
        }
        let recall_at = ks.iter().map(|&k| (k, k.min(n) as f64 / n as f64)).collect();
        let mrr = (1..=n).map(|r| 1.0 / r as f64).sum::<f64>() / n as f64;
        Ok(Self { recall_at, mrr, map: mrr })
    }

    /// Recall@`k`, where `k` was one of the cut-offs asked for.
    pub fn recall(&self, k: usize) -> Option<f64> {
        self.recall_at.iter().find(|(kk, _)| *kk == k).map(|&(_, v)| v)
    }
}

/// Retrieval both ways between paired embeddings, row i of `a` and row i of `b` being one item
/// (a molecule's graph and its SMILES string, an image and its caption): (a to b, b to a), each
/// query's one relevant item its own row.
pub fn paired_retrieval(a: &Tensor, b: &Tensor, ks: &[usize]) -> Result<(RetrievalReport, RetrievalReport)> {
    let (n, _) = check::embeddings("paired retrieval a", a)?;
    let (m, d) = check::embeddings("paired retrieval b", b)?;
    if m != n {
        return Err(Error::shape(
            "paired retrieval b: embeddings",
            format!("({n}, D) as a, one row per pair"),
            &[m, d],
        ));
    }
    let relevant: Vec<Vec<u32>> = (0..n as u32).map(|i| vec![i]).collect();
    Ok((retrieval_metrics(a, b, &relevant, ks)?, retrieval_metrics(b, a, &relevant, ks)?))
}

/// The rank (1-based) of every relevant item of every query among the whole corpus, by cosine
/// similarity, ties going to the lower corpus index. Two passes over blocks: the relevant items'
/// similarities, then how many corpus items beat them.
pub fn relevant_ranks(queries: &Tensor, corpus: &Tensor, relevant: &[Vec<u32>]) -> Result<Vec<Vec<usize>>> {
    let (m, d) = check::embeddings("retrieval queries", queries)?;
    let (n, d2) = check::embeddings("retrieval corpus", corpus)?;
    check::same_width("retrieval corpus", (n, d2), d, "the queries")?;
    if relevant.len() != m {
        return Err(Error::shape("retrieval: relevance lists", format!("({m},), one per query"), &[relevant.len()]));
    }
    for (q, rel) in relevant.iter().enumerate() {
        if rel.is_empty() {
            return Err(Error::Data(format!("retrieval: query {q} has no relevant item")));
        }
        if let Some(&bad) = rel.iter().find(|&&r| r as usize >= n) {
            return Err(Error::index(format!("retrieval corpus, by the relevance list of query {q}"), bad as usize, n));
        }
    }
    let block = BlockSize::default();
    let mut target: Vec<Vec<f32>> = relevant.iter().map(|r| vec![0.0; r.len()]).collect();
    Similarity::Cosine.for_each_block(queries, corpus, block, |r0, c0, s| {
        let s = s.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let cols = s.first().map_or(0, Vec::len);
        for (i, row) in s.iter().enumerate() {
            for (t, &r) in target[r0 + i].iter_mut().zip(&relevant[r0 + i]) {
                let r = r as usize;
                if r >= c0 && r < c0 + cols {
                    *t = row[r - c0];
                }
            }
        }
        Ok(())
    })?;
    let mut ranks: Vec<Vec<usize>> = relevant.iter().map(|r| vec![1; r.len()]).collect();
    Similarity::Cosine.for_each_block(queries, corpus, block, |r0, c0, s| {
        let s = s.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        for (i, row) in s.iter().enumerate() {
            let q = r0 + i;
            for ((rank, &t), &r) in ranks[q].iter_mut().zip(&target[q]).zip(&relevant[q]) {
                *rank += row.iter().enumerate().filter(|&(j, &v)| v > t || (v == t && c0 + j < r as usize)).count();
            }
        }
        Ok(())
    })?;
    Ok(ranks)
}

/// Recall@k for each k in `ks`, MRR and mAP of exact cosine search of `corpus` for `queries`;
/// `relevant[q]` lists the corpus indices relevant to query q.
pub fn retrieval_metrics(
    queries: &Tensor,
    corpus: &Tensor,
    relevant: &[Vec<u32>],
    ks: &[usize],
) -> Result<RetrievalReport> {
    if let Some(&k) = ks.iter().find(|&&k| k == 0) {
        return Err(Error::config("retrieval ks", format!("k = {k} must be at least 1")));
    }
    let ranks = relevant_ranks(queries, corpus, relevant)?;
    let m = ranks.len() as f64;
    let recall_at = ks
        .iter()
        .map(|&k| {
            (k, ranks.iter().map(|r| r.iter().filter(|&&x| x <= k).count() as f64 / r.len() as f64).sum::<f64>() / m)
        })
        .collect();
    let mrr = ranks.iter().map(|r| 1.0 / *r.iter().min().unwrap_or(&usize::MAX) as f64).sum::<f64>() / m;
    let map = ranks
        .iter()
        .map(|r| {
            let mut sorted = r.clone();
            sorted.sort_unstable();
            // The i-th relevant item (1-based) at rank p has precision i / p.
            sorted.iter().enumerate().map(|(i, &p)| (i + 1) as f64 / p as f64).sum::<f64>() / r.len() as f64
        })
        .sum::<f64>()
        / m;
    Ok(RetrievalReport { recall_at, mrr, map })
}

#[derive(Clone)]
struct Unit(Vec<f32>);

impl instant_distance::Point for Unit {
    fn distance(&self, other: &Self) -> f32 {
        // Cosine distance of unit vectors. Eight running sums: one would serialise every
        // addition, and this is the hot loop of building the index.
        let (a, b) = (&self.0, &other.0);
        let mut acc = [0.0f32; 8];
        let mut ca = a.chunks_exact(8);
        let mut cb = b.chunks_exact(8);
        for (x, y) in (&mut ca).zip(&mut cb) {
            for l in 0..8 {
                acc[l] += x[l] * y[l];
            }
        }
        let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
        1.0 - (acc.iter().sum::<f32>() + tail)
    }
}

/// An approximate nearest-neighbour index (HNSW) over a corpus, by cosine similarity.
pub struct ApproximateIndex {
    map: instant_distance::HnswMap<Unit, u32>,
    dim: usize,
    ef_search: usize,
}

/// HNSW build and search breadth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HnswConfig {
    /// Candidates kept while inserting (higher: better graph, slower build).
    pub ef_construction: usize,
    /// Candidates kept while searching (at least the k searched for).
    pub ef_search: usize,
    /// Seed of the level assignment.
    pub seed: u64,
}

impl Default for HnswConfig {
    fn default() -> Self {
        Self { ef_construction: 100, ef_search: 100, seed: 0 }
    }
}

fn unit_rows(what: &str, x: &Tensor) -> Result<(Vec<Unit>, usize)> {
    let (_, d) = check::embeddings(what, x)?;
    let rows = l2_normalize(&x.to_dtype(DType::F32)?)?.to_vec2::<f32>()?;
    Ok((rows.into_iter().map(Unit).collect(), d))
}

impl ApproximateIndex {
    /// Builds the index over the rows of `corpus` (N, D).
    pub fn build(corpus: &Tensor, config: HnswConfig) -> Result<Self> {
        let (points, dim) = unit_rows("approximate index corpus", corpus)?;
        Ok(Self::from_points(points, dim, config))
    }

    /// Builds the index over a set of embedding shards, read one at a time (the index itself holds
    /// every row: N x D f32 plus the graph); rows keep their order across the shards.
    pub fn build_from_shards(shards: &EmbeddingShards, config: HnswConfig) -> Result<Self> {
        let mut points = Vec::with_capacity(shards.len());
        for shard in shards.iter() {
            points.extend(unit_rows("approximate index corpus", &shard?.0)?.0);
        }
        Ok(Self::from_points(points, shards.dim(), config))
    }

    fn from_points(points: Vec<Unit>, dim: usize, config: HnswConfig) -> Self {
        let ids = (0..points.len() as u32).collect();
        let map = instant_distance::Builder::default()
            .ef_construction(config.ef_construction)
            .ef_search(config.ef_search)
            .seed(config.seed)
            .build(points, ids);
        Self { map, dim, ef_search: config.ef_search }
    }

    /// Corpus rows indexed.
    pub fn len(&self) -> usize {
        self.map.values.len()
    }

    /// Whether the index has no row.
    pub fn is_empty(&self) -> bool {
        self.map.values.is_empty()
    }

    /// The (approximately) `k` most similar corpus rows of each query, best first, with their
    /// cosine similarities.
    pub fn top_k(&self, queries: &Tensor, k: usize) -> Result<TopK> {
        let (points, dim) = unit_rows("approximate index queries", queries)?;
        check::same_width("approximate index queries", (points.len(), dim), self.dim, "the corpus it was built on")?;
        if k == 0 || k > self.ef_search || k > self.len() {
            return Err(Error::config(
                "approximate index k",
                format!(
                    "k = {k} must be between 1 and ef_search = {} and the {} rows indexed",
                    self.ef_search,
                    self.len()
                ),
            ));
        }
        let mut search = instant_distance::Search::default();
        let mut top =
            TopK { k, indices: Vec::with_capacity(points.len() * k), values: Vec::with_capacity(points.len() * k) };
        for p in &points {
            let before = top.indices.len();
            for item in self.map.search(p, &mut search).take(k) {
                top.indices.push(*item.value);
                top.values.push(1.0 - item.distance);
            }
            if top.indices.len() - before < k {
                return Err(Error::Data(format!(
                    "approximate index: a query reached only {} of {k} neighbours",
                    top.indices.len() - before
                )));
            }
        }
        Ok(top)
    }

    /// The (approximately) `k` most similar corpus rows of each query, best first.
    pub fn search(&self, queries: &Tensor, k: usize) -> Result<Vec<Vec<u32>>> {
        let (points, dim) = unit_rows("approximate index queries", queries)?;
        check::same_width("approximate index queries", (points.len(), dim), self.dim, "the corpus it was built on")?;
        if k == 0 || k > self.ef_search {
            return Err(Error::config(
                "approximate index k",
                format!("k = {k} must be between 1 and ef_search = {}", self.ef_search),
            ));
        }
        let mut search = instant_distance::Search::default();
        Ok(points.iter().map(|p| self.map.search(p, &mut search).take(k).map(|item| *item.value).collect()).collect())
    }
}

/// The fraction of the exact top-k neighbours (cosine) that the index returns in its top k,
/// averaged over the queries.
pub fn approximate_recall(index: &ApproximateIndex, queries: &Tensor, corpus: &Tensor, k: usize) -> Result<f64> {
    let found = index.search(queries, k)?;
    let exact = Similarity::Cosine.top_k(queries, corpus, k, BlockSize::default())?;
    let hits: usize =
        found.iter().enumerate().map(|(q, f)| exact.indices_of(q).iter().filter(|e| f.contains(e)).count()).sum();
    Ok(hits as f64 / (found.len() * k) as f64)
}
