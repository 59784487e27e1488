//! Opening a corpus of sentences a line (`TextCorpus::open`: the one pass that finds the blocks
//! and counts the kept sentences) on 256 MB of generated lines, in MB/s: what decides how soon a
//! `simcse --stream` run over a file of gigabytes starts training.
//!
//!     cargo bench -p contrastive-text --bench corpus_index
#![allow(missing_docs)] // criterion_group! generates an undocumented function

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use contrastive_text::{CorpusFormat, TextCorpus};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::io::Write;
use std::time::Duration;

/// Lines of 20 to 200 characters from a fixed vocabulary (a line of every 50 too short to keep).
fn write_corpus(path: &std::path::Path, bytes: usize) -> usize {
    let words =
        ["the", "committee", "reported", "on", "a", "new", "treaty", "with", "several", "nations", "of", "peace"];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let (mut written, mut state) = (0usize, 1u64);
    while written < bytes {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let n = 4 + (state >> 59) as usize * 2;
        let mut line = String::from("The");
        for k in 0..n {
            line.push(' ');
            line.push_str(words[(state >> (k % 50)) as usize % words.len()]);
        }
        line.push_str(".\n");
        written += line.len();
        out.write_all(line.as_bytes()).unwrap();
    }
    written
}

fn bench(c: &mut Criterion) {
    contrastive_core::alloc::keep_freed_memory();
    contrastive_core::candle_pool::configure_candle_pool(0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines.txt");
    let bytes = write_corpus(&path, 256 << 20);
    let mut group = c.benchmark_group("corpus_index");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    group.bench_function("lines_256mb", |b| {
        b.iter(|| TextCorpus::open(&path, CorpusFormat::Lines, (40, 300)).unwrap().len())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
