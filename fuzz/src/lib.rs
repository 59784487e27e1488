//! Every file reader of the workspace as a fuzz target: bytes in, the reader run on them as a
//! user's file, any result but a panic, a hang or an allocation the bytes do not justify.
//!
//! The same [`Reader::read`] serves two drivers: `cargo +nightly fuzz run <target>` (the
//! libFuzzer binaries in `fuzz_targets/`, coverage-guided, for as long as you let it run) and
//! `tests/mutations.rs` on stable, which mutates valid inputs ([`Reader::seeds`]) for a bounded
//! number of cases on every `cargo test` and so in CI. Formats made of several files (a TU
//! folder, a checkpoint) take a first byte that picks the file the rest of the bytes replace.

use candle_core::{DType, Device, Module, Tensor};
use contrastive_core::data::{Loader, LoaderConfig, ViewPair};
use contrastive_core::nn::{InitScheme, ParamStore};
use contrastive_core::train::{Objective, Trainer, TrainerConfig};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A reader of the workspace, as a fuzz target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// `vision::read_idx_images` (raw or gzipped).
    IdxImages,
    /// `vision::read_idx_labels`.
    IdxLabels,
    /// `vision::load_pixel_csv` of 2x2 images.
    PixelCsv,
    /// One PNG or JPEG file of a `vision::ImageFolder`, listed and decoded.
    ImageFile,
    /// `graph::load_tu`: the first byte picks the file of a small TU folder the rest replaces.
    TuDataset,
    /// `graph::read_tu_smiles` of a `graph_sources.tsv` for 2 graphs.
    TuSmiles,
    /// `text::read_corpus`: the first byte picks lines or documents.
    Corpus,
    /// `text::read_sts_tsv`.
    StsTsv,
    /// `text::Tokenizer::from_file` and encoding two sentences with it.
    Tokenizer,
    /// `text::BertConfig::from_file` and its checks.
    BertConfig,
    /// `ParamStore::load` of a two-tensor model (a safetensors header and body).
    Safetensors,
    /// `Trainer::load_checkpoint`: the first byte picks the checkpoint file the rest replaces.
    Checkpoint,
    /// `train::read_history` of a `history.jsonl`.
    History,
}

impl Reader {
    /// Every reader.
    pub const ALL: [Reader; 13] = [
        Reader::IdxImages,
        Reader::IdxLabels,
        Reader::PixelCsv,
        Reader::ImageFile,
        Reader::TuDataset,
        Reader::TuSmiles,
        Reader::Corpus,
        Reader::StsTsv,
        Reader::Tokenizer,
        Reader::BertConfig,
        Reader::Safetensors,
        Reader::Checkpoint,
        Reader::History,
    ];

    /// Runs the reader on `data` written as its file(s). Errors are the expected answer to bad
    /// bytes; a panic is the bug a fuzzer looks for.
    pub fn read(self, data: &[u8]) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let _ = self.read_in(dir.path(), data);
    }

    fn read_in(self, dir: &Path, data: &[u8]) -> contrastive_core::Result<()> {
        let file = |name: &str, bytes: &[u8]| -> contrastive_core::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| contrastive_core::Error::io(&path, e))?;
            Ok(path)
        };
        match self {
            Reader::IdxImages => drop(contrastive_vision::read_idx_images(&file("images-idx3-ubyte", data)?)?),
            Reader::IdxLabels => drop(contrastive_vision::read_idx_labels(&file("labels-idx1-ubyte", data)?)?),
            Reader::PixelCsv => drop(contrastive_vision::load_pixel_csv(&file("digits.csv", data)?, 2, 2, 16.0)?),
            Reader::ImageFile => {
                use contrastive_core::data::Dataset;
                use contrastive_vision::{ColorMode, ImageFolder, Unreadable};
                std::fs::create_dir_all(dir.join("root/cat")).map_err(|e| contrastive_core::Error::io(dir, e))?;
                let name = if data.starts_with(&[0xff, 0xd8]) { "root/cat/a.jpg" } else { "root/cat/a.png" };
                file(name, data)?;
                for mode in [ColorMode::Rgb, ColorMode::Grayscale] {
                    let folder = ImageFolder::open(&dir.join("root"), mode, Unreadable::Fail)?;
                    for i in 0..folder.len() {
                        folder.get(i)?;
                    }
                }
            }
            Reader::TuDataset => {
                let (pick, rest) = data.split_first().unwrap_or((&0, &[]));
                let tu = dir.join("T");
                std::fs::create_dir_all(&tu).map_err(|e| contrastive_core::Error::io(&tu, e))?;
                let files = tu_files();
                for (i, (name, content)) in files.iter().enumerate() {
                    let bytes = if i == usize::from(*pick) % files.len() { rest } else { content.as_bytes() };
                    file(&format!("T/{name}"), bytes)?;
                }
                let options = contrastive_graph::TuOptions::default();
                drop(contrastive_graph::load_tu(&tu, options)?);
            }
            Reader::TuSmiles => drop(contrastive_graph::read_tu_smiles(&file("T_graph_sources.tsv", data)?, 2)?),
            Reader::Corpus => {
                let (pick, rest) = data.split_first().unwrap_or((&0, &[]));
                let format = if pick % 2 == 0 {
                    contrastive_text::CorpusFormat::Lines
                } else {
                    contrastive_text::CorpusFormat::Documents
                };
                drop(contrastive_text::read_corpus(&file("corpus.txt", rest)?, format, (1, 200))?);
            }
            Reader::StsTsv => drop(contrastive_text::read_sts_tsv(&file("sts.tsv", data)?)?),
            Reader::Tokenizer => {
                let tokenizer = contrastive_text::Tokenizer::from_file(&file("tokenizer.json", data)?, 16)?;
                drop(tokenizer.encode(&["A sentence to encode.", ""], &Device::Cpu)?);
            }
            Reader::BertConfig => contrastive_text::BertConfig::from_file(&file("config.json", data)?)?.validate()?,
            Reader::Safetensors => {
                let (store, _) = tiny_model();
                store.load(&file("model.safetensors", data)?)?;
            }
            Reader::Checkpoint => {
                let (pick, rest) = data.split_first().unwrap_or((&0, &[]));
                let ckpt = dir.join("checkpoint-00000001");
                std::fs::create_dir_all(&ckpt).map_err(|e| contrastive_core::Error::io(&ckpt, e))?;
                let files = checkpoint_files();
                let replaced = usize::from(*pick) % files.len();
                for (i, (name, content)) in files.iter().enumerate() {
                    // With a file other than the checksums replaced, the checksums go: else they
                    // would refuse nearly every input before the parsers see it.
                    if i != replaced && name == "SHA256SUMS" && files[replaced].0 != "SHA256SUMS" {
                        continue;
                    }
                    file(&format!("checkpoint-00000001/{name}"), if i == replaced { rest } else { content })?;
                }
                let mut trainer = Trainer::new(tiny_trainer_config(), Tiny::new())?;
                trainer.load_checkpoint(&ckpt)?;
            }
            Reader::History => drop(contrastive_core::train::read_history(&file("history.jsonl", data)?)?),
        }
        Ok(())
    }

    /// Valid inputs to mutate: what the reader accepts, in the layout [`Reader::read`] expects.
    pub fn seeds(self) -> Vec<Vec<u8>> {
        match self {
            Reader::IdxImages => {
                let mut raw = vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5];
                raw.extend((0..60).map(|i| (i * 4) as u8));
                vec![gzip(&raw), raw]
            }
            Reader::IdxLabels => vec![vec![0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9], gzip(&[0, 0, 8, 1, 0, 0, 0, 1, 4])],
            Reader::PixelCsv => vec![b"0,16,3,4,1\n5,6,7,8,2\n".to_vec(), b"1,2,3,4,0\n".to_vec()],
            Reader::ImageFile => vec![encoded(image::ImageFormat::Png), encoded(image::ImageFormat::Jpeg)],
            Reader::TuDataset => {
                tu_files().iter().enumerate().map(|(i, (_, c))| [&[i as u8][..], c.as_bytes()].concat()).collect()
            }
            Reader::TuSmiles => vec![b"graph_id\tsource\tsmiles\n1\tchembl\tCCO\n2\tchembl\tc1ccccc1O\n".to_vec()],
            Reader::Corpus => vec![
                b"\x00First line.\nSecond line here.\n\nThird.\n".to_vec(),
                b"\x01Running text. It has Sentences! Does it? Yes.".to_vec(),
            ],
            Reader::StsTsv => vec![b"sentence1\tsentence2\tscore\nA cat.\tA cat sits.\t4.5\nA\tB\t0\n".to_vec()],
            Reader::Tokenizer => vec![tokenizer_json()],
            Reader::BertConfig => vec![BERT_CONFIG.as_bytes().to_vec()],
            Reader::Safetensors => vec![safetensors_bytes()],
            Reader::Checkpoint => {
                checkpoint_files().iter().enumerate().map(|(i, (_, c))| [&[i as u8][..], c].concat()).collect()
            }
            Reader::History => {
                vec![b"{\"step\":1,\"epoch\":0,\"loss\":4.1,\"lr\":0.001,\"samples_per_s\":90.5,\"elapsed_s\":0.1}\n\
                  {\"step\":1,\"epoch\":0,\"elapsed_s\":0.2,\"eval\":{\"knn\":51.5}}\n"
                    .to_vec()]
            }
        }
    }

    /// The target's name (that of its `fuzz_targets/` binary).
    pub fn name(self) -> &'static str {
        match self {
            Reader::IdxImages => "idx_images",
            Reader::IdxLabels => "idx_labels",
            Reader::PixelCsv => "pixel_csv",
            Reader::ImageFile => "image_file",
            Reader::TuDataset => "tu_dataset",
            Reader::TuSmiles => "tu_smiles",
            Reader::Corpus => "corpus",
            Reader::StsTsv => "sts_tsv",
            Reader::Tokenizer => "tokenizer",
            Reader::BertConfig => "bert_config",
            Reader::Safetensors => "safetensors",
            Reader::Checkpoint => "checkpoint",
            Reader::History => "history",
        }
    }
}

const BERT_CONFIG: &str = r#"{"vocab_size": 30, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
"intermediate_size": 16, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
"max_position_embeddings": 16, "type_vocab_size": 2, "layer_norm_eps": 1e-12}"#;

/// A TU folder `T` of three small labelled graphs (a triangle, an edge, a path of three).
fn tu_files() -> [(&'static str, &'static str); 4] {
    [
        ("T_A.txt", "1, 2\n2, 1\n2, 3\n3, 2\n3, 1\n1, 3\n4, 5\n5, 4\n6, 7\n7, 6\n7, 8\n8, 7\n"),
        ("T_graph_indicator.txt", "1\n1\n1\n2\n2\n3\n3\n3\n"),
        ("T_graph_labels.txt", "1\n-1\n1\n"),
        ("T_node_labels.txt", "0\n1\n2\n0\n0\n1\n2\n1\n"),
    ]
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// A 6x5 colour gradient in `format`.
fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(6, 5, |x, y| image::Rgb([(x * 40) as u8, (y * 50) as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode into memory");
    out.into_inner()
}

fn tokenizer_json() -> Vec<u8> {
    let texts = ["a small corpus to train on", "another sentence of it", "and a third one"];
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("tokenizer.json");
    let tokenizer = contrastive_text::Tokenizer::train_bpe(&texts, 60, 16).expect("a BPE tokenizer");
    tokenizer.save(&path).expect("tokenizer.json");
    std::fs::read(path).expect("tokenizer.json")
}

/// A linear layer 4 → 3 (`layer.weight`, `layer.bias`) and its store.
fn tiny_model() -> (ParamStore, candle_nn::Linear) {
    let store = ParamStore::new(1, InitScheme::PyTorch);
    let layer =
        candle_nn::linear(4, 3, store.var_builder(DType::F32, &Device::Cpu).pp("layer")).expect("a 4x3 linear layer");
    (store, layer)
}

fn safetensors_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("model.safetensors");
    tiny_model().0.save(&path).expect("model.safetensors");
    std::fs::read(path).expect("model.safetensors")
}

/// The tiny model under NT-Xent, to write and read real checkpoints.
struct Tiny {
    store: ParamStore,
    layer: candle_nn::Linear,
}

impl Tiny {
    fn new() -> Self {
        let (store, layer) = tiny_model();
        Self { store, layer }
    }
}

impl Objective for Tiny {
    type Batch = (Tensor, Tensor);

    fn loss(&mut self, batch: &Self::Batch) -> candle_core::Result<Tensor> {
        contrastive_core::loss::nt_xent(&self.layer.forward(&batch.0)?, &self.layer.forward(&batch.1)?, 0.5)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "in": 4, "out": 3 })
    }
}

fn tiny_trainer_config() -> TrainerConfig {
    TrainerConfig { max_steps: Some(1), progress: false, ..TrainerConfig::default() }
}

type Views = ViewPair<Vec<f32>>;

fn jitter(x: Vec<f32>, _: &mut dyn rand::RngCore) -> contrastive_core::Result<Vec<f32>> {
    Ok(x)
}

fn stack(batch: Vec<Views>) -> contrastive_core::Result<(Tensor, Tensor)> {
    let n = batch.len();
    let first: Vec<f32> = batch.iter().flat_map(|v| v.first.iter().copied()).collect();
    let second: Vec<f32> = batch.iter().flat_map(|v| v.second.iter().map(|x| x + 0.1)).collect();
    Ok((Tensor::from_vec(first, (n, 4), &Device::Cpu)?, Tensor::from_vec(second, (n, 4), &Device::Cpu)?))
}

/// The files of a real one-step checkpoint of [`Tiny`], made once.
fn checkpoint_files() -> &'static [(String, Vec<u8>)] {
    static FILES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let data: Vec<Vec<f32>> = (0..8).map(|i| (0..4).map(|j| ((i * 4 + j) as f32).sin()).collect()).collect();
        type Aug = fn(Vec<f32>, &mut dyn rand::RngCore) -> contrastive_core::Result<Vec<f32>>;
        type Col = fn(Vec<Views>) -> contrastive_core::Result<(Tensor, Tensor)>;
        let config = LoaderConfig { batch_size: 4, seed: 0, shuffle: false, drop_last: true, threads: 1 };
        let loader = Loader::new(data, jitter as Aug, stack as Col, config).expect("a loader");
        let mut trainer = Trainer::new(tiny_trainer_config(), Tiny::new()).expect("a trainer").with_run_dir(dir.path());
        let ckpt = trainer.fit(&loader).expect("one step").checkpoint.expect("a checkpoint");
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&ckpt)
            .expect("the checkpoint")
            .filter_map(|e| e.ok())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).expect("a file")))
            .collect();
        files.sort();
        files
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds are inputs the readers accept: mutations start from valid files.
    #[test]
    fn every_seed_reads_without_error() {
        for reader in Reader::ALL {
            for (i, seed) in reader.seeds().iter().enumerate() {
                let dir = tempfile::tempdir().unwrap();
                if let Err(e) = reader.read_in(dir.path(), seed) {
                    panic!("{} seed {i}: {e}", reader.name());
                }
            }
        }
    }
}
