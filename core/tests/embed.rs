//! `embed`: a dataset embedded a batch at a time equals the whole set through the model at once,
//! in order, whatever the batch size; bad batch sizes, empty sets and wrong row counts are errors.

use candle_core::{Device, Tensor};
use contrastive_core::{embed, Embed, Result};

/// x -> (x · w, sum x): a fixed linear map of 3-D points to 2-D.
struct Fixed {
    w: Tensor,
    drop_last_row: bool,
}

impl Embed<[f32; 3]> for Fixed {
    fn embed_batch(&self, items: Vec<[f32; 3]>) -> Result<Tensor> {
        let n = items.len() - usize::from(self.drop_last_row);
        let flat: Vec<f32> = items.iter().take(n).flatten().copied().collect();
        Ok(Tensor::from_vec(flat, (n, 3), &Device::Cpu)?.matmul(&self.w)?)
    }
}

fn points(n: usize) -> Vec<[f32; 3]> {
    (0..n).map(|i| [i as f32, (i * i % 7) as f32, 1.0 - i as f32 / 3.0]).collect()
}

#[test]
fn batches_give_the_same_rows_as_one_pass() {
    let w = Tensor::new(&[[1f32, 1.0], [0.5, 1.0], [-2.0, 1.0]], &Device::Cpu).unwrap();
    let model = Fixed { w, drop_last_row: false };
    let data = points(10);
    // The closed form: row i is (x0 + x1 / 2 - 2 x2, x0 + x1 + x2).
    let expected: Vec<Vec<f32>> =
        data.iter().map(|x| vec![x[0] + 0.5 * x[1] - 2.0 * x[2], x[0] + x[1] + x[2]]).collect();
    for batch in [1, 3, 4, 10, 64] {
        let z = embed(&model, &data, batch).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(z.len(), 10);
        for (row, e) in z.iter().zip(&expected) {
            assert!(row.iter().zip(e).all(|(a, b)| (a - b).abs() < 1e-5), "batch {batch}: {row:?} vs {e:?}");
        }
    }
    // A slice is a dataset too.
    assert_eq!(embed(&model, &data[2..5], 2).unwrap().dims(), &[3, 2]);
}

#[test]
fn bad_batch_sizes_empty_sets_and_wrong_row_counts_are_errors() {
    let w = Tensor::ones((3, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    let good = Fixed { w: w.clone(), drop_last_row: false };
    assert!(embed(&good, &points(4), 0).unwrap_err().to_string().contains("batch_size"));
    assert!(embed(&good, &points(0), 8).unwrap_err().to_string().contains("no item"));
    let bad = Fixed { w, drop_last_row: true };
    let err = embed(&bad, &points(5), 2).unwrap_err();
    assert!(matches!(&err, contrastive_core::Error::Shape { found, .. } if found == &[1, 2]), "{err:?}");
    assert!(err.to_string().contains("items 0..2: expected shape (2, D), found [1, 2]"), "{err}");
}

/// Doubles its input in training mode and keeps it in eval mode: which mode `embed` uses shows.
struct Doubling;

impl contrastive_core::Backbone for Doubling {
    type Input = Tensor;
    fn encode(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        if train {
            x * 2.0
        } else {
            Ok(x.clone())
        }
    }
    fn dim(&self) -> usize {
        3
    }
}

#[test]
fn any_backbone_embeds_through_its_input_function() {
    let model = contrastive_core::embed::BackboneEmbedder {
        backbone: &Doubling,
        input: |items: Vec<[f32; 3]>| -> Result<Tensor> {
            let n = items.len();
            Ok(Tensor::from_vec(items.into_iter().flatten().collect::<Vec<f32>>(), (n, 3), &Device::Cpu)?)
        },
    };
    let data = points(7);
    let z = embed(&model, &data, 3).unwrap().to_vec2::<f32>().unwrap();
    // Eval mode: the rows are the points themselves, in order.
    assert_eq!(z, data.iter().map(|p| p.to_vec()).collect::<Vec<_>>());
}
