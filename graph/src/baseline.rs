//! The hand-made baseline a learned graph embedding must beat (GraphCL's reference compares
//! against it): node-label and degree statistics per graph.

use crate::data::Graph;
use candle_core::{Device, Tensor};
use contrastive_core::{Error, Result};

/// Per graph: its node-label counts (`classes` bins, labels past the last in the last), then
/// nodes, edges, mean, standard deviation, minimum and maximum degree, and the number of nodes
/// of degree 1, 2, 3, 4 and 5 or more: (graphs, classes + 11) f32.
pub fn label_degree_histogram(graphs: &[Graph], classes: usize) -> Result<Tensor> {
    if classes == 0 {
        return Err(Error::config("label_degree_histogram.classes", "must be at least 1"));
    }
    let mut rows = Vec::new();
    for g in graphs {
        let mut h = vec![0f32; classes];
        for &l in g.node_labels.as_deref().unwrap_or(&[]) {
            h[(l as usize).min(classes - 1)] += 1.0;
        }
        let deg: Vec<f32> = g.adjacency().iter().map(|a| a.len() as f32).collect();
        let n = deg.len().max(1) as f32;
        let mean = deg.iter().sum::<f32>() / n;
        let std = (deg.iter().map(|d| (d - mean).powi(2)).sum::<f32>() / n).sqrt();
        // A graph without nodes has degree statistics of 0, not the fold's starting value.
        let min = if deg.is_empty() { 0.0 } else { deg.iter().copied().fold(f32::MAX, f32::min) };
        let max = deg.iter().copied().fold(0.0, f32::max);
        h.extend([g.num_nodes() as f32, g.num_edges() as f32, mean, std, min, max]);
        h.extend((1..=4).map(|d| deg.iter().filter(|&&x| x == d as f32).count() as f32));
        h.push(deg.iter().filter(|&&x| x >= 5.0).count() as f32);
        rows.extend(h);
    }
    Ok(Tensor::from_vec(rows, (graphs.len(), classes + 11), &Device::Cpu)?)
}
