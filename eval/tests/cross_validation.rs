//! Cross validation of the linear probe: perfect separation, chance-level labels, bad input.

#[test]
fn cross_validation_scores_every_fold() {
    use contrastive_eval::{CrossValidation, LinearProbe};
    // Two well separated classes, 3:1 in size: every fold is classified perfectly.
    let n = 80;
    let labels: Vec<u32> = (0..n).map(|i| u32::from(i % 4 == 0)).collect();
    let rows: Vec<f32> = labels
        .iter()
        .enumerate()
        .flat_map(|(i, &l)| [l as f32 * 4.0 + (i % 7) as f32 * 0.1, 1.0 - (i % 5) as f32 * 0.1])
        .collect();
    let x = candle_core::Tensor::from_vec(rows, (n, 2), &candle_core::Device::Cpu).unwrap();
    let cv = CrossValidation {
        folds: 10,
        seed: 3,
        probe: LinearProbe { c_grid: vec![1.0, 10.0], folds: 3, ..LinearProbe::default() },
    };
    let report = cv.evaluate(&x, &labels).unwrap();
    assert_eq!(report.fold_accuracy.len(), 10);
    assert_eq!((report.mean, report.std), (1.0, 0.0));
    assert_eq!(report.majority_rate, 0.75);
    // Labels that the features cannot explain: accuracy is not above chance by much, and the
    // folds disagree.
    let noise: Vec<u32> = (0..n).map(|i| u32::from((i * 37 + 11) % 97 < 48)).collect();
    let x = candle_core::Tensor::from_vec(
        (0..n).map(|i| ((i * 13) % 17) as f32).collect::<Vec<_>>(),
        (n, 1),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let report = cv.evaluate(&x, &noise).unwrap();
    assert!(report.mean < 0.8 && report.std > 0.0, "{report:?}");
    let bad = CrossValidation { folds: 1, ..cv.clone() };
    assert!(bad.evaluate(&x, &noise).unwrap_err().to_string().contains("cross_validation.folds"));
    assert!(cv
        .evaluate(&x, &noise[..10])
        .unwrap_err()
        .to_string()
        .contains("labels: expected shape (80,), one per row, found [10]"));
}
