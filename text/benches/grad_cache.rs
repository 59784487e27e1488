//! Gradient caching's memory and speed: the SimCSE step (forward twice, InfoNCE, backward) of a
//! MiniLM-shaped BERT (randomly initialised, 32 tokens a sentence, dropout on) at batch 64, 256,
//! 1024 and 4096 through `GradCache` in chunks of 64, beside the plain step at 64 and 256 (larger
//! plain steps do not fit this machine's memory). Each configuration runs in a process of its own,
//! so its peak resident memory (`VmHWM`) is its own; the time is the median of its steps after the
//! first (one step at 1024 and 4096).
//!
//!     cargo bench -p contrastive-text --bench grad_cache
//!     GRAD_CACHE_BATCHES=64,256 cargo bench -p contrastive-text --bench grad_cache

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use candle_core::{Device, Tensor};
use contrastive_core::grad_cache::GradCache;
use contrastive_core::train::Objective;
use contrastive_text::{BertConfig, SentenceBatch, SimCse, SimCseConfig, SimCsePooling, TokenBatch};
use std::process::Command;
use std::time::Instant;

const CHILD: &str = "GRAD_CACHE_BENCH_CHILD";
const CHUNK: usize = 64;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    kb / 1024.0
}

/// One configuration: `steps` steps of batch `batch`, cached in chunks of 64 or plain; prints
/// "seconds_per_step peak_mb".
fn child(batch: usize, cached: bool, steps: usize) {
    contrastive_core::alloc::keep_freed_memory();
    contrastive_core::candle_pool::configure_candle_pool(0);
    let config = SimCseConfig { temperature: 0.05, pooling: SimCsePooling::Mean };
    let model = SimCse::new(config, &BertConfig::minilm_l6(), 0, &Device::Cpu).unwrap();
    let ids: Vec<u32> = (0..batch * 32).map(|i| 100 + (i * 7919 % 30000) as u32).collect();
    let ids = Tensor::from_vec(ids, (batch, 32), &Device::Cpu).unwrap();
    let (type_ids, attention_mask) = (ids.zeros_like().unwrap(), ids.ones_like().unwrap());
    let batch =
        SentenceBatch { anchors: TokenBatch { ids, type_ids, attention_mask }, positives: None, hard_negatives: None };
    let mut objective: Box<dyn FnMut() -> f64> = if cached {
        let mut m = GradCache::new(model, CHUNK).unwrap();
        Box::new(move || {
            let t = Instant::now();
            m.loss(&batch).unwrap().backward().unwrap();
            t.elapsed().as_secs_f64()
        })
    } else {
        let mut m = model;
        Box::new(move || {
            let t = Instant::now();
            m.loss(&batch).unwrap().backward().unwrap();
            t.elapsed().as_secs_f64()
        })
    };
    // The first step also faults in fresh memory: the median of the others, when there are.
    let mut times: Vec<f64> = (0..steps).map(|_| objective()).collect();
    if times.len() > 1 {
        times.remove(0);
    }
    times.sort_by(f64::total_cmp);
    println!("{} {}", times[times.len() / 2], peak_rss_mb());
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        let parts: Vec<usize> = spec.split(',').map(|v| v.parse().unwrap()).collect();
        return child(parts[0], parts[1] == 1, parts[2]);
    }
    // `cargo bench` passes --bench; any other argument is a filter we do not use.
    let batches: Vec<usize> = std::env::var("GRAD_CACHE_BATCHES")
        .unwrap_or_else(|_| "64,256,1024,4096".into())
        .split(',')
        .map(|v| v.trim().parse().expect("GRAD_CACHE_BATCHES: batch sizes separated by commas"))
        .collect();
    let exe = std::env::current_exe().unwrap();
    println!("SimCSE step, MiniLM shape, 32 tokens, chunks of {CHUNK}, {} threads", rayon_threads());
    println!("{:>6} {:>8} {:>10} {:>14} {:>10}", "batch", "step", "seconds", "ms / sentence", "peak MB");
    for &batch in &batches {
        for cached in [false, true] {
            if !cached && batch > 256 {
                continue;
            }
            // The median of 4 steps after the first at batch 64, of 2 at 256, the one step where
            // a step takes minutes (the machine's noise is some 15% a step).
            let steps = match batch {
                0..=64 => 5,
                65..=256 => 3,
                _ => 1,
            };
            let out = Command::new(&exe).env(CHILD, format!("{batch},{},{steps}", u8::from(cached))).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let mut fields = text.split_whitespace().map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
            let (seconds, peak) = (fields.next().unwrap_or(f64::NAN), fields.next().unwrap_or(f64::NAN));
            let name = if cached { "cached" } else { "plain" };
            println!("{batch:>6} {name:>8} {seconds:>10.2} {:>14.2} {peak:>10.0}", 1000.0 * seconds / batch as f64);
        }
    }
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
