//! # contrastive-eval
//!
//! What tells a user whether embeddings are good. Tensors or slices in, numbers out; each agrees
//! with the standard tool (scikit-learn, scipy, lightly) to the last reported digit.
//!
//! - [`Knn`]: weighted (InstDisc, lightly) and majority kNN classification, top-1 and top-5,
//!   searched block by block.
//! - [`LinearProbe`]: L2 logistic regression on frozen standardised embeddings (L-BFGS to
//!   convergence), C chosen by stratified k-fold cross validation; 1% / 10% label variants;
//!   [`CrossValidation`] scores it over k outer folds (the graph-learning protocol).
//! - [`retrieval_metrics`]: recall@k, MRR, mAP by exact blocked search; [`paired_retrieval`]
//!   both ways between paired modalities, against [`RetrievalReport::chance`];
//!   [`ApproximateIndex`] (HNSW) and its [`approximate_recall`] against exact search.
//! - [`plot_history`], [`plot_embeddings`] (PCA, [`pca_2d`]): SVG and PNG pictures.
//! - [`write_projector`]: TensorBoard's embedding projector files (tensor, metadata with labels,
//!   sentences or SMILES, an image sprite); [`RunReport`]: a self-contained `report.html` with
//!   the curves, the figures and a 2-D map of [`Items`] shown on hover.
//! - [`save_embeddings`]: `.npy` files that NumPy and scikit-learn read, to check any figure.
//! - [`ShardWriter`], [`EmbeddingShards`]: embeddings of a dataset of any size on disk, written
//!   and read a safetensors shard at a time; exact search over them
//!   ([`EmbeddingShards::top_k`], [`Knn::rank_classes_in_shards`]) and HNSW
//!   ([`ApproximateIndex::build_from_shards`]).
//! - [`pearson`], [`spearman`]: correlation, as for STS benchmarks.
//! - [`KMeans`] (k-means++, seeded restarts), [`nmi`], [`ari`]: agreement of a clustering with
//!   the labels.
//! - [`alignment`], [`uniformity`]: the geometry of Wang and Isola (2020).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use contrastive_eval::{ari, spearman, Knn, Vote};
//!
//! let train = Tensor::new(&[[1f32, 0.], [0.9, 0.1], [0., 1.], [0.1, 0.9]], &Device::Cpu)?;
//! let test = Tensor::new(&[[1f32, 0.05], [0.05, 1.]], &Device::Cpu)?;
//! let knn = Knn { k: 2, vote: Vote::Majority, ..Default::default() };
//! assert_eq!(knn.predict(&train, &[0, 0, 1, 1], &test)?, vec![0, 1]);
//! assert!((spearman(&[1., 2., 3.], &[10., 20., 35.])? - 1.0).abs() < 1e-12);
//! assert_eq!(ari(&[0, 0, 1, 1], &[5, 5, 2, 2])?, 1.0);
//! # Ok::<(), contrastive_core::Error>(())
//! ```

mod check;
mod clustering;
mod correlation;
mod cross_validation;
mod export;
mod geometry;
mod html_report;
mod items;
mod kmeans;
mod knn;
mod lbfgs;
mod linear_probe;
mod plot;
mod projector;
mod retrieval;
mod shards;
mod summary;

pub use clustering::{ari, nmi};
pub use contrastive_core::data::{stratified_folds, stratified_split, stratified_subset};
pub use correlation::{average_ranks, pair_correlation, pearson, spearman, Correlation};
pub use cross_validation::{CrossValidation, CvReport};
pub use export::save_embeddings;
pub use geometry::{alignment, uniformity};
pub use html_report::{EmbeddingMap, RunReport, CURVE_POINTS, REPORT_POINTS};
pub use items::{spread_indices, Content, Items, Thumbnails, MAX_SPRITE_SIDE};
pub use kmeans::{Clustering, KMeans};
pub use knn::{Knn, KnnAccuracy, Vote};
pub use linear_probe::{LinearProbe, LogisticRegression, ProbeReport};
pub use plot::{pca_2d, plot_embeddings, plot_history};
pub use projector::{write_projector, ProjectorEmbedding, PROJECTOR_CONFIG, PROJECTOR_POINTS};
pub use retrieval::{
    approximate_recall, paired_retrieval, relevant_ranks, retrieval_metrics, ApproximateIndex, HnswConfig,
    RetrievalReport,
};
pub use shards::{EmbeddingShards, ShardEntry, ShardIndex, ShardWriter, INDEX_FILE as SHARD_INDEX_FILE};
pub use summary::MeanStd;

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
