//! Unsupervised SimCSE: fine-tune a sentence encoder (all-MiniLM-L6-v2 by default) on sentences
//! of your own text, and measure Lee-50 document similarity before and after.
//!
//!     scripts/fetch-assets minilm sotu
//!     cargo run --release -p contrastive-examples --bin simcse -- --out runs/simcse

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use candle_core::Tensor;
use clap::{Parser, ValueEnum};
use contrastive_core::augment::Identity;
use contrastive_core::data::{BatchSource, Loader, LoaderConfig, StreamLoader, TwoViews};
use contrastive_core::grad_cache::GradCache;
use contrastive_core::optim::{OptimizerConfig, Schedule};
use contrastive_core::rng::named_rng;
use contrastive_core::train::{Objective, Summary, Trainer, TrainerConfig};
use contrastive_core::{Error, Result};
use contrastive_eval::{Content, Correlation, Items};
use contrastive_examples::assets::Asset;
use contrastive_examples::flags::{at_least_one, positive, CommonFlags};
use contrastive_examples::processes;
use contrastive_examples::report::{finish, plot_run, save_embeddings, write_views, Shown};
use contrastive_text::{
    load_bert_weights, read_corpus, read_lee50, sentence_loader, sentence_stream, BertConfig, CollateSentences,
    CorpusFormat, SentenceBatch, SentenceEncoder, SentencePooling, SimCse, SimCseConfig, SimCsePooling, TextCorpus,
    Tokenizer,
};
use rand::seq::SliceRandom;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// How the `--data` files hold sentences.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum Format {
    /// Running text, split into sentences.
    Documents,
    /// One sentence per line.
    Lines,
    /// One JSON object per line (`.jsonl`), the sentence in the --field field.
    Jsonl,
}

/// Unsupervised SimCSE (Gao et al. 2021) with the sentence-transformers reference recipe: batch
/// 64, AdamW 3e-5 with linear decay, temperature 0.05, training length 32 tokens, one epoch over
/// 10,000 sentences of 40 to 300 characters; Lee-50 with up to 256 tokens.
#[derive(Parser, Debug, serde::Serialize)]
#[command(about)]
struct Cli {
    #[command(flatten)]
    #[serde(flatten)]
    common: CommonFlags,
    /// How the --data files hold sentences.
    #[arg(long, value_enum, default_value = "documents")]
    format: Format,
    /// The field that holds the sentence in --format jsonl.
    #[arg(long, default_value = "text")]
    field: String,
    /// Sentences to train on (drawn by --seed into memory).
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one())]
    sentences: usize,
    /// Train on every sentence of --data, streamed a window at a time (a corpus larger than
    /// memory; plain or gzipped), instead of drawing --sentences.
    #[arg(long)]
    stream: bool,
    /// With --stream: sentences shuffled together (more mixes better and holds more in memory).
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one())]
    window: usize,
    /// Gradient caching: the batch goes through the encoder N sentences at a time (memory holds
    /// N sentences' activations, whatever --batch-size), with the full batch's gradient.
    #[arg(long, value_name = "N", value_parser = at_least_one())]
    grad_cache_chunk: Option<usize>,
    /// Learning rate (AdamW, decaying linearly to 0).
    #[arg(long, default_value_t = 3e-5, value_parser = positive)]
    lr: f64,
    /// Temperature.
    #[arg(long, default_value_t = 0.05, value_parser = positive)]
    temperature: f64,
    /// Tokens per training sentence.
    #[arg(long, default_value_t = 32, value_parser = at_least_one())]
    max_length: usize,
    /// Write the trained encoder as a sentence-transformers folder here.
    #[arg(long, value_name = "DIR")]
    export: Option<PathBuf>,
}

/// The model folder of `--init` (a folder or a Hub repository id), or the fetched MiniLM.
fn model_folder(init: Option<&str>) -> Result<PathBuf> {
    let dir = match init {
        Some(spec) => contrastive_text::model_folder(spec)?,
        None => return Asset::MiniLm.require("--init DIR with a BERT or sentence-transformers folder"),
    };
    if !dir.join("model.safetensors").exists() {
        return Err(Error::in_file(&dir, None, "no model.safetensors (--init needs a model folder)"));
    }
    Ok(dir)
}

/// Lee-50 Pearson and Spearman of the encoder's cosine similarities.
fn lee50(encoder: &SentenceEncoder) -> Result<(f64, f64)> {
    let (c, _, _) = lee50_with_embeddings(encoder)?;
    Ok((c.pearson, c.spearman))
}

/// Lee-50's correlation, its documents' embeddings and the documents.
fn lee50_with_embeddings(encoder: &SentenceEncoder) -> Result<(Correlation, Tensor, Vec<String>)> {
    let lee = read_lee50(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../text/data/lee50"))?;
    let embeddings = contrastive_core::embed(encoder, &lee.documents, 64)?;
    let c = contrastive_eval::pair_correlation(&embeddings, &lee.pairs)?;
    Ok((c, embeddings, lee.documents))
}

fn run(cli: Cli) -> Result<serde_json::Value> {
    let flags = &cli.common;
    flags.setup()?;
    flags.check_paths("simcse", &cli)?;
    let started = Instant::now();
    let device = flags.device()?;
    let model_dir = model_folder(flags.init.as_deref())?;
    let data = match &flags.data {
        Some(d) => d.clone(),
        None => Asset::Sotu.require("--data with a text file or a folder of .txt files")?,
    };
    if !data.exists() {
        return Err(Error::config(
            "--data",
            format!("{}: no such file or folder; pass a text file or a folder of .txt files", data.display()),
        ));
    }
    let format = match cli.format {
        Format::Documents => CorpusFormat::Documents,
        Format::Lines => CorpusFormat::Lines,
        Format::Jsonl => CorpusFormat::JsonLines { field: cli.field.clone() },
    };
    // Everything that can fail on the inputs (config, weights, tokenizer, batch size against the
    // corpus) is checked before the minutes of evaluation.
    let bert_config = BertConfig::from_file(&model_dir.join("config.json"))?;
    if cli.max_length > bert_config.max_tokens() {
        return Err(Error::config(
            "--max-length",
            format!(
                "{} tokens, the model ({}) takes at most {}",
                cli.max_length,
                model_dir.display(),
                bert_config.max_tokens()
            ),
        ));
    }
    let config = SimCseConfig { temperature: cli.temperature, pooling: SimCsePooling::Mean };
    // Under mpirun (feature mpi) every process contrasts against the global batch, with dropout
    // keyed by each sentence's place in it: N processes of --batch-size B train as one of N x B.
    let processes = processes::collective()?;
    let leader = processes.rank() == 0;
    // The corpus is indexed (or read) on its own thread while the model loads.
    let (model, opened) = std::thread::scope(|scope| {
        let opened = scope.spawn(|| open_corpus(&cli, &data, format));
        let model =
            SimCse::new(config, &bert_config, flags.seed, &device).map(|m| m.with_collective(processes.clone()));
        let model =
            model.and_then(|m| load_bert_weights(m.params(), &model_dir.join("model.safetensors"), &device).map(|_| m));
        (model, opened.join())
    });
    let opened = opened.map_err(|_| Error::config("--data", "the thread reading the corpus panicked"))??;
    let model = model?;
    let tokenizer = Arc::new(
        Tokenizer::from_file(&model_dir.join("tokenizer.json"), cli.max_length)?.pad_with(bert_config.padding_id())?,
    );
    let batch_size = flags.batch_size.unwrap_or(if flags.quick { 16 } else { 64 });
    let loader_config = LoaderConfig { batch_size, seed: flags.seed, shuffle: true, drop_last: true, threads: 1 };
    let collate = CollateSentences { tokenizer: Arc::clone(&tokenizer), device: device.clone() };
    let say = |line: String| {
        if leader {
            eprintln!("{line}")
        }
    };
    let mut left_out = None;
    let (source, corpus_seconds) = match opened {
        (Opened::Stream(corpus), seconds) => {
            say(format!(
                "simcse: {} sentences streamed from {} (indexed in {seconds:.1} s); model {}",
                corpus.len(),
                data.display(),
                model_dir.display()
            ));
            let left = corpus.left_out();
            if let Some((file, line)) = &left.first_too_long {
                say(format!(
                    "left out: {} sentences over 300 characters (the first at {}:{line}), {} under 40",
                    left.too_long,
                    file.display(),
                    left.too_short
                ));
            }
            left_out = Some(json!({"too_short": left.too_short, "too_long": left.too_long}));
            let loader =
                sentence_stream(*corpus, collate, loader_config, cli.window)?.with_shard(processes::shard()?)?;
            (Source::Stream(loader), seconds)
        }
        (Opened::Memory(sentences), seconds) => {
            say(format!(
                "simcse: {} sentences from {}; model {}",
                sentences.len(),
                data.display(),
                model_dir.display()
            ));
            (
                Source::Memory(sentence_loader(sentences, collate, loader_config)?.with_shard(processes::shard()?)?),
                seconds,
            )
        }
    };

    let monitor = match leader {
        true => Some(Monitor {
            tokenizer: Arc::new(
                Tokenizer::from_file(&model_dir.join("tokenizer.json"), 256.min(bert_config.max_tokens()))?
                    .pad_with(bert_config.padding_id())?,
            ),
            documents: read_lee50(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../text/data/lee50"))?.documents,
            device: device.clone(),
        }),
        false => None,
    };
    let fit_started = started.elapsed().as_secs_f64();
    let (summary, model, train_seconds) = match &source {
        Source::Memory(loader) => train_maybe_cached(&cli, model, monitor, loader)?,
        Source::Stream(loader) => train_maybe_cached(&cli, model, monitor, loader)?,
    };
    // Every process tokenized its own share.
    let mut truncated = [tokenizer.truncated() as f32];
    processes.all_reduce_sum(&mut truncated)?;
    let truncated = truncated[0] as usize;
    if !leader {
        // Rank 0 evaluates, exports and reports.
        return Ok(json!({}));
    }
    if truncated > 0 {
        eprintln!(
            "{truncated} training sentences were longer than --max-length {} tokens and cut to it (as SimCSE does)",
            cli.max_length
        );
    }
    // The untrained model's figure comes from the weights on disk, after training: the evaluation
    // is deterministic, and training starts seconds sooner.
    let before = lee50(&SentenceEncoder::from_folder(&model_dir, &device)?)?;
    eprintln!("Lee-50 before: Pearson {:.4}, Spearman {:.4}", before.0, before.1);
    let (bert, store) = model.into_parts();
    let eval_tokenizer = Tokenizer::from_file(&model_dir.join("tokenizer.json"), 256.min(bert_config.max_tokens()))?
        .pad_with(bert_config.padding_id())?;
    let encoder = SentenceEncoder::new(bert, store, eval_tokenizer, SentencePooling::Mean, true, &device);
    let (after, documents_z, documents) = lee50_with_embeddings(&encoder)?;
    let after = (after.pearson, after.spearman);
    eprintln!("Lee-50 after: Pearson {:.4}, Spearman {:.4}", after.0, after.1);
    if let Some(dir) = &cli.export {
        encoder.save(dir)?;
        eprintln!("exported a sentence-transformers folder: {}", dir.display());
    }
    if let Some(dir) = flags.run_dir() {
        plot_run(&dir, None)?;
    }
    println!("Lee-50 (1,225 document pairs)   Pearson  Spearman");
    println!("before                          {:>7.4}  {:>8.4}", before.0, before.1);
    println!("after {} steps of SimCSE {:>9.4}  {:>8.4}", summary.steps, after.0, after.1);
    if let Some(path) = &flags.save_embeddings {
        // The evaluation set: Lee-50's documents, in file order (no labels: all 0).
        save_embeddings(path, &documents_z, &vec![0; documents.len()])?;
    }
    let figures = json!({
        "example": "simcse",
        "steps": summary.steps,
        "batch_size": batch_size,
        "grad_cache_chunk": cli.grad_cache_chunk,
        "last_loss": summary.last_loss,
        "corpus_seconds": (corpus_seconds * 100.0).round() / 100.0,
        "left_out": left_out,
        "truncated_sentences": truncated,
        "train_seconds": (train_seconds * 10.0).round() / 10.0,
        // From the program's start: corpus and model.
        "training_started_seconds": (fit_started * 10.0).round() / 10.0,
        // ... and the first step.
        "first_step_seconds": summary.first_step_seconds.map(|s| ((fit_started + s) * 10.0).round() / 10.0),
        "steps_per_second": if train_seconds > 0.0 { summary.steps as f64 / train_seconds } else { 0.0 },
        "lee50_before": { "pearson": before.0, "spearman": before.1 },
        "lee50_after": { "pearson": after.0, "spearman": after.1 },
        "wall_seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    let items = |rows: &[usize]| {
        Ok(Items {
            content: Content::Sentences(rows.iter().map(|&r| documents[r].clone()).collect()),
            ..Items::default()
        })
    };
    write_views(flags, &figures, Some(Shown { name: "lee50_documents", embeddings: &documents_z, items: &items }))?;
    Ok(figures)
}

/// The corpus as opened: indexed for streaming, or its sentences drawn into memory.
enum Opened {
    Stream(Box<TextCorpus>),
    Memory(Vec<String>),
}

/// Indexes `--data` (with `--stream`) or reads and draws `--sentences` of it, with the seconds
/// it took.
fn open_corpus(cli: &Cli, data: &Path, format: CorpusFormat) -> Result<(Opened, f64)> {
    let started = Instant::now();
    let opened = if cli.stream {
        Opened::Stream(Box::new(TextCorpus::open(data, format, (40, 300))?))
    } else {
        let mut sentences = read_corpus(data, format, (40, 300))?;
        sentences.shuffle(&mut named_rng(cli.common.seed, "simcse-corpus"));
        let wanted = if cli.common.quick { cli.sentences.min(256) } else { cli.sentences };
        sentences.truncate(wanted);
        Opened::Memory(sentences)
    };
    Ok((opened, started.elapsed().as_secs_f64()))
}

/// The sentences in memory, or streamed from a corpus of any size.
enum Source {
    Memory(Loader<Vec<String>, TwoViews<Identity>, CollateSentences>),
    Stream(StreamLoader<TextCorpus, TwoViews<Identity>, CollateSentences>),
}

/// [`train`], through gradient caching with --grad-cache-chunk.
fn train_maybe_cached<S: BatchSource<Batch = SentenceBatch>>(
    cli: &Cli,
    model: SimCse,
    monitor: Option<Monitor>,
    loader: &S,
) -> Result<(Summary, SimCse, f64)> {
    match cli.grad_cache_chunk {
        Some(chunk) => {
            let (summary, model, seconds) =
                train(cli, GradCache::new(model, chunk)?, GradCache::inner, monitor, loader)?;
            Ok((summary, model.into_inner(), seconds))
        }
        None => train(cli, model, |m| m, monitor, loader),
    }
}

/// What the collapse monitor embeds every epoch: Lee-50's documents through the evaluation's
/// tokenizer (rank 0 only).
#[derive(Clone)]
struct Monitor {
    tokenizer: Arc<Tokenizer>,
    documents: Vec<String>,
    device: candle_core::Device,
}

/// The reference recipe's training run on `loader`: (summary, trained model, seconds).
fn train<S: BatchSource<Batch = SentenceBatch>, O: Objective<Batch = SentenceBatch> + 'static>(
    cli: &Cli,
    model: O,
    simcse: fn(&O) -> &SimCse,
    monitor: Option<Monitor>,
    loader: &S,
) -> Result<(Summary, O, f64)> {
    let flags = &cli.common;
    let mut trainer_config = TrainerConfig {
        epochs: flags.epochs.unwrap_or(1),
        max_steps: flags.max_steps,
        lr: cli.lr,
        optimizer: OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 },
        clip_grad_norm: Some(1.0),
        checkpoint_every: Some(100),
        keep_last: 2,
        progress: true,
        ..TrainerConfig::default()
    };
    // The schedule spans the run: --max-steps shortens it as it shortens the run.
    let total_steps = trainer_config.total_steps(loader.batches_per_epoch());
    trainer_config.schedule = Schedule::WarmupLinear { warmup_steps: 0, total_steps };
    let mut trainer = flags.start(Trainer::new(trainer_config, model)?)?;
    // The collapse statistics and uniformity of Lee-50's documents (eval mode: no dropout mask
    // is drawn), every epoch.
    if let Some(m) = monitor {
        trainer.add_collapse_monitor(1, move |o: &mut O, _| {
            let parts = m
                .documents
                .chunks(64)
                .map(|chunk| {
                    let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    Ok(simcse(o).embed(&m.tokenizer.encode(&refs, &m.device)?, false)?)
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Tensor::cat(&parts, 0)?)
        });
    }
    let fit_started = Instant::now();
    let summary = trainer.fit(loader)?;
    flags.stop_if_interrupted(&summary)?;
    Ok((summary, trainer.into_objective(), fit_started.elapsed().as_secs_f64()))
}

fn main() {
    finish(run(Cli::parse()));
}
