//! Pair masks, hard-negative mining and the memory queue.

use candle_core::{DType, Device, Tensor};
use contrastive_core::sampling::{HardNegativeMiner, MemoryQueue, PairMask, SameLabel};

fn flags(mask: &PairMask) -> Vec<Vec<char>> {
    (0..mask.rows())
        .map(|i| {
            (0..mask.cols())
                .map(|j| match (mask.is_positive(i, j), mask.is_negative(i, j)) {
                    (true, false) => 'P',
                    (false, true) => 'n',
                    (false, false) => '.',
                    (true, true) => panic!("({i}, {j}) is both"),
                })
                .collect()
        })
        .collect()
}

fn grid(rows: &[&str]) -> Vec<Vec<char>> {
    rows.iter().map(|r| r.chars().collect()).collect()
}

#[test]
fn in_batch_layouts() {
    assert_eq!(flags(&PairMask::cross_view(3)), grid(&["Pnn", "nPn", "nnP"]));
    assert_eq!(flags(&PairMask::joint(2)), grid(&[".nPn", "n.nP", "Pn.n", "nPn."]));
    let joint = PairMask::joint(4);
    assert_eq!(joint.positive_counts(), vec![1; 8]);
    assert_eq!(joint.negative_counts(), vec![6; 8]); // 2N - 2
    assert_eq!(PairMask::cross_view(4).negative_counts(), vec![3; 4]); // N - 1
                                                                       // The dense form of a structured mask is the same mask.
    let (p, n) = joint.to_dense();
    assert_eq!(PairMask::from_dense(8, 8, p, n).unwrap().to_dense(), joint.to_dense());
}

#[test]
fn supervised_and_labeled_candidates() {
    assert_eq!(flags(&PairMask::supervised(&[0, 1, 0])), grid(&[".nP", "n.n", "Pn."]));
    let queue_labels = [1, 0];
    let mask = PairMask::cross_view(2);
    let pos = mask.with_labeled_candidates(&[0, 1], &queue_labels, SameLabel::Positive).unwrap();
    assert_eq!(flags(&pos), grid(&["PnnP", "nPPn"]));
    let ignore = mask.with_labeled_candidates(&[0, 1], &queue_labels, SameLabel::Ignore).unwrap();
    assert_eq!(flags(&ignore), grid(&["Pnn.", "nP.n"]));
    assert!(mask.with_labeled_candidates(&[0], &queue_labels, SameLabel::Ignore).is_err());
    assert_eq!(flags(&PairMask::joint(1).with_extra_negatives(2)), grid(&[".Pnn", "P.nn"]));
    let tensors = PairMask::cross_view(2).to_tensors(&Device::Cpu).unwrap();
    assert_eq!(tensors.0.to_vec2::<u8>().unwrap(), vec![vec![1, 0], vec![0, 1]]);
    assert_eq!(tensors.1.to_vec2::<u8>().unwrap(), vec![vec![0, 1], vec![1, 0]]);
}

#[test]
fn from_dense_rejects_bad_flags() {
    let e = PairMask::from_dense(2, 2, vec![true; 3], vec![false; 4]).unwrap_err().to_string();
    assert!(e.contains("2 x 2 = 4 flags"), "{e}");
    let e = PairMask::from_dense(1, 2, vec![true, false], vec![true, true]).unwrap_err().to_string();
    assert!(e.contains("pair (0, 0) is both"), "{e}");
}

fn sim(rows: &[&[f32]]) -> Tensor {
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_vec(flat, (rows.len(), rows[0].len()), &Device::Cpu).unwrap()
}

#[test]
fn hard_negative_mining_keeps_the_k_most_similar() {
    let mask = PairMask::cross_view(2).with_extra_negatives(3);
    let s = sim(&[&[0.9, 0.1, 0.5, 0.3, 0.7], &[0.2, 0.8, 0.6, 0.6, 0.1]]);
    let mined = HardNegativeMiner { k: 2, false_negative_margin: None }.mine(&mask, &s).unwrap();
    // Row 1 has a tie at 0.6: both kept; the lower index wins ties at the cut.
    assert_eq!(flags(&mined), grid(&["P.n.n", ".Pnn."]));
    let one = HardNegativeMiner { k: 1, false_negative_margin: None }.mine(&mask, &s).unwrap();
    assert_eq!(flags(&one), grid(&["P...n", ".Pn.."]));
    // k beyond the number of negatives keeps them all.
    let all = HardNegativeMiner { k: 99, false_negative_margin: None }.mine(&mask, &s).unwrap();
    assert_eq!(flags(&all), flags(&mask));
}

#[test]
fn false_negative_filter_drops_candidates_above_positive_minus_margin() {
    let mask = PairMask::cross_view(2).with_extra_negatives(2);
    // Row 0: positive 0.6; candidates 0.65 (above) and 0.55 (within margin 0.1) are dropped.
    let s = sim(&[&[0.6, 0.65, 0.55, 0.2], &[0.1, 0.9, 0.3, 0.95]]);
    let mined = HardNegativeMiner { k: 10, false_negative_margin: Some(0.1) }.mine(&mask, &s).unwrap();
    assert_eq!(flags(&mined), grid(&["P..n", "nPn."]));
    let miner = HardNegativeMiner { k: 1, false_negative_margin: Some(0.0) };
    assert_eq!(flags(&miner.mine(&mask, &s).unwrap()), grid(&["P.n.", ".Pn."]));
}

#[test]
fn mining_rejects_bad_input() {
    let mask = PairMask::cross_view(2);
    let e = HardNegativeMiner { k: 1, false_negative_margin: None }.mine(&mask, &sim(&[&[0.1, 0.2, 0.3]])).unwrap_err();
    assert!(e.to_string().contains("shape [1, 3], the mask is (2, 2)"), "{e}");
    let e = HardNegativeMiner { k: 0, false_negative_margin: None }
        .mine(&mask, &sim(&[&[0.1, 0.2], &[0.1, 0.2]]))
        .unwrap_err();
    assert!(e.to_string().contains("k must be"), "{e}");
    let e = HardNegativeMiner { k: 1, false_negative_margin: None }
        .mine(&mask, &sim(&[&[0.1, f32::NAN], &[0.1, 0.2]]))
        .unwrap_err();
    assert!(e.to_string().contains("similarity (0, 1) is not finite"), "{e}");
}

fn keys(start: usize, n: usize, dim: usize) -> Tensor {
    let v: Vec<f32> = (start..start + n).flat_map(|i| vec![i as f32; dim]).collect();
    Tensor::from_vec(v, (n, dim), &Device::Cpu).unwrap()
}

fn first_column(q: &MemoryQueue) -> Vec<f32> {
    q.keys().unwrap().narrow(1, 0, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn queue_is_fifo_with_fixed_capacity_and_wraps_around() {
    let mut q = MemoryQueue::new(5, 3).unwrap();
    assert!(q.is_empty() && q.keys().is_none());
    q.enqueue(&keys(0, 2, 3)).unwrap();
    assert_eq!(first_column(&q), vec![0., 1.]);
    q.enqueue(&keys(2, 2, 3)).unwrap();
    assert_eq!(first_column(&q), vec![0., 1., 2., 3.]);
    // Crossing capacity: the oldest leave first.
    q.enqueue(&keys(4, 3, 3)).unwrap();
    assert_eq!(first_column(&q), vec![2., 3., 4., 5., 6.]);
    assert_eq!(q.len(), 5);
    // Wrapping around several times.
    for start in (7..40).step_by(2) {
        q.enqueue(&keys(start, 2, 3)).unwrap();
    }
    assert_eq!(first_column(&q), vec![36., 37., 38., 39., 40.]);
    // A batch larger than the capacity keeps its newest keys.
    q.enqueue(&keys(100, 7, 3)).unwrap();
    assert_eq!(first_column(&q), vec![102., 103., 104., 105., 106.]);
}

#[test]
fn queue_detaches_and_keeps_labels_in_step() {
    let var = candle_core::Var::from_tensor(&keys(0, 2, 2)).unwrap();
    let mut q = MemoryQueue::labeled(3, 2).unwrap();
    q.enqueue_labeled(var.as_tensor(), &[10, 11]).unwrap();
    q.enqueue_labeled(&keys(2, 2, 2), &[12, 13]).unwrap();
    assert_eq!(first_column(&q), vec![1., 2., 3.]);
    assert_eq!(q.labels().unwrap(), &[11, 12, 13]);
    // No gradient reaches the enqueued variable through the queue.
    let grads = q.keys().unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&var).is_none());
}

#[test]
fn queue_rejects_bad_keys() {
    let mut q = MemoryQueue::new(4, 3).unwrap();
    let e = q.enqueue(&keys(0, 2, 4)).unwrap_err().to_string();
    assert!(e.contains("keys must be (B, 3), got shape [2, 4]"), "{e}");
    q.enqueue(&keys(0, 2, 3)).unwrap();
    let e = q.enqueue(&keys(0, 2, 3).to_dtype(DType::F64).unwrap()).unwrap_err().to_string();
    assert!(e.contains("F64") && e.contains("F32"), "{e}");
    assert!(q.enqueue_labeled(&keys(0, 1, 3), &[1]).unwrap_err().to_string().contains("unlabelled"));
    let mut l = MemoryQueue::labeled(4, 3).unwrap();
    assert!(l.enqueue(&keys(0, 1, 3)).unwrap_err().to_string().contains("labelled"));
    assert!(l.enqueue_labeled(&keys(0, 2, 3), &[1]).unwrap_err().to_string().contains("1 labels"));
    assert!(MemoryQueue::new(0, 3).is_err());
}
