//! `.npy` export, checked here by reading the format back. Checked once with NumPy on the file
//! the README example writes (40 x 2 embeddings, labels 0/1):
//!   x = np.load("embeddings.npy"); y = np.load("embeddings.labels.npy")
//!   x.dtype, x.shape, y.dtype, y.shape -> float32 (40, 2) int64 (40,); y[:5] -> [0, 1, 0, 1, 0]

use candle_core::{Device, Tensor};
use contrastive_eval::save_embeddings;

fn parse(bytes: &[u8]) -> (String, &[u8]) {
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + len) % 64, 0, "header not aligned");
    (String::from_utf8(bytes[10..10 + len].to_vec()).unwrap(), &bytes[10 + len..])
}

#[test]
fn embeddings_and_labels_round_trip_through_npy() {
    let dir = tempfile::tempdir().unwrap();
    let x = Tensor::new(&[[1.0f32, -2.0], [0.25, 3.0], [1e-3, 6.5]], &Device::Cpu).unwrap();
    let files = save_embeddings(&x, Some(&[4, 0, 7]), &dir.path().join("out/emb")).unwrap();
    assert!(files[0].ends_with("out/emb.npy") && files[1].ends_with("out/emb.labels.npy"));
    let bytes = std::fs::read(&files[0]).unwrap();
    let (header, data) = parse(&bytes);
    assert!(
        header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }") && header.ends_with('\n')
    );
    let values: Vec<f32> = data.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(values, vec![1.0, -2.0, 0.25, 3.0, 1e-3, 6.5]);
    let bytes = std::fs::read(&files[1]).unwrap();
    let (header, data) = parse(&bytes);
    assert!(header.contains("'descr': '<i8'") && header.contains("'shape': (3,)"));
    let labels: Vec<i64> = data.chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(labels, vec![4, 0, 7]);
    let e = save_embeddings(&x, Some(&[1]), &dir.path().join("bad")).unwrap_err().to_string();
    assert!(e.contains("labels: expected shape (3,), one per embedding, found [1]"), "{e}");
}
