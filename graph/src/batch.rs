//! Block-diagonal batches: the graphs' nodes stacked, edges renumbered, a node-to-graph index.

use crate::data::Graph;
use candle_core::{Device, Tensor};
use contrastive_core::data::{Collate, ViewPair};
use contrastive_core::{Error, Result};

/// Several graphs as one disconnected graph.
#[derive(Clone, Debug)]
pub struct GraphBatch {
    /// Node features (N, d).
    pub x: Tensor,
    /// Source node of each directed edge (E,), u32; every undirected edge appears both ways.
    pub src: Tensor,
    /// Target node of each directed edge (E,), u32.
    pub dst: Tensor,
    /// Graph of each node (N,), u32, non-decreasing.
    pub batch: Tensor,
    /// Nodes of each graph.
    pub node_counts: Vec<usize>,
}

impl GraphBatch {
    /// Stacks `graphs` (same feature width, at least one node each) on `device`.
    pub fn new(graphs: &[&Graph], device: &Device) -> Result<Self> {
        let Some(first) = graphs.first() else { return Err(Error::Data("GraphBatch: no graphs".into())) };
        let d = first.feature_dim;
        let (mut x, mut src, mut dst, mut batch, mut counts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut offset = 0u32;
        for (gi, g) in graphs.iter().enumerate() {
            if g.feature_dim != d {
                return Err(Error::shape(
                    format!("GraphBatch: the node features of graph {gi}"),
                    format!("(N, {d}) as graph 0"),
                    &[g.num_nodes(), g.feature_dim],
                ));
            }
            if g.num_nodes() == 0 {
                return Err(Error::shape(
                    format!("GraphBatch: the node features of graph {gi}"),
                    format!("(N >= 1, {d})"),
                    &[0, g.feature_dim],
                ));
            }
            x.extend_from_slice(&g.features);
            for (u, v, _) in g.edges() {
                let (u, v) = (u as u32 + offset, v as u32 + offset);
                src.extend([u, v]);
                dst.extend([v, u]);
            }
            batch.extend(std::iter::repeat_n(gi as u32, g.num_nodes()));
            counts.push(g.num_nodes());
            offset += g.num_nodes() as u32;
        }
        let n = offset as usize;
        let e = src.len();
        Ok(Self {
            x: Tensor::from_vec(x, (n, d), device)?,
            src: Tensor::from_vec(src, e, device)?,
            dst: Tensor::from_vec(dst, e, device)?,
            batch: Tensor::from_vec(batch, n, device)?,
            node_counts: counts,
        })
    }

    /// Graphs in the batch.
    pub fn num_graphs(&self) -> usize {
        self.node_counts.len()
    }
}

/// Graphs `rows` of a batch as a batch of their own (gradient caching): their nodes, and their
/// edges renumbered from 0, exactly what [`GraphBatch::new`] makes of those graphs.
impl contrastive_core::grad_cache::RowSlice for GraphBatch {
    fn row_count(&self) -> Result<usize> {
        Ok(self.num_graphs())
    }

    fn slice_rows(&self, rows: std::ops::Range<usize>) -> Result<Self> {
        if rows.is_empty() || rows.end > self.num_graphs() {
            return Err(Error::index("GraphBatch: the last graph of a slice", rows.end, self.num_graphs()));
        }
        let first: usize = self.node_counts[..rows.start].iter().sum();
        let nodes: usize = self.node_counts[rows.clone()].iter().sum();
        // Edges come graph by graph, so those of the slice are one run of them.
        let src = self.src.to_vec1::<u32>()?;
        let (lo, hi) = (first as u32, (first + nodes) as u32);
        let start = src.partition_point(|&s| s < lo);
        let end = src.partition_point(|&s| s < hi);
        let shift = |t: &Tensor, by: f64| -> Result<Tensor> {
            Ok(t.narrow(0, start, end - start)?
                .to_dtype(candle_core::DType::F64)?
                .affine(1.0, -by)?
                .to_dtype(candle_core::DType::U32)?)
        };
        let batch = self.batch.narrow(0, first, nodes)?.to_dtype(candle_core::DType::F64)?;
        Ok(GraphBatch {
            x: self.x.narrow(0, first, nodes)?,
            src: shift(&self.src, first as f64)?,
            dst: shift(&self.dst, first as f64)?,
            batch: batch.affine(1.0, -(rows.start as f64))?.to_dtype(candle_core::DType::U32)?,
            node_counts: self.node_counts[rows].to_vec(),
        })
    }
}

/// The two views of a batch of graphs.
#[derive(Clone, Debug)]
pub struct GraphViews {
    /// First views.
    pub first: GraphBatch,
    /// Second views.
    pub second: GraphBatch,
}

impl contrastive_core::methods::ViewPairs for GraphViews {
    type View = GraphBatch;
    fn first(&self) -> &GraphBatch {
        &self.first
    }
    fn second(&self) -> &GraphBatch {
        &self.second
    }
}

/// Collates view pairs of graphs into [`GraphViews`] on `device`.
#[derive(Clone, Debug)]
pub struct CollateGraphs {
    /// Where the tensors go.
    pub device: Device,
}

impl Collate<ViewPair<Graph>> for CollateGraphs {
    type Batch = GraphViews;
    fn collate(&self, samples: Vec<ViewPair<Graph>>) -> Result<GraphViews> {
        let first: Vec<&Graph> = samples.iter().map(|s| &s.first).collect();
        let second: Vec<&Graph> = samples.iter().map(|s| &s.second).collect();
        Ok(GraphViews {
            first: GraphBatch::new(&first, &self.device)?,
            second: GraphBatch::new(&second, &self.device)?,
        })
    }
}
