//! A sentence encoder: tokenizer, BERT and pooling in one, loaded from and saved to the folder
//! layout sentence-transformers uses.

use crate::bert::{load_bert_weights, Bert};
use crate::config::{BertConfig, ModelType};
use crate::pooling::Pooling;
use crate::tokenizer::Tokenizer;
use candle_core::{DType, Device, Tensor};
use contrastive_core::nn::{InitScheme, ParamStore};
use contrastive_core::{Error, Result};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

/// How token states become the sentence vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SentencePooling {
    /// Mean over real tokens.
    Mean,
    /// The `[CLS]` token.
    Cls,
}

/// Tokenizer, BERT and pooling: sentences in, vectors out.
pub struct SentenceEncoder {
    bert: Bert,
    store: ParamStore,
    tokenizer: Tokenizer,
    pooling: SentencePooling,
    normalize: bool,
    device: Device,
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Json { path: path.into(), message: e.to_string() })
}

/// The model folder `spec` names: a local folder as it is, or (with the `hub` feature) a Hugging
/// Face Hub repository id, `owner/name` or `owner/name@revision`, whose files
/// [`download_model_folder`] fetches once into the Hub cache. Anything else is an error that says
/// which of the two was expected.
pub fn model_folder(spec: &str) -> Result<std::path::PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let not_a_folder = |why: String| {
        Error::config(
            "model",
            format!("{spec}: not a model folder (config.json, model.safetensors, tokenizer.json){why}"),
        )
    };
    if path.exists() {
        return Err(not_a_folder(String::new()));
    }
    #[cfg(feature = "hub")]
    {
        let repo = contrastive_core::hub::HubRepo::parse(spec)
            .map_err(|e| not_a_folder(format!(", and not a Hub repository id: {e}")))?;
        download_model_folder(&repo)
    }
    #[cfg(not(feature = "hub"))]
    Err(not_a_folder("; a Hub repository id needs the `hub` feature".into()))
}

/// Fetches (once, into the Hub cache) the files [`SentenceEncoder::from_folder`] reads and returns
/// the cache's snapshot folder of the revision: `config.json`; `model.safetensors` or else
/// `pytorch_model.bin`; `tokenizer.json` or else `vocab.txt`; and, where the repository has them,
/// `sentence_bert_config.json`, `modules.json`, `1_Pooling/config.json`.
#[cfg(feature = "hub")]
pub fn download_model_folder(repo: &contrastive_core::hub::HubRepo) -> Result<std::path::PathBuf> {
    let config = repo.get("config.json")?;
    for alternatives in [["model.safetensors", "pytorch_model.bin"], ["tokenizer.json", "vocab.txt"]] {
        let mut found = false;
        for file in alternatives {
            if repo.get_optional(file)?.is_some() {
                found = true;
                break;
            }
        }
        if !found {
            return Err(Error::Hub(format!(
                "{}: neither {} nor {}{}",
                repo.name(),
                alternatives[0],
                alternatives[1],
                if repo.is_offline() { " in the cache (offline)" } else { " in the repository" }
            )));
        }
    }
    for optional in ["sentence_bert_config.json", "modules.json", "1_Pooling/config.json"] {
        repo.get_optional(optional)?;
    }
    config.parent().map(Path::to_path_buf).ok_or_else(|| Error::Hub(format!("{}: odd cache path", repo.name())))
}

impl SentenceEncoder {
    /// From parts (a trained BERT and its store, for instance).
    pub fn new(
        bert: Bert,
        store: ParamStore,
        tokenizer: Tokenizer,
        pooling: SentencePooling,
        normalize: bool,
        device: &Device,
    ) -> Self {
        Self { bert, store, tokenizer, pooling, normalize, device: device.clone() }
    }

    /// Loads a sentence-transformers (or plain Hugging Face BERT) folder: `config.json`,
    /// `model.safetensors` (or `pytorch_model.bin`), `tokenizer.json` (or `vocab.txt`), and when
    /// present `1_Pooling/config.json` (pooling), `modules.json` (a Normalize module) and
    /// `sentence_bert_config.json` (maximum length; default 256). A missing file is named.
    pub fn from_folder(dir: &Path, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::in_file(dir, None, "not a model folder"));
        }
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let store = ParamStore::new(0, InitScheme::Normal { std: 0.02 });
        let bert = Bert::new(&config, store.var_builder(DType::F32, device), 0)?;
        let weights = ["model.safetensors", "pytorch_model.bin"].iter().map(|f| dir.join(f)).find(|p| p.exists());
        let Some(weights) = weights else {
            return Err(Error::in_file(dir, None, "neither model.safetensors nor pytorch_model.bin in this folder"));
        };
        load_bert_weights(&store, &weights, device)?;
        let max_length = match read_json(&dir.join("sentence_bert_config.json")) {
            Ok(v) => v.get("max_seq_length").and_then(|m| m.as_u64()).unwrap_or(256) as usize,
            Err(_) => 256,
        }
        .min(config.max_tokens());
        let tokenizer = if dir.join("tokenizer.json").exists() {
            Tokenizer::from_file(&dir.join("tokenizer.json"), max_length)?
        } else if dir.join("vocab.txt").exists() {
            Tokenizer::from_vocab(&dir.join("vocab.txt"), max_length)?
        } else {
            return Err(Error::in_file(dir, None, "neither tokenizer.json nor vocab.txt in this folder"));
        };
        // The model's padding id, where the config names one (MPNet's vocabulary holds [PAD] too).
        let tokenizer = match config.pad_token_id.is_some() || config.model_type == ModelType::Mpnet {
            true => tokenizer.pad_with(config.padding_id()).map_err(|e| Error::in_file(dir, None, e.to_string()))?,
            false => tokenizer,
        };
        let pooling = match read_json(&dir.join("1_Pooling/config.json")) {
            Ok(v) if v.get("pooling_mode_cls_token").and_then(|b| b.as_bool()) == Some(true) => SentencePooling::Cls,
            _ => SentencePooling::Mean,
        };
        let normalize = read_json(&dir.join("modules.json")).is_ok_and(|v| {
            v.as_array().is_some_and(|m| {
                m.iter()
                    .any(|e| e.get("type").and_then(|t| t.as_str()) == Some("sentence_transformers.models.Normalize"))
            })
        });
        Ok(Self { bert, store, tokenizer, pooling, normalize, device: device.clone() })
    }

    /// Downloads (once, into the Hub cache) and loads a sentence-transformers or BERT repository:
    /// `owner/name`, or `owner/name@revision` to pin a branch, tag or commit. `HF_HOME`,
    /// `HF_ENDPOINT` and `HF_HUB_OFFLINE=1` (cache only; a missing file is named) are honoured;
    /// [`SentenceEncoder::from_hub`] takes them explicitly.
    #[cfg(feature = "hub")]
    pub fn from_pretrained(repo_id: &str, device: &Device) -> Result<Self> {
        Self::from_hub(&contrastive_core::hub::HubRepo::parse(repo_id)?, device)
    }

    /// [`SentenceEncoder::from_pretrained`] from a configured repository (endpoint, cache,
    /// offline): [`download_model_folder`], then [`SentenceEncoder::from_folder`].
    #[cfg(feature = "hub")]
    pub fn from_hub(repo: &contrastive_core::hub::HubRepo, device: &Device) -> Result<Self> {
        Self::from_folder(&download_model_folder(repo)?, device)
    }

    /// The tokenizer sentences go through (with the model's padding token).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The BERT's variables.
    pub fn params(&self) -> &ParamStore {
        &self.store
    }

    /// Width of the vectors.
    pub fn dim(&self) -> usize {
        self.bert.config().hidden_size
    }

    /// Vectors of `sentences` (N, H) in eval mode, 64 at a time; unit length when the model
    /// normalises. (A corpus of any size: `contrastive_core::embed(&encoder, &corpus, 64)`.)
    pub fn encode(&self, sentences: &[&str]) -> Result<Tensor> {
        contrastive_core::embed(self, sentences, 64)
    }

    fn encode_batch(&self, sentences: &[&str]) -> Result<Tensor> {
        let batch = self.tokenizer.encode(sentences, &self.device)?;
        let states = self.bert.forward_inference(&batch.ids, &batch.type_ids, &batch.attention_mask)?;
        let pooled = match self.pooling {
            SentencePooling::Mean => Pooling::Mean.forward_t(&states, &batch.attention_mask, false)?,
            SentencePooling::Cls => Pooling::Cls.forward_t(&states, &batch.attention_mask, false)?,
        };
        Ok(if self.normalize { contrastive_core::similarity::l2_normalize(&pooled)? } else { pooled })
    }

    /// Writes a folder that sentence-transformers and [`SentenceEncoder::from_folder`] load:
    /// `config.json`, `model.safetensors`, `tokenizer.json`, `modules.json`,
    /// `sentence_bert_config.json`, `1_Pooling/config.json`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir.join("1_Pooling")).map_err(|e| Error::io(dir, e))?;
        let write = |name: &str, v: serde_json::Value| -> Result<()> {
            let path = dir.join(name);
            let text = serde_json::to_string_pretty(&v)
                .map_err(|e| Error::Json { path: path.clone(), message: e.to_string() })?;
            contrastive_core::atomic::write_bytes_atomically(&path, text.as_bytes())
        };
        let mut config = serde_json::to_value(self.bert.config())
            .map_err(|e| Error::Json { path: dir.join("config.json"), message: e.to_string() })?;
        if let Some(o) = config.as_object_mut() {
            let c = self.bert.config();
            o.insert("architectures".into(), json!([c.model_type.architecture()]));
            o.insert("pad_token_id".into(), json!(c.padding_id()));
        }
        write("config.json", config)?;
        let tensors: HashMap<String, Tensor> = self
            .store
            .tensors()
            .into_iter()
            .filter(|(k, _)| k.starts_with("embeddings.") || k.starts_with("encoder."))
            .collect();
        let weights = dir.join("model.safetensors");
        contrastive_core::atomic::save_safetensors(&tensors, &weights)?;
        self.tokenizer.save(&dir.join("tokenizer.json"))?;
        write("tokenizer_config.json", self.tokenizer.transformers_config()?)?;
        let mut modules = vec![
            json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
            json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
        ];
        if self.normalize {
            modules.push(
                json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}),
            );
            std::fs::create_dir_all(dir.join("2_Normalize")).map_err(|e| Error::io(dir, e))?;
        }
        write("modules.json", json!(modules))?;
        write(
            "sentence_bert_config.json",
            json!({"max_seq_length": self.tokenizer.max_length(), "do_lower_case": false}),
        )?;
        write(
            "1_Pooling/config.json",
            json!({
                "word_embedding_dimension": self.dim(),
                "pooling_mode_cls_token": self.pooling == SentencePooling::Cls,
                "pooling_mode_mean_tokens": self.pooling == SentencePooling::Mean,
                "pooling_mode_max_tokens": false,
                "pooling_mode_mean_sqrt_len_tokens": false
            }),
        )
    }
}

/// Sentences to vectors for `contrastive_core::embed`, in eval mode.
impl contrastive_core::Embed<&str> for SentenceEncoder {
    fn embed_batch(&self, sentences: Vec<&str>) -> Result<Tensor> {
        self.encode_batch(&sentences)
    }
}

/// Sentences to vectors for `contrastive_core::embed`: a `Vec<String>` corpus.
impl contrastive_core::Embed<String> for SentenceEncoder {
    fn embed_batch(&self, sentences: Vec<String>) -> Result<Tensor> {
        self.encode_batch(&sentences.iter().map(String::as_str).collect::<Vec<_>>())
    }
}
