//! Whole and blocked similarity, and top-k.

use candle_core::{DType, Device, Tensor};
use contrastive_core::similarity::{l2_normalize, BlockSize, Similarity};
use rand::{Rng, SeedableRng};

fn random(seed: u64, n: usize, d: usize) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, (n, d), &Device::Cpu).unwrap()
}

#[test]
fn cosine_and_dot_match_loops() {
    let (a, b) = (random(1, 4, 3), random(2, 5, 3));
    let (av, bv) = (a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
    let dot = Similarity::Dot.matrix(&a, &b).unwrap().to_vec2::<f32>().unwrap();
    let cos = Similarity::Cosine.matrix(&a, &b).unwrap().to_vec2::<f32>().unwrap();
    for i in 0..4 {
        for j in 0..5 {
            let d: f32 = av[i].iter().zip(&bv[j]).map(|(x, y)| x * y).sum();
            let na = av[i].iter().map(|x| x * x).sum::<f32>().sqrt();
            let nb = bv[j].iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((dot[i][j] - d).abs() < 1e-5);
            assert!((cos[i][j] - d / (na * nb)).abs() < 1e-5);
        }
    }
    // A zero row normalises to zero, not NaN.
    let z = l2_normalize(&Tensor::zeros((1, 3), DType::F32, &Device::Cpu).unwrap()).unwrap();
    assert_eq!(z.to_vec2::<f32>().unwrap(), vec![vec![0.0; 3]]);
}

#[test]
fn blocks_cover_the_matrix_exactly_once_and_stay_bounded() {
    let (a, b) = (random(3, 23, 8), random(4, 31, 8));
    let full = Similarity::Cosine.matrix(&a, &b).unwrap().to_vec2::<f32>().unwrap();
    let mut seen = vec![vec![f32::NAN; 31]; 23];
    let block = BlockSize { rows: 5, cols: 7 };
    Similarity::Cosine
        .for_each_block(&a, &b, block, |r0, c0, s| {
            let (r, c) = s.dims2()?;
            assert!(r <= 5 && c <= 7);
            for (i, row) in s.to_vec2::<f32>()?.into_iter().enumerate() {
                for (j, v) in row.into_iter().enumerate() {
                    assert!(seen[r0 + i][c0 + j].is_nan(), "visited twice");
                    seen[r0 + i][c0 + j] = v;
                }
            }
            Ok(())
        })
        .unwrap();
    for i in 0..23 {
        for j in 0..31 {
            assert!((seen[i][j] - full[i][j]).abs() < 1e-6);
        }
    }
}

#[test]
fn top_k_matches_brute_force_whatever_the_block_size() {
    let (q, c) = (random(5, 17, 6), random(6, 40, 6));
    let full = Similarity::Cosine.matrix(&q, &c).unwrap().to_vec2::<f32>().unwrap();
    for block in [BlockSize { rows: 3, cols: 4 }, BlockSize { rows: 17, cols: 40 }, BlockSize::default()] {
        let top = Similarity::Cosine.top_k(&q, &c, 5, block).unwrap();
        for (i, row) in full.iter().enumerate() {
            let mut order: Vec<usize> = (0..40).collect();
            order.sort_by(|&x, &y| row[y].total_cmp(&row[x]).then(x.cmp(&y)));
            let want: Vec<u32> = order[..5].iter().map(|&j| j as u32).collect();
            assert_eq!(top.indices_of(i), want.as_slice(), "block {block:?}, query {i}");
            assert!((top.values_of(i)[0] - row[order[0]]).abs() < 1e-6);
        }
    }
    assert!(Similarity::Cosine.top_k(&q, &c, 41, BlockSize::default()).unwrap_err().to_string().contains("k = 41"));
    let e = Similarity::Dot.matrix(&q, &random(7, 3, 5)).unwrap_err().to_string();
    assert!(e.contains("widths differ"), "{e}");
}

#[test]
fn a_corpus_in_parts_gives_the_top_k_of_the_whole() {
    let (q, c) = (random(8, 23, 7), random(9, 101, 7));
    for similarity in [Similarity::Cosine, Similarity::Dot] {
        let whole = similarity.top_k(&q, &c, 9, BlockSize { rows: 5, cols: 8 }).unwrap();
        // Uneven parts, one of a single row, offered in order.
        let mut running =
            contrastive_core::similarity::RunningTopK::new(similarity, &q, 9, BlockSize { rows: 5, cols: 8 }).unwrap();
        for (start, len) in [(0, 30), (30, 1), (31, 64), (95, 6)] {
            running.add(&c.narrow(0, start, len).unwrap()).unwrap();
        }
        assert_eq!(running.seen(), 101);
        let parts = running.finish().unwrap();
        assert_eq!(parts.indices, whole.indices, "{similarity:?}");
        for (a, b) in parts.values.iter().zip(&whole.values) {
            assert!((a - b).abs() < 1e-6, "{similarity:?}: {a} against {b}");
        }
    }
    // Fewer rows offered than k, and a part of another width, are errors that say so.
    let mut running =
        contrastive_core::similarity::RunningTopK::new(Similarity::Cosine, &q, 9, BlockSize::default()).unwrap();
    running.add(&c.narrow(0, 0, 4).unwrap()).unwrap();
    assert!(running.add(&random(1, 3, 5)).unwrap_err().to_string().contains("widths differ"));
    assert!(running.finish().unwrap_err().to_string().contains("corpus size 4"));
}
