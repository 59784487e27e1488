//! GraphCL's augmentations (You et al. 2020, arXiv:2010.13902), each drawing from the explicit
//! per-sample stream the core loader hands it. Compose them with `contrastive_core::augment`'s
//! `RandomChoice` (GraphCL's random augmentation) or `Compose`.
//!
//! Counts follow the GraphCL code: `floor(ratio · n)` nodes or edges. Unlike the public code,
//! dropped nodes leave the graph (they are not zeroed and still counted by the readout), and the
//! subgraph grows from its whole frontier, so it reaches nodes many hops from the start.

use crate::data::Graph;
use contrastive_core::augment::{Augment, RandomChoice};
use contrastive_core::{Error, Result};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng as _, RngCore};
use std::collections::BTreeSet;

fn check_ratio(name: &str, ratio: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&ratio) {
        return Err(Error::config(format!("{name}.ratio"), format!("must be in [0, 1], got {ratio}")));
    }
    Ok(())
}

/// Removes `floor(ratio · n)` nodes chosen uniformly, with their edges (at least one node stays).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeDrop {
    /// Fraction of nodes removed.
    pub ratio: f64,
}

impl Augment<Graph> for NodeDrop {
    fn apply(&self, g: Graph, rng: &mut dyn RngCore) -> Result<Graph> {
        check_ratio("node_drop", self.ratio)?;
        let n = g.num_nodes();
        let drop = ((n as f64 * self.ratio) as usize).min(n.saturating_sub(1));
        if drop == 0 {
            return Ok(g);
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        let mut keep = order[drop..].to_vec();
        keep.sort_unstable();
        g.induced(&keep)
    }
}

/// Removes `floor(ratio · m)` edges chosen uniformly and, with `add`, adds as many new edges
/// between uniformly chosen pairs of distinct, unconnected nodes (label 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EdgePerturb {
    /// Fraction of edges changed.
    pub ratio: f64,
    /// Also add edges (GraphCL's "edge perturbation"); removal only otherwise.
    pub add: bool,
}

impl Augment<Graph> for EdgePerturb {
    fn apply(&self, g: Graph, rng: &mut dyn RngCore) -> Result<Graph> {
        check_ratio("edge_perturb", self.ratio)?;
        let edges = g.edges();
        let k = (edges.len() as f64 * self.ratio) as usize;
        if k == 0 {
            return Ok(g);
        }
        let mut order: Vec<usize> = (0..edges.len()).collect();
        order.shuffle(rng);
        let mut kept: Vec<usize> = order[k..].to_vec();
        kept.sort_unstable();
        let mut new_edges: Vec<(usize, usize, u32)> = kept.iter().map(|&i| edges[i]).collect();
        let n = g.num_nodes();
        if self.add && n > 1 {
            let mut present: BTreeSet<(usize, usize)> = edges.iter().map(|&(u, v, _)| (u, v)).collect();
            let possible = n * (n - 1) / 2;
            let mut added = 0;
            let mut tries = 0;
            while added < k && present.len() < possible && tries < 100 * k {
                tries += 1;
                let (u, v) = (rng.random_range(0..n), rng.random_range(0..n));
                if u == v || !present.insert((u.min(v), u.max(v))) {
                    continue;
                }
                new_edges.push((u.min(v), u.max(v), 0));
                added += 1;
            }
        }
        let mut out = Graph::new(g.features.clone(), g.feature_dim, &new_edges, g.label)?;
        out.node_labels = g.node_labels;
        Ok(out)
    }
}

/// Replaces the feature rows of `floor(ratio · n)` nodes chosen uniformly with Gaussian noise
/// N(mean, std²) (GraphCL: N(0.5, 0.5²)); the structure is kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttrMask {
    /// Fraction of nodes masked.
    pub ratio: f64,
    /// Mean of the noise.
    pub mean: f32,
    /// Standard deviation of the noise (0: every masked value is `mean`).
    pub std: f32,
}

impl Augment<Graph> for AttrMask {
    fn apply(&self, mut g: Graph, rng: &mut dyn RngCore) -> Result<Graph> {
        check_ratio("attr_mask", self.ratio)?;
        let n = g.num_nodes();
        let k = (n as f64 * self.ratio) as usize;
        if k == 0 {
            return Ok(g);
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        let d = g.feature_dim;
        for &i in &order[..k] {
            for v in &mut g.features[i * d..(i + 1) * d] {
                // Box-Muller from two uniform draws.
                let u1: f32 = rng.random_range(f32::EPSILON..1.0);
                let u2: f32 = rng.random();
                *v = self.mean + self.std * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
            }
        }
        Ok(g)
    }
}

/// The subgraph induced by `floor(ratio · n) + 1` nodes grown from a uniform start node, each new
/// node drawn uniformly from the whole frontier (the neighbours of the nodes taken so far), as
/// far as the start's connected component allows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Subgraph {
    /// Fraction of nodes kept.
    pub ratio: f64,
}

impl Augment<Graph> for Subgraph {
    fn apply(&self, g: Graph, rng: &mut dyn RngCore) -> Result<Graph> {
        check_ratio("subgraph", self.ratio)?;
        let n = g.num_nodes();
        if n == 0 {
            return Ok(g);
        }
        let target = ((n as f64 * self.ratio) as usize + 1).min(n);
        let adj = g.adjacency();
        let start = rng.random_range(0..n);
        let mut taken = vec![false; n];
        taken[start] = true;
        let mut selected = vec![start];
        let mut frontier: BTreeSet<usize> = adj[start].iter().copied().collect();
        while selected.len() < target && !frontier.is_empty() {
            let pool: Vec<usize> = frontier.iter().copied().collect();
            let Some(&v) = pool.choose(rng) else { break };
            frontier.remove(&v);
            taken[v] = true;
            selected.push(v);
            frontier.extend(adj[v].iter().copied().filter(|&w| !taken[w]));
        }
        selected.sort_unstable();
        g.induced(&selected)
    }
}

/// GraphCL's augmentation sets: each view of each graph draws one member uniformly
/// ([`RandomChoice`]). `random2` (node dropping or subgraph) is the reference's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AugmentationSet {
    /// Node dropping or subgraph (GraphCL's `random2`).
    Random2,
    /// Node dropping, edge perturbation or subgraph (`random3`).
    Random3,
    /// Any of the four (`random4`).
    Random4,
    /// Node dropping only.
    NodeDrop,
    /// Edge perturbation only (as many edges added as removed).
    EdgePerturb,
    /// Subgraph only.
    Subgraph,
    /// Attribute masking only (N(0.5, 0.5²) rows, as the reference).
    AttrMask,
}

impl AugmentationSet {
    /// Every set, in the order above.
    pub const ALL: [AugmentationSet; 7] = [
        AugmentationSet::Random2,
        AugmentationSet::Random3,
        AugmentationSet::Random4,
        AugmentationSet::NodeDrop,
        AugmentationSet::EdgePerturb,
        AugmentationSet::Subgraph,
        AugmentationSet::AttrMask,
    ];

    /// Its name: `random2`, `node-drop`, ...
    pub fn name(self) -> &'static str {
        match self {
            AugmentationSet::Random2 => "random2",
            AugmentationSet::Random3 => "random3",
            AugmentationSet::Random4 => "random4",
            AugmentationSet::NodeDrop => "node-drop",
            AugmentationSet::EdgePerturb => "edge-perturb",
            AugmentationSet::Subgraph => "subgraph",
            AugmentationSet::AttrMask => "attr-mask",
        }
    }

    /// The augmentation, every member at `ratio`.
    pub fn build(self, ratio: f64) -> RandomChoice<Graph> {
        let drop: Box<dyn Augment<Graph>> = Box::new(NodeDrop { ratio });
        let perturb: Box<dyn Augment<Graph>> = Box::new(EdgePerturb { ratio, add: true });
        let sub: Box<dyn Augment<Graph>> = Box::new(Subgraph { ratio });
        let mask: Box<dyn Augment<Graph>> = Box::new(AttrMask { ratio, mean: 0.5, std: 0.5 });
        RandomChoice(match self {
            AugmentationSet::Random2 => vec![drop, sub],
            AugmentationSet::Random3 => vec![drop, perturb, sub],
            AugmentationSet::Random4 => vec![drop, perturb, sub, mask],
            AugmentationSet::NodeDrop => vec![drop],
            AugmentationSet::EdgePerturb => vec![perturb],
            AugmentationSet::Subgraph => vec![sub],
            AugmentationSet::AttrMask => vec![mask],
        })
    }
}

impl std::str::FromStr for AugmentationSet {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        AugmentationSet::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            let names: Vec<&str> = AugmentationSet::ALL.iter().map(|a| a.name()).collect();
            Error::config("augmentation", format!("`{s}` is not one of {}", names.join(", ")))
        })
    }
}
