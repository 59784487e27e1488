//! Golden values from scikit-learn, scipy, lightly and Wang and Isola's code, computed by
//! `eval/tests/golden/eval.py`; the producing lines are quoted above each test.

use candle_core::{Device, Tensor};
use contrastive_eval::*;

/// The closed-form data of eval.py.
fn data() -> (Tensor, Vec<u32>, Tensor, Vec<u32>) {
    let onehot = |i: usize, d: usize| if i % 4 == d { 0.5 } else { 0.0 };
    let train: Vec<f64> = (0..40)
        .flat_map(|i| (0..6).map(move |d| (0.3 * (i * (d + 1)) as f64 + 0.2 * (i % 4) as f64).sin() + onehot(i, d)))
        .collect();
    let test: Vec<f64> =
        (0..12).flat_map(|i| (0..6).map(move |d| (0.7 * i as f64 + 0.4 * d as f64).cos() + onehot(i, d))).collect();
    (
        Tensor::from_vec(train, (40, 6), &Device::Cpu).unwrap(),
        (0..40).map(|i| i % 4).collect(),
        Tensor::from_vec(test, (12, 6), &Device::Cpu).unwrap(),
        (0..12).map(|i| i % 4).collect(),
    )
}

// clf = KNeighborsClassifier(n_neighbors=5, metric="cosine", algorithm="brute").fit(train, train_labels)
// print("majority_k5_pred", clf.predict(test).tolist(), ...)  -> [0, 0, 0, 3, 0, 3, 2, 1, 1, 2, 0, 0], acc 1/3
#[test]
fn majority_knn_matches_scikit_learn() {
    let (train, tl, test, sl) = data();
    let knn = Knn { k: 5, vote: Vote::Majority, ..Default::default() };
    assert_eq!(knn.predict(&train, &tl, &test).unwrap(), vec![0, 0, 0, 3, 0, 3, 2, 1, 1, 2, 0, 0]);
    assert!((knn.accuracy(&train, &tl, &test, &sl).unwrap().top1 - 1.0 / 3.0).abs() < 1e-12);
}

// scores = knn_predict(F.normalize(test), F.normalize(train).t(), train_labels, num_classes=4, knn_k=10, knn_t=0.1)
// print("weighted_k10_t01_top1", scores[:, 0].tolist())  -> [3, 0, 0, 3, 3, 2, 2, 1, 2, 2, 0, 0], acc 1/6
#[test]
fn weighted_knn_matches_lightly() {
    let (train, tl, test, sl) = data();
    let knn = Knn { k: 10, vote: Vote::Weighted { temperature: 0.1 }, ..Default::default() };
    assert_eq!(knn.predict(&train, &tl, &test).unwrap(), vec![3, 0, 0, 3, 3, 2, 2, 1, 2, 2, 0, 0]);
    let acc = knn.accuracy(&train, &tl, &test, &sl).unwrap();
    assert!((acc.top1 - 1.0 / 6.0).abs() < 1e-12);
    assert_eq!(acc.top5, 1.0); // 4 classes: the true one is always in the top 5
}

// x = [0.1, 0.4, 0.4, 0.9, 1.3, 1.3, 1.3, 2.0, 0.05, 0.7]; y = [1.0, 0.8, 1.1, 2.5, 2.4, 3.0, 2.4, 4.1, 0.2, 0.9]
// print("pearson", repr(pearsonr(x, y)[0]), "spearman", repr(spearmanr(x, y)[0]))
#[test]
fn correlations_match_scipy() {
    let x = [0.1, 0.4, 0.4, 0.9, 1.3, 1.3, 1.3, 2.0, 0.05, 0.7];
    let y = [1.0, 0.8, 1.1, 2.5, 2.4, 3.0, 2.4, 4.1, 0.2, 0.9];
    assert!((pearson(&x, &y).unwrap() - 0.9460353624598655).abs() < 1e-14);
    assert!((spearman(&x, &y).unwrap() - 0.8642633970683911).abs() < 1e-14);
}

// a = [0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 0]; b = [1, 1, 0, 0, 2, 2, 2, 3, 3, 3, 1, 1]
// print("nmi", repr(normalized_mutual_info_score(a, b)), "ari", repr(adjusted_rand_score(a, b)))
#[test]
fn nmi_and_ari_match_scikit_learn() {
    let a = [0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 0];
    let b = [1, 1, 0, 0, 2, 2, 2, 3, 3, 3, 1, 1];
    assert!((nmi(&a, &b).unwrap() - 0.627606495572495).abs() < 1e-14);
    assert!((ari(&a, &b).unwrap() - 0.32946298984034833).abs() < 1e-14);
}

// z1, z2 = F.normalize(train[:12]), F.normalize(test)
// print("alignment_a2", repr((z1 - z2).norm(p=2, dim=1).pow(2).mean().item()))
// print("uniformity_t2", repr(torch.pdist(F.normalize(train), p=2).pow(2).mul(-2).exp().mean().log().item()))
#[test]
fn alignment_and_uniformity_match_wang_and_isola() {
    let (train, _, test, _) = data();
    let head = train.narrow(0, 0, 12).unwrap();
    assert!((alignment(&head, &test, 2.0).unwrap() - 1.7478388057407983).abs() < 1e-12);
    assert!((uniformity(&train, 2.0).unwrap() - -2.8422055489823657).abs() < 1e-12);
}

// scaler = StandardScaler().fit(train)
// lr = LogisticRegression(C=0.5, tol=1e-12, max_iter=100000).fit(scaler.transform(train), train_labels)
// print("logreg_c05_coef00_13", repr(lr.coef_[0, 0]), repr(lr.coef_[1, 3]), "intercept2", repr(lr.intercept_[2]))
//   -> 0.36399833615141086 -0.0018851252941822847 intercept2 -0.1582891593971645
// print("logreg_c05_pred", lr.predict(scaler.transform(test)).tolist(), "train_acc", lr.score(...))
//   -> [1, 0, 0, 3, 3, 3, 2, 2, 2, 1, 0, 0] train_acc 0.625
#[test]
fn logistic_regression_matches_scikit_learn() {
    let (train, tl, test, _) = data();
    let model = LogisticRegression::fit(&train, &tl, 0.5, true).unwrap();
    assert!(model.converged);
    let (w, b) = model.coefficients();
    assert!((w[0] - 0.36399833615141086).abs() < 1e-6, "{}", w[0]);
    assert!((w[6 + 3] - -0.0018851252941822847).abs() < 1e-6, "{}", w[9]);
    assert!((b[2] - -0.1582891593971645).abs() < 1e-6, "{}", b[2]);
    assert_eq!(model.predict(&test).unwrap(), vec![1, 0, 0, 3, 3, 3, 2, 2, 2, 1, 0, 0]);
    assert_eq!(model.accuracy(&train, &tl).unwrap(), 0.625);
}

// centres = [[0, 0, 0], [5, 5, 0], [0, 5, 5]]
// blobs = np.array([[centres[i % 3][d] + 0.8 * math.sin(1.7 * i + 2.3 * d) for d in range(3)] for i in range(30)])
// km = KMeans(n_clusters=3, n_init=10, random_state=0).fit(blobs)
// print("kmeans_inertia", repr(km.inertia_), "labels", km.labels_.tolist())
//   -> 28.836870846262865, labels [1, 0, 2] repeated
#[test]
fn kmeans_finds_scikit_learns_optimum() {
    let centres = [[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [0.0, 5.0, 5.0]];
    let x: Vec<f64> = (0..30)
        .flat_map(|i| (0..3).map(move |d| centres[i % 3][d] + 0.8 * (1.7 * i as f64 + 2.3 * d as f64).sin()))
        .collect();
    let x = Tensor::from_vec(x, (30, 3), &Device::Cpu).unwrap();
    let fit = KMeans::new(3).fit(&x).unwrap();
    assert!((fit.inertia - 28.836870846262865).abs() < 1e-9, "{}", fit.inertia);
    let sklearn: Vec<u32> = (0..30).map(|i| [1, 0, 2][i % 3]).collect();
    assert_eq!(ari(&fit.labels, &sklearn).unwrap(), 1.0);
    assert_eq!(nmi(&fit.labels, &sklearn).unwrap(), 1.0);
}

// Test rows query the train rows, relevant = same label; ranks by cosine with ties to the lower
// index, then the textbook definitions (eval.py, "Retrieval"):
//   recall@k = rel[:k].sum() / rel.sum(); rr = 1 / hits[0]; ap = mean(arange(1, len(hits) + 1) / hits)
// -> recall {1: 0.016666666666666666, 5: 0.11666666666666668, 10: 0.29999999999999993},
//    mrr 0.38425925925925924, map 0.345433281577966
#[test]
fn retrieval_metrics_match_the_numpy_reference() {
    let (train, tl, test, sl) = data();
    let relevant: Vec<Vec<u32>> = sl.iter().map(|&l| (0..40u32).filter(|&i| tl[i as usize] == l).collect()).collect();
    let r = retrieval_metrics(&test, &train, &relevant, &[1, 5, 10]).unwrap();
    let want = [(1, 0.016666666666666666), (5, 0.11666666666666668), (10, 0.29999999999999993)];
    for ((k, got), (wk, w)) in r.recall_at.iter().zip(want) {
        assert_eq!(*k, wk);
        assert!((got - w).abs() < 1e-12, "recall@{k}: {got}");
    }
    assert!((r.mrr - 0.38425925925925924).abs() < 1e-12, "{}", r.mrr);
    assert!((r.map - 0.345433281577966).abs() < 1e-12, "{}", r.map);
}
