//! Invariants and bad input.

use candle_core::{DType, Device, Tensor};
use contrastive_eval::*;

#[test]
fn invariants() {
    let a = [0u32, 0, 1, 1, 2, 2, 2];
    // A labelling against itself, or against a renaming of itself, agrees perfectly.
    assert_eq!(ari(&a, &a).unwrap(), 1.0);
    assert_eq!(ari(&a, &[7, 7, 3, 3, 9, 9, 9]).unwrap(), 1.0);
    assert!((nmi(&a, &[7, 7, 3, 3, 9, 9, 9]).unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(nmi(&[1, 1, 1], &[4, 4, 4]).unwrap(), 1.0);
    // Correlation is symmetric, invariant to monotone maps (Spearman) and affine maps (Pearson).
    let x = [0.3, 1.2, -0.7, 2.2, 0.0];
    let y = [1.0, 0.5, -2.0, 3.3, 0.1];
    assert!((pearson(&x, &y).unwrap() - pearson(&y, &x).unwrap()).abs() < 1e-15);
    let affine: Vec<f64> = x.iter().map(|v| 3.0 * v - 1.0).collect();
    assert!((pearson(&affine, &y).unwrap() - pearson(&x, &y).unwrap()).abs() < 1e-14);
    let cubed: Vec<f64> = x.iter().map(|v: &f64| v.powi(3)).collect();
    assert_eq!(spearman(&cubed, &y).unwrap(), spearman(&x, &y).unwrap());
    assert_eq!(average_ranks(&[2.0, 1.0, 2.0, 3.0]), vec![2.5, 1.0, 2.5, 4.0]);
    // Identical views are perfectly aligned; one repeated point is as non-uniform as it gets (-4t).
    let z = Tensor::new(&[[1f32, 2.], [3., -1.], [0.5, 0.5]], &Device::Cpu).unwrap();
    assert!(alignment(&z, &z, 2.0).unwrap().abs() < 1e-12);
    let same = Tensor::ones((5, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(uniformity(&same, 2.0).unwrap().abs() < 1e-12);
    let opposite = Tensor::new(&[[1f32, 0.], [-1., 0.]], &Device::Cpu).unwrap();
    assert!((uniformity(&opposite, 2.0).unwrap() - -8.0).abs() < 1e-12);
}

#[test]
fn knn_finds_exact_copies_and_top5_is_at_least_top1() {
    let train = Tensor::new(
        &[[1f32, 0., 0.], [0., 1., 0.], [0., 0., 1.], [1., 1., 0.], [0., 1., 1.], [1., 0., 1.]],
        &Device::Cpu,
    )
    .unwrap();
    let labels = [0u32, 1, 2, 3, 4, 5];
    for vote in [Vote::Majority, Vote::Weighted { temperature: 0.1 }] {
        let knn = Knn { k: 1, vote, ..Default::default() };
        let acc = knn.accuracy(&train, &labels, &train, &labels).unwrap();
        assert_eq!((acc.top1, acc.top5), (1.0, 1.0));
        let knn = Knn { k: 3, vote, ..Default::default() };
        let acc = knn.accuracy(&train, &labels, &train, &labels).unwrap();
        assert!(acc.top5 >= acc.top1);
    }
}

fn err<T: std::fmt::Debug>(r: contrastive_core::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn bad_input_is_named() {
    let dev = Device::Cpu;
    let train = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.]], &dev).unwrap();
    let knn = Knn { k: 2, vote: Vote::Majority, ..Default::default() };
    assert!(err(knn.predict(&train, &[0, 1], &train)).contains("2 labels for 3 embeddings"));
    assert!(err(Knn { k: 4, ..knn }.predict(&train, &[0, 1, 0], &train)).contains("k = 4"));
    let nan = Tensor::new(&[[1f32, f32::NAN]], &dev).unwrap();
    assert!(err(knn.predict(&train, &[0, 1, 0], &nan)).contains("row 0 has a non-finite value"));
    let empty = Tensor::zeros((0, 2), DType::F32, &dev).unwrap();
    assert!(err(knn.predict(&train, &[0, 1, 0], &empty)).contains("empty embeddings"));
    let wide = Tensor::zeros((1, 3), DType::F32, &dev).unwrap();
    assert!(err(knn.predict(&train, &[0, 1, 0], &wide)).contains("width"));
    assert!(err(knn.accuracy(&train, &[0, 1, 0], &train, &[0])).contains("1 labels for 3"));
    assert!(err(pearson(&[1.0, 2.0], &[1.0])).contains("lengths differ"));
    assert!(err(pearson(&[1.0, 1.0], &[1.0, 2.0])).contains("constant"));
    assert!(err(spearman(&[1.0, 1.0], &[1.0, 2.0])).contains("spearman"));
    assert!(err(pearson(&[1.0, f64::NAN], &[1.0, 2.0])).contains("index 1"));
    assert!(err(pearson(&[1.0], &[1.0])).contains("at least 2"));
    assert!(err(ari(&[0, 1], &[0])).contains("different lengths"));
    assert!(err(nmi(&[], &[])).contains("empty"));
    assert!(err(alignment(&train, &wide, 2.0)).contains("shapes"));
    assert!(err(uniformity(&nan, 2.0)).contains("non-finite"));
}
