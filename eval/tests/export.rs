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

// Embedding shards: written a batch at a time, read a shard at a time, searched exactly over
// all shards (against the same search on the whole tensor, itself checked against brute force in
// core's tests) and by HNSW.
mod shards {
    use candle_core::{Device, Tensor};
    use contrastive_core::similarity::{BlockSize, Similarity};
    use contrastive_eval::{ApproximateIndex, EmbeddingShards, HnswConfig, Knn, ShardWriter, Vote};
    use rand::{Rng, SeedableRng};

    /// `n` points around `classes` random centres in `d` dimensions, with their classes.
    fn clusters(seed: u64, n: usize, d: usize, classes: u32) -> (Tensor, Vec<u32>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let centres: Vec<Vec<f32>> =
            (0..classes).map(|_| (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
        let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..classes)).collect();
        let v: Vec<f32> = labels
            .iter()
            .flat_map(|&l| centres[l as usize].iter().map(|c| c + rng.random_range(-0.6f32..0.6)).collect::<Vec<_>>())
            .collect();
        (Tensor::from_vec(v, (n, d), &Device::Cpu).unwrap(), labels)
    }

    fn write(
        dir: &std::path::Path,
        x: &Tensor,
        labels: Option<&[u32]>,
        rows_per_shard: usize,
        batch: usize,
    ) -> EmbeddingShards {
        let mut writer = ShardWriter::create(dir, rows_per_shard).unwrap();
        let n = x.dim(0).unwrap();
        for start in (0..n).step_by(batch) {
            let len = batch.min(n - start);
            writer.push(&x.narrow(0, start, len).unwrap(), labels.map(|l| &l[start..start + len])).unwrap();
        }
        assert_eq!(writer.rows(), n);
        writer.finish().unwrap()
    }

    #[test]
    fn shards_round_trip_and_are_searched_as_the_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("emb");
        let (x, labels) = clusters(1, 500, 16, 5);
        // Batches of 45 cut across shards of 128: 128 + 128 + 128 + 116.
        let set = write(&dir, &x, Some(&labels), 128, 45);
        let reopened = EmbeddingShards::open(&dir).unwrap();
        assert_eq!((reopened.len(), reopened.dim(), reopened.labelled()), (500, 16, true));
        let rows: Vec<usize> = reopened.index().shards.iter().map(|s| s.rows).collect();
        assert_eq!(rows, vec![128, 128, 128, 116]);
        assert_eq!(reopened.to_tensor().unwrap().to_vec2::<f32>().unwrap(), x.to_vec2::<f32>().unwrap());
        assert_eq!(reopened.labels().unwrap(), labels);
        assert_eq!(set.len(), 500);

        let (queries, query_labels) = clusters(1, 60, 16, 5);
        let block = BlockSize { rows: 16, cols: 50 };
        let whole = Similarity::Cosine.top_k(&queries, &x, 20, block).unwrap();
        let sharded = reopened.top_k(Similarity::Cosine, &queries, 20, block).unwrap();
        assert_eq!(sharded.indices, whole.indices);
        // The search and the labels in one pass over the shards: the same as each on its own.
        let (together, gathered) = reopened.top_k_and_labels(Similarity::Cosine, &queries, 20, block).unwrap();
        assert_eq!((together.indices, together.values), (sharded.indices.clone(), sharded.values.clone()));
        assert_eq!(gathered, labels);

        for vote in [Vote::Majority, Vote::Weighted { temperature: 0.1 }] {
            let knn = Knn { k: 20, vote, block };
            let exact = knn.accuracy(&x, &labels, &queries, &query_labels).unwrap();
            assert_eq!(knn.accuracy_in_shards(&reopened, &queries, &query_labels).unwrap(), exact);
            assert_eq!(
                knn.rank_classes_in_shards(&reopened, &queries).unwrap(),
                knn.rank_classes(&x, &labels, &queries).unwrap()
            );
            // Well-separated clusters: kNN is nearly perfect, and HNSW finds nearly the same.
            assert!(exact.top1 > 0.9, "{exact:?}");
            let index = ApproximateIndex::build_from_shards(&reopened, HnswConfig::default()).unwrap();
            assert_eq!(index.len(), 500);
            let approx = knn.rank_classes_approximate(&index, &labels, &queries).unwrap();
            let agree = approx
                .iter()
                .zip(knn.rank_classes(&x, &labels, &queries).unwrap())
                .filter(|(a, b)| a[0] == b[0])
                .count();
            assert!(agree >= 57, "HNSW kNN agrees with exact kNN on {agree} of 60 queries");
        }
        let top =
            ApproximateIndex::build_from_shards(&reopened, HnswConfig::default()).unwrap().top_k(&queries, 5).unwrap();
        let exact = Similarity::Cosine.top_k(&queries, &x, 5, block).unwrap();
        let found: usize =
            (0..60).map(|q| top.indices_of(q).iter().filter(|i| exact.indices_of(q).contains(i)).count()).sum();
        assert!(found as f64 / 300.0 > 0.9, "HNSW recall@5 {}", found as f64 / 300.0);
        for (i, v) in top.indices.iter().zip(&top.values) {
            // Its similarities are the cosines of the rows it names.
            let row = x.get(*i as usize).unwrap();
            assert!(v.is_finite() && (-1.0..=1.0001).contains(v), "{v} for row {i} {row}");
        }
    }

    #[test]
    fn unlabelled_sets_and_bad_folders_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("emb");
        let (x, _) = clusters(2, 50, 4, 2);
        let set = write(&dir, &x, None, 1000, 50);
        assert_eq!(set.index().shards.len(), 1);
        assert!(!set.labelled());
        assert!(set.labels().unwrap_err().to_string().contains("no labels"));
        let knn = Knn { k: 3, ..Knn::default() };
        assert!(knn.rank_classes_in_shards(&set, &x).unwrap_err().to_string().contains("no labels"));
        let block = BlockSize { rows: 16, cols: 50 };
        let err = set.top_k_and_labels(Similarity::Cosine, &x, 3, block).unwrap_err().to_string();
        assert!(err.contains("no labels"), "{err}");

        // A set rewritten with fewer shards leaves none of the old ones behind.
        write(&dir, &x, None, 10, 7);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 6);
        write(&dir, &x, None, 40, 50);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
        // Labels in one batch and not the next; another width.
        let mut writer = ShardWriter::create(&dir, 10).unwrap();
        writer.push(&x.narrow(0, 0, 5).unwrap(), None).unwrap();
        let e = writer.push(&x.narrow(0, 5, 5).unwrap(), Some(&[0; 5])).unwrap_err().to_string();
        assert!(e.contains("labels"), "{e}");
        let e = writer.push(&Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap(), None).unwrap_err();
        assert!(e.to_string().contains('3') && e.to_string().contains('4'), "{e}");
        drop(writer);
        // Dropped before finish: no index, and opening says the set is unfinished.
        let e = EmbeddingShards::open(&dir).unwrap_err().to_string();
        assert!(e.contains("index.json") && e.contains("never finished"), "{e}");

        // A folder with someone else's file is never written into.
        let other = tmp.path().join("photos");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("holiday.jpg"), b"x").unwrap();
        let e = ShardWriter::create(&other, 10).err().unwrap().to_string();
        assert!(e.contains("holiday.jpg"), "{e}");
        assert!(other.join("holiday.jpg").exists());
        // A file for a folder.
        assert!(ShardWriter::create(&other.join("holiday.jpg"), 10).err().unwrap().to_string().contains("is a file"));

        // A shard that disagrees with the index is named.
        let good = write(&tmp.path().join("good"), &x, None, 20, 50);
        let shard = good.dir().join(&good.index().shards[1].file);
        std::fs::copy(good.dir().join(&good.index().shards[2].file), &shard).unwrap();
        let e = good.to_tensor().unwrap_err().to_string();
        assert!(e.contains("shard-00001.safetensors") && e.contains("embeddings"), "{e}");
        std::fs::remove_file(&shard).unwrap();
        let e = EmbeddingShards::open(good.dir()).unwrap_err().to_string();
        assert!(e.contains("shard-00001.safetensors") && e.contains("missing"), "{e}");
        std::fs::write(good.dir().join("index.json"), b"{\"format\": 3}").unwrap();
        assert!(EmbeddingShards::open(good.dir()).unwrap_err().to_string().contains("index.json"));
    }
}
