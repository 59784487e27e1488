//! Plots: files are written in both formats and hold what they should; PCA finds known axes.

use candle_core::{Device, Tensor};
use contrastive_core::train::HistoryRecord;
use contrastive_eval::{pca_2d, plot_embeddings, plot_history};
use std::collections::HashMap;

fn history() -> Vec<HistoryRecord> {
    let mut records: Vec<HistoryRecord> = (1..=40)
        .map(|s| HistoryRecord {
            step: s,
            epoch: (s - 1) / 10,
            loss: Some(5.0 / (1.0 + 0.1 * s as f64)),
            lr: Some(1e-3),
            samples_per_s: Some(100.0),
            step_s: Some(0.01),
            method: Default::default(),
            elapsed_s: s as f64,
            eval: HashMap::new(),
        })
        .collect();
    for e in 0..4 {
        let mut eval = HashMap::new();
        eval.insert("knn".to_string(), 0.5 + 0.1 * e as f64);
        records.push(HistoryRecord {
            step: 10 * (e + 1),
            epoch: e,
            loss: None,
            lr: None,
            samples_per_s: None,
            step_s: None,
            method: Default::default(),
            elapsed_s: 0.0,
            eval,
        });
    }
    records
}

#[test]
fn history_and_embedding_plots_are_written_as_svg_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let files = plot_history(&history(), &dir.path().join("run/history")).unwrap();
    assert_eq!(files.len(), 2);
    let svg = std::fs::read_to_string(&files[0]).unwrap();
    assert!(svg.contains("training loss") && svg.contains("knn") && svg.contains("<polyline"), "svg lacks content");
    let png = std::fs::read(&files[1]).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(png.len() > 10_000, "png of {} bytes", png.len());

    let points: Vec<f32> = (0..60)
        .flat_map(|i| [(i % 3) as f32 * 4.0 + (i as f32 * 0.37).sin(), (i as f32 * 0.91).cos(), 0.1 * i as f32])
        .collect();
    let x = Tensor::from_vec(points, (60, 3), &Device::Cpu).unwrap();
    let labels: Vec<u32> = (0..60).map(|i| i % 3).collect();
    let files = plot_embeddings(&x, &labels, "embeddings", &dir.path().join("pca")).unwrap();
    let svg = std::fs::read_to_string(&files[0]).unwrap();
    assert!(svg.matches("<circle").count() >= 60);
    assert!(files[1].exists());
    let e = plot_embeddings(&x, &labels[..5], "x", &dir.path().join("bad")).unwrap_err().to_string();
    assert!(e.contains("labels: expected shape (60,), one per embedding, found [5]"), "{e}");
    assert!(plot_history(&[], &dir.path().join("empty")).unwrap_err().to_string().contains("no loss record"));
}

#[test]
fn pca_recovers_the_axes_of_stretched_data() {
    // Spread 10 along (1, 2, 0)/√5, 1 along (0, 0, 1), tiny along the third axis.
    let a = [1.0 / 5f64.sqrt(), 2.0 / 5f64.sqrt(), 0.0];
    let b = [0.0, 0.0, 1.0];
    let c = [2.0 / 5f64.sqrt(), -1.0 / 5f64.sqrt(), 0.0];
    let rows: Vec<f64> = (0..200)
        .flat_map(|i| {
            let (s, t, u) = (10.0 * (i as f64 * 0.731).sin(), (i as f64 * 1.37).cos(), 0.01 * (i as f64 * 2.1).sin());
            (0..3).map(move |d| s * a[d] + t * b[d] + u * c[d] + 7.0)
        })
        .collect();
    let x = Tensor::from_vec(rows.clone(), (200, 3), &Device::Cpu).unwrap();
    let p = pca_2d(&x).unwrap();
    // The projections equal the coordinates along a and b (up to sign), after centring.
    let mean: Vec<f64> = (0..3).map(|d| rows.iter().skip(d).step_by(3).sum::<f64>() / 200.0).collect();
    for (i, pi) in p.iter().enumerate() {
        let r: Vec<f64> = (0..3).map(|d| rows[i * 3 + d] - mean[d]).collect();
        let along = |v: &[f64; 3]| r.iter().zip(v).map(|(x, y)| x * y).sum::<f64>();
        assert!((pi[0].abs() - along(&a).abs()).abs() < 1e-3, "row {i}");
        assert!((pi[1].abs() - along(&b).abs()).abs() < 2e-2, "row {i}");
    }
}
