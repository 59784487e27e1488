//! One graph: an undirected petgraph structure, a node-feature matrix and a label.

use contrastive_core::{Error, Result};
use petgraph::graph::{NodeIndex, UnGraph};
use petgraph::visit::EdgeRef;

/// An undirected graph with a feature row per node, optional node labels, edge labels (0 when the
/// dataset has none) and a graph label. Node `i` of the petgraph structure owns feature row `i`.
#[derive(Clone, Debug)]
pub struct Graph {
    /// The structure; edge weights are edge labels.
    pub structure: UnGraph<(), u32>,
    /// `num_nodes * feature_dim` values, row-major.
    pub features: Vec<f32>,
    /// Width of a feature row.
    pub feature_dim: usize,
    /// The dataset's node labels, if it has them.
    pub node_labels: Option<Vec<u32>>,
    /// The graph's class.
    pub label: u32,
}

impl Graph {
    /// A graph from `n` nodes' features (`n * feature_dim` values) and undirected edges `(u, v,
    /// edge_label)` between node indices below `n`.
    pub fn new(features: Vec<f32>, feature_dim: usize, edges: &[(usize, usize, u32)], label: u32) -> Result<Self> {
        if feature_dim == 0 || features.len() % feature_dim != 0 {
            return Err(Error::shape(
                "graph features",
                format!("(N * {feature_dim}) with a width above 0"),
                &[features.len()],
            ));
        }
        let n = features.len() / feature_dim;
        let mut structure = UnGraph::with_capacity(n, edges.len());
        for _ in 0..n {
            structure.add_node(());
        }
        for &(u, v, l) in edges {
            if u >= n || v >= n {
                return Err(Error::index(format!("graph nodes, by edge ({u}, {v})"), u.max(v), n));
            }
            structure.add_edge(NodeIndex::new(u), NodeIndex::new(v), l);
        }
        Ok(Self { structure, features, feature_dim, node_labels: None, label })
    }

    /// Number of nodes.
    pub fn num_nodes(&self) -> usize {
        self.structure.node_count()
    }

    /// Number of undirected edges.
    pub fn num_edges(&self) -> usize {
        self.structure.edge_count()
    }

    /// The undirected edges as `(u, v, label)` with `u <= v`, in insertion order.
    pub fn edges(&self) -> Vec<(usize, usize, u32)> {
        self.structure
            .edge_references()
            .map(|e| {
                let (a, b) = (e.source().index(), e.target().index());
                (a.min(b), a.max(b), *e.weight())
            })
            .collect()
    }

    /// Neighbours of every node.
    pub fn adjacency(&self) -> Vec<Vec<usize>> {
        (0..self.num_nodes())
            .map(|i| self.structure.neighbors(NodeIndex::new(i)).map(|n| n.index()).collect())
            .collect()
    }

    /// Feature row of node `i`.
    pub fn feature_row(&self, i: usize) -> &[f32] {
        &self.features[i * self.feature_dim..(i + 1) * self.feature_dim]
    }

    /// The subgraph induced by `keep` (node indices, each once), renumbered in the order given:
    /// kept nodes keep their features and labels, edges between them their labels.
    pub fn induced(&self, keep: &[usize]) -> Result<Graph> {
        let n = self.num_nodes();
        let mut new_id = vec![usize::MAX; n];
        for (k, &i) in keep.iter().enumerate() {
            if i >= n || new_id[i] != usize::MAX {
                return Err(Error::Data(format!("induced: node {i} is out of range or repeated ({n} nodes)")));
            }
            new_id[i] = k;
        }
        let features: Vec<f32> = keep.iter().flat_map(|&i| self.feature_row(i).iter().copied()).collect();
        let edges: Vec<(usize, usize, u32)> = self
            .edges()
            .into_iter()
            .filter(|&(u, v, _)| new_id[u] != usize::MAX && new_id[v] != usize::MAX)
            .map(|(u, v, l)| (new_id[u], new_id[v], l))
            .collect();
        let mut g = Graph::new(features, self.feature_dim, &edges, self.label)?;
        g.node_labels = self.node_labels.as_ref().map(|l| keep.iter().map(|&i| l[i]).collect());
        Ok(g)
    }
}
