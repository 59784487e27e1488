//! The TU reader on the shipped-style data and on broken files.

use contrastive_graph::{load_tu, NodeFeatures, TuOptions};
use std::path::{Path, PathBuf};

/// Writes a TU dataset `NAME` with the given files into a temporary folder.
fn dataset(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("TOY");
    std::fs::create_dir(&dir).unwrap();
    for (part, text) in files {
        std::fs::write(dir.join(format!("TOY_{part}.txt")), text).unwrap();
    }
    (root, dir)
}

// Two graphs: a triangle (nodes 1-3, labels 0 1 2) and a path 4-5 (labels 2 2); each edge listed
// both ways, as the format does; graph labels -1 and 1.
const A: &str = "1, 2\n2, 1\n2, 3\n3, 2\n1, 3\n3, 1\n4, 5\n5, 4\n";
const INDICATOR: &str = "1\n1\n1\n2\n2\n";
const LABELS: &str = "-1\n1\n";
const NODE_LABELS: &str = "0\n1\n2\n2\n2\n";

#[test]
fn reads_graphs_features_and_labels() {
    let (_root, dir) = dataset(&[
        ("A", A),
        ("graph_indicator", INDICATOR),
        ("graph_labels", LABELS),
        ("node_labels", NODE_LABELS),
        ("edge_labels", "0\n0\n1\n1\n3\n3\n2\n2\n"),
    ]);
    let ds = load_tu(&dir, TuOptions::default()).unwrap();
    assert_eq!(ds.name, "TOY");
    assert_eq!(ds.graphs.len(), 2);
    assert_eq!(ds.labels(), [0, 1]);
    assert_eq!(ds.features, NodeFeatures::LabelOneHot(3));
    let (t, p) = (&ds.graphs[0], &ds.graphs[1]);
    assert_eq!((t.num_nodes(), t.num_edges(), p.num_nodes(), p.num_edges()), (3, 3, 2, 1));
    assert_eq!(t.edges(), [(0, 1, 0), (1, 2, 1), (0, 2, 3)]);
    assert_eq!(p.edges(), [(0, 1, 2)]);
    assert_eq!(t.feature_row(1), [0.0, 1.0, 0.0]);
    assert_eq!(p.node_labels.as_deref(), Some(&[2u32, 2][..]));
    // A wider one-hot for agreement with another dataset; narrower than the data is an error.
    let wide = load_tu(&dir, TuOptions { node_label_classes: Some(33) }).unwrap();
    assert_eq!(wide.graphs[0].feature_dim, 33);
    let err = load_tu(&dir, TuOptions { node_label_classes: Some(2) }).unwrap_err().to_string();
    assert!(err.contains("node_label_classes") && err.contains("node label 2"), "{err}");
}

#[test]
fn attributes_win_and_degrees_stand_in_for_missing_features() {
    let (_root, dir) = dataset(&[
        ("A", A),
        ("graph_indicator", INDICATOR),
        ("graph_labels", LABELS),
        ("node_attributes", "0.5, 1\n1, 2\n1.5, 3\n2, 4\n2.5, 5\n"),
    ]);
    let ds = load_tu(&dir, TuOptions::default()).unwrap();
    assert_eq!(ds.features, NodeFeatures::Attributes);
    assert_eq!(ds.graphs[1].feature_row(0), [2.0, 4.0]);
    let (_root2, dir2) = dataset(&[("A", A), ("graph_indicator", INDICATOR), ("graph_labels", LABELS)]);
    let ds = load_tu(&dir2, TuOptions::default()).unwrap();
    assert!(matches!(ds.features, NodeFeatures::DegreeOneHot(_)));
    // Triangle nodes have degree 2, path nodes degree 1.
    assert_eq!(ds.graphs[0].feature_row(0)[2], 1.0);
    assert_eq!(ds.graphs[1].feature_row(0)[1], 1.0);
}

fn error_of(files: &[(&str, &str)]) -> String {
    let (_root, dir) = dataset(files);
    load_tu(&dir, TuOptions::default()).unwrap_err().to_string()
}

#[test]
fn broken_files_are_named_with_their_line() {
    let base = |a: &'static str| vec![("A", a), ("graph_indicator", INDICATOR), ("graph_labels", LABELS)];
    let err = error_of(&base("1, 2\n2, 9\n"));
    assert!(err.contains("TOY_A.txt:2") && err.contains("node id 9 is outside 1..=5"), "{err}");
    let err = error_of(&base("1, 2\n3, 4\n"));
    assert!(err.contains("TOY_A.txt:2") && err.contains("joins graph 1 and graph 2"), "{err}");
    let err = error_of(&base("1, 2\n2; 3\n"));
    assert!(err.contains("TOY_A.txt:2") && err.contains("is not `i, j`"), "{err}");
    let err = error_of(&[("A", A), ("graph_indicator", "1\n1\n1\nx\n2\n"), ("graph_labels", LABELS)]);
    assert!(err.contains("TOY_graph_indicator.txt:4") && err.contains("not an integer"), "{err}");
    let err = error_of(&[("A", A), ("graph_indicator", "1\n1\n3\n3\n3\n"), ("graph_labels", LABELS)]);
    assert!(err.contains("TOY_graph_indicator.txt:3") && err.contains("graph id 3"), "{err}");
    let err = error_of(&[("A", A), ("graph_indicator", INDICATOR), ("graph_labels", "1\n")]);
    assert!(err.contains("TOY_graph_labels.txt") && err.contains("1 labels for 2 graphs"), "{err}");
    let err =
        error_of(&[("A", A), ("graph_indicator", INDICATOR), ("graph_labels", LABELS), ("node_labels", "0\n1\n")]);
    assert!(err.contains("TOY_node_labels.txt") && err.contains("2 node labels for 5 nodes"), "{err}");
    let err = error_of(&[
        ("A", A),
        ("graph_indicator", INDICATOR),
        ("graph_labels", LABELS),
        ("node_attributes", "1, 2\n1\n1, 2\n1, 2\n1, 2\n"),
    ]);
    assert!(err.contains("TOY_node_attributes.txt:2") && err.contains("1 attributes"), "{err}");
    let root = tempfile::tempdir().unwrap();
    let err = load_tu(&root.path().join("NOPE"), TuOptions::default()).unwrap_err().to_string();
    assert!(err.contains("NOPE_A.txt"), "{err}");
}

#[test]
fn node_labels_beyond_any_category_set_are_refused_with_their_line() {
    // One-hot features follow the largest label: 4,000,000,000 would be a 400 GB allocation.
    for label in ["4000000000", "200000", "4096", "99999999999999999999"] {
        let labels = format!("0\n1\n{label}\n2\n2\n");
        let err =
            error_of(&[("A", A), ("graph_indicator", INDICATOR), ("graph_labels", LABELS), ("node_labels", &labels)]);
        assert!(err.contains("TOY_node_labels.txt:3"), "{label}: {err}");
        assert!(err.contains(label) || err.contains("not an integer"), "{label}: {err}");
    }
    // The largest allowed label still loads, 4096 classes wide.
    let (_root, dir) = dataset(&[
        ("A", A),
        ("graph_indicator", INDICATOR),
        ("graph_labels", LABELS),
        ("node_labels", "0\n1\n4095\n2\n2\n"),
    ]);
    let data = load_tu(&dir, TuOptions::default()).unwrap();
    assert_eq!(data.features, NodeFeatures::LabelOneHot(contrastive_graph::MAX_NODE_LABEL as usize + 1));
    let err = load_tu(&dir, TuOptions { node_label_classes: Some(1 << 40) }).unwrap_err().to_string();
    assert!(err.contains("node_label_classes") && err.contains("at most 4096"), "{err}");
}

#[test]
fn the_shipped_bzr163_loads() {
    // graph/data/BZR163: RDKit's bzr.sdf as a TU dataset (BSD-3, see its README.txt).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/BZR163");
    let bzr = load_tu(&dir, TuOptions { node_label_classes: Some(33) }).unwrap();
    assert_eq!(bzr.graphs.len(), 163);
    // 121 active (label 1) and 42 inactive, as its README states.
    assert_eq!(bzr.labels().iter().filter(|&&l| l == 1).count(), 121);
    assert!(bzr.graphs.iter().all(|g| g.feature_dim == 33 && g.num_nodes() > 0));
    assert_eq!(bzr.self_loops_dropped, 0);
}

#[test]
fn smiles_of_a_tu_dataset_are_read_in_graph_order_and_bad_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let write = |text: &str| {
        let path = dir.path().join("M_graph_sources.tsv");
        std::fs::write(&path, text).unwrap();
        path
    };
    let good = write("graph_id\tsource\tsmiles\n1\tchembl\tCCO\n2\tchembl\t c1ccccc1O \n");
    assert_eq!(contrastive_graph::read_tu_smiles(&good, 2).unwrap(), ["CCO", "c1ccccc1O"]);
    let cases = [
        ("graph_id\tsmiles\n2\tCCO\n", 1, "M_graph_sources.tsv:2: field graph_id: \"2\", expected 1"),
        ("graph_id\tsmiles\n1\tCCO\n2\t \n", 2, "M_graph_sources.tsv:3: field smiles: empty"),
        ("graph_id\tsmiles\n1 CCO\n", 1, "M_graph_sources.tsv:2: expected tab-separated"),
        ("graph_id\tsmiles\n1\tCCO\n", 3, "1 SMILES for 3 graphs"),
    ];
    for (text, graphs, want) in cases {
        let err = contrastive_graph::read_tu_smiles(&write(text), graphs).unwrap_err();
        assert!(err.to_string().contains(want), "{text:?}: {err}");
        // The place is in fields, not only in the words.
        let contrastive_core::Error::File { path, line, .. } = &err else { panic!("{err:?}") };
        assert!(path.ends_with("M_graph_sources.tsv") && line.is_some() == (graphs != 3), "{err:?}");
    }
}

#[test]
fn the_label_and_degree_baseline_has_its_closed_form() {
    use contrastive_graph::{label_degree_histogram, Graph};
    // A path 0 - 1 - 2 with node labels 0, 1, 7 (7 falls in the last of 2 bins): degrees 1, 2, 1.
    let mut g = Graph::new(vec![0.0; 3], 1, &[(0, 1, 0), (1, 2, 0)], 0).unwrap();
    g.node_labels = Some(vec![0, 1, 7]);
    let row = label_degree_histogram(&[g], 2).unwrap().to_vec2::<f32>().unwrap().remove(0);
    // Mean degree 4/3, population std sqrt(((1/3)^2 * 2 + (2/3)^2) / 3) = sqrt(2) / 3.
    let want = [1.0, 2.0, 3.0, 2.0, 4.0 / 3.0, 2f32.sqrt() / 3.0, 1.0, 2.0, 2.0, 1.0, 0.0, 0.0, 0.0];
    assert_eq!(row.len(), want.len());
    assert!(row.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{row:?}");
    assert!(label_degree_histogram(&[], 0).is_err());
    // A graph without nodes: every statistic 0.
    let empty = Graph::new(vec![], 1, &[], 0).unwrap();
    let row = label_degree_histogram(&[empty], 2).unwrap().to_vec2::<f32>().unwrap().remove(0);
    assert!(row.iter().all(|&v| v == 0.0), "{row:?}");
}

#[test]
fn datasets_read_together_share_one_node_feature_width() {
    // TOY's node labels run to 2 (width 3); the shipped BZR163's to 6 (width 7).
    let (_root, toy) =
        dataset(&[("A", A), ("graph_indicator", INDICATOR), ("graph_labels", LABELS), ("node_labels", NODE_LABELS)]);
    let bzr = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/BZR163");
    let [t, b] = contrastive_graph::load_tu_aligned([&toy, &bzr]).unwrap();
    assert_eq!((t.features, b.features), (NodeFeatures::LabelOneHot(7), NodeFeatures::LabelOneHot(7)));
    assert_eq!((t.graphs[0].feature_dim, b.graphs[0].feature_dim), (7, 7));
    assert_eq!(t.graphs[0].feature_row(1)[..3], [0.0, 1.0, 0.0]);
    // Alone, each keeps its own width.
    let [alone] = contrastive_graph::load_tu_aligned([&toy]).unwrap();
    assert_eq!(alone.graphs[0].feature_dim, 3);
    // Attributes (width 2) cannot be aligned with one-hot labels: both folders are named.
    let (_r2, attributed) = dataset(&[
        ("A", A),
        ("graph_indicator", INDICATOR),
        ("graph_labels", LABELS),
        ("node_attributes", "0.5, 1\n1, 2\n1.5, 3\n2, 4\n2.5, 5\n"),
    ]);
    let e = contrastive_graph::load_tu_aligned([&toy, &attributed]).unwrap_err();
    assert!(
        matches!(&e, contrastive_core::Error::Shape { expected, found, .. } if expected.starts_with("(N, 3) as") && found == &[3, 2]),
        "{e}"
    );
}
