//! Graphs and where they come from: the graph type and the TU Dortmund reader.

mod graph;
mod smiles;
mod tu;

pub use graph::Graph;
pub use smiles::read_tu_smiles;
pub use tu::{load_tu, load_tu_aligned, NodeFeatures, TuDataset, TuOptions, MAX_NODE_LABEL};
