//! # contrastive-graph
//!
//! Contrastive learning on graphs.
//!
//! - [`Graph`]: an undirected petgraph structure with a node-feature row per node, optional node
//!   labels, edge labels and a graph label; [`load_tu`] reads the TU Dortmund format with every
//!   malformed line named by file and line.
//! - [`augment`]: GraphCL's node dropping, edge perturbation, attribute masking and subgraphs,
//!   seeded per sample; combine them with the core's `RandomChoice` or `Compose`.
//! - [`GraphBatch`]: block-diagonal batches; [`Gin`]: GIN layers by `index_select`/`index_add`,
//!   sum, mean or max readout, GraphCL's concatenation of every layer's readout.
//! - [`GraphCl`]: GraphCL's objective for the core `Trainer`.

pub mod augment;
mod baseline;
mod batch;
mod data;
mod gin;
mod graphcl;

pub use baseline::label_degree_histogram;
pub use batch::{CollateGraphs, GraphBatch, GraphViews};
pub use data::{load_tu, load_tu_aligned, read_tu_smiles, Graph, NodeFeatures, TuDataset, TuOptions, MAX_NODE_LABEL};
pub use gin::{Epsilon, Gin, GinConfig, Readout};
pub use graphcl::{GraphCl, GraphClConfig, GraphClLoss};

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
