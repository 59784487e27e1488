//! The TU Dortmund graph-dataset format (Morris et al. 2020, "TUDataset", arXiv:2007.08663):
//! `DS_A.txt` (one edge `i, j` per line, 1-based node ids over the whole dataset),
//! `DS_graph_indicator.txt` (the graph of each node), `DS_graph_labels.txt`, and optionally
//! `DS_node_labels.txt`, `DS_node_attributes.txt`, `DS_edge_labels.txt` (one per line of A).

use super::graph::Graph;
use contrastive_core::{Error, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where node features come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeFeatures {
    /// The dataset's float node attributes.
    Attributes,
    /// One-hot node labels over this many classes.
    LabelOneHot(usize),
    /// One-hot node degree, degrees at or above the last class in the last class.
    DegreeOneHot(usize),
}

/// The largest node label taken as a one-hot class (the width of the features is the largest
/// label + 1).
pub const MAX_NODE_LABEL: u32 = 4095;

/// Reading options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TuOptions {
    /// Width of the one-hot node labels (default: the largest label in the dataset + 1). Set it
    /// when pretraining on one dataset and evaluating on another, so that the features agree.
    pub node_label_classes: Option<usize>,
}

/// A TU dataset.
#[derive(Clone, Debug)]
pub struct TuDataset {
    /// Name (the file prefix).
    pub name: String,
    /// The graphs, in file order.
    pub graphs: Vec<Graph>,
    /// How the node features were made.
    pub features: NodeFeatures,
    /// Self-loops in `_A.txt`, left out (GIN adds each node's own features itself).
    pub self_loops_dropped: usize,
}

impl TuDataset {
    /// Graph labels, mapped to 0..k in sorted order of the file's values.
    pub fn labels(&self) -> Vec<u32> {
        self.graphs.iter().map(|g| g.label).collect()
    }
}

/// Several TU datasets read with one node-feature width, so that a model pretrained on one reads
/// the others (pretrain on a large set, evaluate on a small one): one-hot node labels take the
/// width of the widest of them. Datasets whose features still differ in width (attributes of
/// different lengths, node labels against degrees) are an error naming both folders.
pub fn load_tu_aligned<const N: usize>(dirs: [&Path; N]) -> Result<[TuDataset; N]> {
    let read = |options: TuOptions| dirs.iter().map(|d| load_tu(d, options)).collect::<Result<Vec<_>>>();
    let mut sets = read(TuOptions::default())?;
    let label_widths = || {
        sets.iter().filter_map(|s| match s.features {
            NodeFeatures::LabelOneHot(c) => Some(c),
            _ => None,
        })
    };
    let widest = label_widths().max();
    if label_widths().any(|c| Some(c) != widest) {
        sets = read(TuOptions { node_label_classes: widest })?;
    }
    let width = |s: &TuDataset| s.graphs.first().map_or(0, |g| g.feature_dim);
    if let Some((i, s)) = sets.iter().enumerate().find(|(_, s)| width(s) != width(&sets[0])) {
        return Err(Error::shape(
            format!("node features of {}", dirs[i].display()),
            format!("(N, {}) as those of {}", width(&sets[0]), dirs[0].display()),
            &[s.graphs.first().map_or(0, |g| g.num_nodes()), width(s)],
        ));
    }
    // One dataset per folder, so the count always matches.
    sets.try_into().map_err(|v: Vec<TuDataset>| Error::shape("aligned TU datasets", format!("({N},)"), &[v.len()]))
}

/// Degrees above this share the last one-hot class when a dataset has neither labels nor
/// attributes.
const MAX_DEGREE_CLASS: usize = 10;

struct Lines {
    path: PathBuf,
    text: String,
}

impl Lines {
    fn read(path: PathBuf) -> Result<Self> {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Self { path, text })
    }

    fn optional(path: PathBuf) -> Result<Option<Self>> {
        if path.exists() {
            Self::read(path).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Non-empty lines with their 1-based numbers.
    fn rows(&self) -> impl Iterator<Item = (usize, &str)> {
        self.text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty())
    }

    fn err(&self, line: usize, msg: impl std::fmt::Display) -> Error {
        Error::in_file(&self.path, Some(line), msg.to_string())
    }

    fn integers(&self) -> Result<Vec<i64>> {
        self.rows()
            .map(|(n, l)| l.parse::<i64>().map_err(|_| self.err(n, format!("`{l}` is not an integer"))))
            .collect()
    }
}

/// Reads the TU dataset in `dir` (files `dir/<name>_*.txt`, `<name>` the folder's name).
pub fn load_tu(dir: &Path, options: TuOptions) -> Result<TuDataset> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::in_file(dir, None, "not a dataset folder"))?
        .to_string();
    let file = |part: &str| dir.join(format!("{name}_{part}.txt"));
    if !file("A").exists() {
        return Err(Error::in_file(
            dir,
            None,
            format!(
                "no {name}_A.txt; a TU dataset folder holds <name>_A.txt, <name>_graph_indicator.txt and \
                 <name>_graph_labels.txt"
            ),
        ));
    }
    let indicator_file = Lines::read(file("graph_indicator"))?;
    let indicator = indicator_file.integers()?;
    let nodes = indicator.len();
    if nodes == 0 {
        return Err(Error::in_file(&indicator_file.path, None, "no nodes"));
    }
    // Graph ids are 1..=G; nodes of one graph must be contiguous (the format's convention).
    let mut graph_of = Vec::with_capacity(nodes);
    let mut starts = vec![0usize];
    let mut expect = 1i64;
    for (i, (&g, (line, _))) in indicator.iter().zip(indicator_file.rows()).enumerate() {
        if g == expect + 1 && i > 0 {
            expect += 1;
            starts.push(i);
        } else if g != expect {
            return Err(indicator_file.err(
                line,
                format!("graph id {g} where {expect} or {} was expected: ids must run 1, 2, ... with each graph's nodes together", expect + 1),
            ));
        }
        graph_of.push((g - 1) as usize);
    }
    let graphs_n = starts.len();
    starts.push(nodes);

    let labels_file = Lines::read(file("graph_labels"))?;
    let raw_labels = labels_file.integers()?;
    if raw_labels.len() != graphs_n {
        return Err(Error::in_file(
            &labels_file.path,
            None,
            format!("{} labels for {graphs_n} graphs (from {})", raw_labels.len(), indicator_file.path.display()),
        ));
    }
    let classes: Vec<i64> = raw_labels.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
    let labels: Vec<u32> = raw_labels.iter().map(|l| classes.binary_search(l).unwrap_or(0) as u32).collect();

    // Edges: 1-based global ids, both directions listed; kept once per pair, within one graph.
    let a_file = Lines::read(file("A"))?;
    let edge_labels = match Lines::optional(file("edge_labels"))? {
        Some(f) => {
            let v = f.integers()?;
            Some((f, v))
        }
        None => None,
    };
    let mut per_graph: Vec<Vec<(usize, usize, u32)>> = vec![Vec::new(); graphs_n];
    let mut seen = BTreeSet::new();
    let mut self_loops = 0;
    for (k, (line, text)) in a_file.rows().enumerate() {
        let mut parts = text.split(',').map(str::trim);
        let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(a_file.err(line, format!("`{text}` is not `i, j`")));
        };
        let parse = |s: &str| -> Result<usize> {
            let v: i64 = s.parse().map_err(|_| a_file.err(line, format!("`{s}` is not a node id")))?;
            if v < 1 || v as usize > nodes {
                return Err(a_file.err(line, format!("node id {v} is outside 1..={nodes}")));
            }
            Ok(v as usize - 1)
        };
        let (u, v) = (parse(a)?, parse(b)?);
        if graph_of[u] != graph_of[v] {
            return Err(a_file.err(
                line,
                format!("edge {} - {} joins graph {} and graph {}", u + 1, v + 1, graph_of[u] + 1, graph_of[v] + 1),
            ));
        }
        let label = match &edge_labels {
            Some((f, v)) => {
                let l = *v.get(k).ok_or_else(|| {
                    Error::in_file(
                        &f.path,
                        None,
                        format!("fewer edge labels ({}) than edges in {}", v.len(), a_file.path.display()),
                    )
                })?;
                u32::try_from(l).map_err(|_| {
                    let line = f.rows().nth(k).map_or(0, |(line, _)| line);
                    f.err(line, format!("edge label {l} is negative"))
                })?
            }
            None => 0,
        };
        if u == v {
            self_loops += 1;
            continue;
        }
        if seen.insert((u.min(v), u.max(v))) {
            let g = graph_of[u];
            per_graph[g].push((u.min(v) - starts[g], u.max(v) - starts[g], label));
        }
    }
    if let Some((f, v)) = &edge_labels {
        let edges = a_file.rows().count();
        if v.len() != edges {
            return Err(Error::in_file(&f.path, None, format!("{} edge labels for {edges} edges", v.len())));
        }
    }

    // Node features: attributes, else one-hot labels, else one-hot degrees.
    let node_labels = match Lines::optional(file("node_labels"))? {
        Some(f) => {
            let v = f.integers()?;
            if v.len() != nodes {
                return Err(Error::in_file(&f.path, None, format!("{} node labels for {nodes} nodes", v.len())));
            }
            if let Some((line, _)) = v.iter().zip(f.rows()).find(|(l, _)| **l < 0).map(|(_, r)| r) {
                return Err(f.err(line, "negative node label"));
            }
            // The one-hot width follows the largest label: an id far beyond any category set
            // would allocate gigabytes of features, so it is refused before anything is built.
            if let Some((l, (line, _))) = v.iter().zip(f.rows()).find(|(l, _)| **l > MAX_NODE_LABEL as i64) {
                return Err(f.err(
                    line,
                    format!(
                        "node label {l}: node labels are one-hot category ids, at most {MAX_NODE_LABEL}; \
                         renumber them 0, 1, 2, ... or give the nodes attributes (_node_attributes.txt)"
                    ),
                ));
            }
            Some(v.into_iter().map(|l| l as u32).collect::<Vec<u32>>())
        }
        None => None,
    };
    let attributes = match Lines::optional(file("node_attributes"))? {
        Some(f) => {
            let mut rows = Vec::with_capacity(nodes);
            for (line, text) in f.rows() {
                let row: Vec<f32> = text
                    .split(',')
                    .map(|s| {
                        s.trim().parse::<f32>().map_err(|_| f.err(line, format!("`{}` is not a number", s.trim())))
                    })
                    .collect::<Result<_>>()?;
                if let Some(first) = rows.first().map(|r: &Vec<f32>| r.len()) {
                    if row.len() != first {
                        return Err(f.err(line, format!("{} attributes, the first line has {first}", row.len())));
                    }
                }
                rows.push(row);
            }
            if rows.len() != nodes {
                return Err(Error::in_file(&f.path, None, format!("{} attribute rows for {nodes} nodes", rows.len())));
            }
            Some(rows)
        }
        None => None,
    };
    let features = match (&attributes, &node_labels) {
        (Some(_), _) => NodeFeatures::Attributes,
        (None, Some(l)) => {
            let found = l.iter().copied().max().unwrap_or(0) as usize + 1;
            let classes = options.node_label_classes.unwrap_or(found);
            if classes > MAX_NODE_LABEL as usize + 1 {
                return Err(Error::config(
                    "node_label_classes",
                    format!("is {classes}, at most {} one-hot classes", MAX_NODE_LABEL + 1),
                ));
            }
            if classes < found {
                return Err(Error::config(
                    "node_label_classes",
                    format!("is {classes}, but {name} has node label {}", found - 1),
                ));
            }
            NodeFeatures::LabelOneHot(classes)
        }
        (None, None) => NodeFeatures::DegreeOneHot(MAX_DEGREE_CLASS + 1),
    };

    let mut graphs = Vec::with_capacity(graphs_n);
    for g in 0..graphs_n {
        let (start, end) = (starts[g], starts[g + 1]);
        let n = end - start;
        let (dim, feats) = match features {
            NodeFeatures::Attributes => {
                let rows = attributes.as_ref().map(|r| &r[start..end]).unwrap_or(&[]);
                let d = rows.first().map_or(1, Vec::len);
                (d, rows.iter().flatten().copied().collect::<Vec<f32>>())
            }
            NodeFeatures::LabelOneHot(c) => {
                let mut f = vec![0f32; n * c];
                if let Some(l) = &node_labels {
                    for (i, &lab) in l[start..end].iter().enumerate() {
                        f[i * c + lab as usize] = 1.0;
                    }
                }
                (c, f)
            }
            NodeFeatures::DegreeOneHot(c) => {
                let mut deg = vec![0usize; n];
                for &(u, v, _) in &per_graph[g] {
                    deg[u] += 1;
                    deg[v] += 1;
                }
                let mut f = vec![0f32; n * c];
                for (i, d) in deg.into_iter().enumerate() {
                    f[i * c + d.min(c - 1)] = 1.0;
                }
                (c, f)
            }
        };
        let mut graph = Graph::new(feats, dim, &per_graph[g], labels[g])?;
        graph.node_labels = node_labels.as_ref().map(|l| l[start..end].to_vec());
        graphs.push(graph);
    }
    if self_loops > 0 {
        tracing::warn!(dataset = %name, self_loops, "self-loops in the edge list were left out");
    }
    Ok(TuDataset { name, graphs, features, self_loops_dropped: self_loops })
}
