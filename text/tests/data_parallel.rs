//! SimCSE on a tiny BERT with dropout under `mpirun -np 2` (feature `mpi`): two processes with
//! batches of 8 train as one process with batches of 16 (losses and parameters after 5 SGD
//! steps), unsupervised (the sentence loader, copies kept out of a global batch) and supervised
//! (hard negatives gathered too). Sentences of different lengths, so each process pads to the
//! global batch's longest and draws the dropout masks of its rows of the global batch. Skipped
//! without mpirun unless `CONTRASTIVE_REQUIRE_MPI=1` (CI).
#![cfg(feature = "mpi")]

use candle_core::Device;
use contrastive_core::augment::Identity;
use contrastive_core::collective::{Collective, Local, Mpi};
use contrastive_core::data::{Loader, LoaderConfig, Shard};
use contrastive_core::train::{Objective, Trainer};
use contrastive_text::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[path = "../../core/tests/support/mpirun.rs"]
mod support;
use support::{assert_same_run, checkpoint_values, sgd_steps, workers, OUT, WORKER};

const WORDS: [&str; 16] = [
    "the", "cat", "dog", "bird", "runs", "sleeps", "eats", "sings", "red", "blue", "small", "big", "house", "tree",
    "river", "sky",
];

/// A tokenizer whose vocabulary is written into `dir` (a folder of its own: the processes of a
/// run share their output folder).
fn tokenizer(dir: &Path) -> Arc<Tokenizer> {
    std::fs::create_dir_all(dir).unwrap();
    let vocab: Vec<&str> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().chain(WORDS.iter()).copied().collect();
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n")).unwrap();
    Arc::new(Tokenizer::from_vocab(&dir.join("vocab.txt"), 16).unwrap())
}

/// 48 sentences of 1 to 9 words, a few of them twice.
fn sentences() -> Vec<String> {
    (0..48)
        .map(|i| {
            let i = if i % 11 == 10 { i - 3 } else { i };
            (0..1 + (i * 5) % 9).map(|j| WORDS[(i * 3 + j * 7) % 16]).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

fn model(collective: Arc<dyn Collective>) -> SimCse {
    let bert = BertConfig {
        vocab_size: WORDS.len() + 5,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        hidden_act: Activation::Gelu,
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
        max_position_embeddings: 16,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        model_type: Default::default(),
        pad_token_id: None,
        relative_attention_num_buckets: 32,
    };
    let config = SimCseConfig { temperature: 0.1, pooling: SimCsePooling::ClsMlp };
    SimCse::new(config, &bert, 3, &Device::Cpu).unwrap().with_collective(collective)
}

/// Five SGD steps of SimCSE, batches of `batch` per process, into `dir`.
fn train(collective: Arc<dyn Collective>, batch: usize, supervised: bool, dir: &Path) {
    let tokenizer = tokenizer(&dir.join(format!("vocabulary-{}", collective.rank())));
    let collate = CollateSentences { tokenizer, device: Device::Cpu };
    let config = LoaderConfig { batch_size: batch, seed: 4, shuffle: true, drop_last: true, threads: 1 };
    let shard = Shard { rank: collective.rank(), world_size: collective.world_size() };
    // Three global batches an epoch: the second epoch's order too.
    let trainer_config = sgd_steps(2, 5, 0.05);
    let trainer = Trainer::new(trainer_config, model(Arc::clone(&collective))).unwrap();
    let mut trainer = trainer.with_collective(collective).with_run_dir(dir);
    if supervised {
        let s = sentences();
        let triples: Vec<Triple> =
            (0..48).map(|i| (s[i].clone(), s[(i + 1) % 48].clone(), s[(i + 17) % 48].clone())).collect();
        let loader = Loader::new(triples, Identity, collate, config).unwrap().with_shard(shard).unwrap();
        trainer.fit(&loader).unwrap();
    } else {
        let loader = sentence_loader(sentences(), collate, config).unwrap().with_shard(shard).unwrap();
        assert_eq!(loader.batches_per_epoch(), 48 / (batch * shard.world_size));
        trainer.fit(&loader).unwrap();
    }
}

/// The worker the test starts under mpirun (nothing when run as an ordinary test).
#[test]
fn mpi_worker() {
    let Ok(mode) = std::env::var(WORKER) else { return };
    let collective: Arc<dyn Collective> = Arc::new(Mpi::init().unwrap());
    train(collective, 8, mode == "supervised", &PathBuf::from(std::env::var(OUT).unwrap()));
}

fn final_state(dir: &Path) -> Vec<(String, Vec<f32>)> {
    checkpoint_values(model(Arc::new(Local)).params(), dir)
}

#[test]
fn simcse_on_two_processes_equals_one_with_the_global_batch() {
    for mode in ["unsupervised", "supervised"] {
        let one = tempfile::tempdir().unwrap();
        train(Arc::new(Local), 16, mode == "supervised", one.path());
        let two = tempfile::tempdir().unwrap();
        let Some(run) = workers(2, mode, two.path()) else { return };
        assert!(run.status.success(), "{}", run.stderr);
        assert_same_run(mode, one.path(), two.path(), 5, 1e-5, final_state);
        // The parameters moved: the comparison is not of two untrained models.
        let start = model(Arc::new(Local));
        let moved = start
            .params()
            .all()
            .into_iter()
            .zip(final_state(one.path()))
            .map(|((_, v), (_, x))| {
                let v = v.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                v.iter().zip(&x).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max)
            })
            .fold(0.0f32, f32::max);
        assert!(moved > 1e-3, "{mode}: the parameters moved by at most {moved}");
    }
}
