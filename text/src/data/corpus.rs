//! Text corpora of any size: indexed in one pass when opened (where each block of about 16 KiB
//! starts, and how many sentences it holds), then read a block at a time, so that a corpus of
//! gigabytes trains through `contrastive_core::data::StreamLoader` in the memory of one window.

use super::{split_sentences, CorpusFormat};
use contrastive_core::data::Blocks;
use contrastive_core::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Bytes of text per block, about: small enough that a window of blocks comes from many places
/// in the corpus, large enough that the index stays small (64 entries per MiB).
const BLOCK_BYTES: usize = 16 * 1024;

/// Where a block is: its file, its byte range in the (decompressed) text, its first line.
#[derive(Clone, Debug)]
struct Block {
    file: usize,
    offset: u64,
    bytes: usize,
    first_line: usize,
}

/// A gzip stream positioned at `offset` of its decompressed text.
struct GzCursor {
    offset: u64,
    reader: BufReader<flate2::read::MultiGzDecoder<File>>,
}

/// A corpus of sentences in text files, read a block at a time: a file, or every file of a
/// folder (sorted by name) whose extension fits the format (`.txt` for lines and documents,
/// `.jsonl` for JSON lines), each plain or gzipped (`.gz`, found by its magic bytes). Sentences
/// are kept when their length in characters, after whitespace runs collapse to one space, is
/// within `chars` (inclusive), as [`read_corpus`](super::read_corpus) keeps them.
///
/// Opening reads every file once to index it and to check it: a JSON line that is not an object
/// with the named string field is an error naming the file, the line and the field; invalid
/// UTF-8 is replaced (U+FFFD) with a warning naming the file and the first such line. Blocks of
/// a plain file are read on their own, in any order; a gzip file cannot seek, so its blocks form
/// one run that the loader reads in order.
pub struct TextCorpus {
    files: Vec<PathBuf>,
    gzip: Vec<bool>,
    format: CorpusFormat,
    chars: (usize, usize),
    blocks: Vec<Block>,
    lens: Vec<usize>,
    cursors: Mutex<HashMap<usize, GzCursor>>,
}

impl TextCorpus {
    /// Indexes `path` (a file or a folder); a corpus without a kept sentence is an error.
    pub fn open(path: &Path, format: CorpusFormat, chars: (usize, usize)) -> Result<Self> {
        let files = corpus_files(path, &format)?;
        let mut corpus = Self {
            gzip: Vec::with_capacity(files.len()),
            files,
            format,
            chars,
            blocks: Vec::new(),
            lens: Vec::new(),
            cursors: Mutex::new(HashMap::new()),
        };
        for f in 0..corpus.files.len() {
            corpus.index_file(f)?;
        }
        if corpus.lens.is_empty() {
            return Err(Error::in_file(
                path,
                None,
                format!("no sentence of {} to {} characters in {} file(s)", chars.0, chars.1, corpus.files.len()),
            ));
        }
        Ok(corpus)
    }

    /// The files read, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The number of sentences kept.
    pub fn len(&self) -> usize {
        self.lens.iter().sum()
    }

    /// Whether no sentence is kept (never, for an opened corpus).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn open_text(&self, file: usize) -> Result<(Box<dyn BufRead + Send>, bool)> {
        let path = &self.files[file];
        let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut magic = [0u8; 2];
        let gz = f.read(&mut magic).map_err(|e| Error::io(path, e))? == 2 && magic == [0x1f, 0x8b];
        f.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
        let reader: Box<dyn BufRead + Send> = if gz {
            Box::new(BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(f)))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, f))
        };
        Ok((reader, gz))
    }

    /// One pass over a file: block boundaries (where the format allows a cut) and their counts.
    fn index_file(&mut self, file: usize) -> Result<()> {
        let (mut reader, gz) = self.open_text(file)?;
        self.gzip.push(gz);
        let path = self.files[file].clone();
        let (mut block, mut line) = (Vec::with_capacity(2 * BLOCK_BYTES), Vec::new());
        let (mut offset, mut block_offset, mut line_no, mut block_line) = (0u64, 0u64, 0usize, 1usize);
        let (mut sentence_ended, mut bad_utf8) = (false, None::<(usize, usize)>);
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(|e| read_error(&path, gz, e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let text = String::from_utf8_lossy(&line);
            if let std::borrow::Cow::Owned(_) = text {
                bad_utf8 = Some(bad_utf8.map_or((line_no, 1), |(first, count)| (first, count + 1)));
            }
            let starts_sentence = text.trim_start().starts_with(|c: char| c.is_ascii_uppercase());
            let cut = block.len() >= BLOCK_BYTES
                && match self.format {
                    CorpusFormat::Documents => sentence_ended && starts_sentence,
                    _ => true,
                };
            if cut {
                self.push_block(file, block_offset, &block, block_line)?;
                block.clear();
                (block_offset, block_line) = (offset, line_no);
            }
            if !text.trim().is_empty() {
                sentence_ended = text.trim_end().ends_with(['.', '!', '?']);
            }
            block.extend_from_slice(&line);
            offset += n as u64;
        }
        if !block.is_empty() {
            self.push_block(file, block_offset, &block, block_line)?;
        }
        if let Some((first, count)) = bad_utf8 {
            tracing::warn!(file = %path.display(), first_line = first, lines = count, "invalid UTF-8 replaced by U+FFFD");
        }
        Ok(())
    }

    fn push_block(&mut self, file: usize, offset: u64, bytes: &[u8], first_line: usize) -> Result<()> {
        let count = self.sentences(file, bytes, first_line)?.len();
        if count > 0 {
            self.blocks.push(Block { file, offset, bytes: bytes.len(), first_line });
            self.lens.push(count);
        }
        Ok(())
    }

    /// The kept sentences of a block's bytes.
    fn sentences(&self, file: usize, bytes: &[u8], first_line: usize) -> Result<Vec<String>> {
        let text = String::from_utf8_lossy(bytes);
        let collapse = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let candidates: Vec<String> = match &self.format {
            CorpusFormat::Lines => text.lines().map(collapse).collect(),
            CorpusFormat::Documents => split_sentences(&text),
            CorpusFormat::JsonLines { field } => {
                let mut out = Vec::new();
                for (k, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let at = first_line + k;
                    let value: serde_json::Value = serde_json::from_str(line)
                        .map_err(|e| Error::in_file(&self.files[file], Some(at), format!("not a JSON line: {e}")))?;
                    let s = match value.get(field.as_str()) {
                        Some(serde_json::Value::String(s)) => s,
                        Some(other) => {
                            let kind = match other {
                                serde_json::Value::Null => "null",
                                serde_json::Value::Bool(_) => "a boolean",
                                serde_json::Value::Number(_) => "a number",
                                serde_json::Value::Array(_) => "an array",
                                _ => "an object",
                            };
                            return Err(Error::in_field(&self.files[file], at, field, format!("{kind}, not a string")));
                        }
                        None => {
                            let what = if value.is_object() { "missing" } else { "the line is not a JSON object" };
                            return Err(Error::in_field(&self.files[file], at, field, what));
                        }
                    };
                    out.push(collapse(s));
                }
                out
            }
        };
        Ok(candidates.into_iter().filter(|s| (self.chars.0..=self.chars.1).contains(&s.chars().count())).collect())
    }

    /// The bytes of `block` from a gzip file, continuing the file's stream when it stands there.
    fn read_gzip(&self, block: &Block) -> Result<Vec<u8>> {
        let path = &self.files[block.file];
        let mut cursors = self.cursors.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut cursor = match cursors.remove(&block.file) {
            Some(c) if c.offset <= block.offset => c,
            _ => {
                let f = File::open(path).map_err(|e| Error::io(path, e))?;
                GzCursor { offset: 0, reader: BufReader::new(flate2::read::MultiGzDecoder::new(f)) }
            }
        };
        let skip = block.offset - cursor.offset;
        let skipped = std::io::copy(&mut (&mut cursor.reader).take(skip), &mut std::io::sink())
            .map_err(|e| read_error(path, true, e))?;
        let mut bytes = vec![0u8; block.bytes];
        if skipped < skip {
            return Err(changed(path));
        }
        cursor.reader.read_exact(&mut bytes).map_err(|e| read_error(path, true, e))?;
        cursor.offset = block.offset + block.bytes as u64;
        cursors.insert(block.file, cursor);
        Ok(bytes)
    }
}

fn read_error(path: &Path, gz: bool, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => changed(path),
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData if gz => {
            Error::in_file(path, None, format!("not a valid gzip stream: {e}"))
        }
        _ => Error::io(path, e),
    }
}

fn changed(path: &Path) -> Error {
    Error::in_file(path, None, "shorter than when the corpus was indexed: the file changed")
}

/// The corpus files of `path`: the file itself, or the folder's files of the format's extension.
fn corpus_files(path: &Path, format: &CorpusFormat) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        if !path.exists() {
            return Err(Error::io(path, std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
        return Ok(vec![path.to_path_buf()]);
    }
    let extension = match format {
        CorpusFormat::JsonLines { .. } => "jsonl",
        _ => "txt",
    };
    let fits = |p: &Path| {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        name.ends_with(&format!(".{extension}")) || name.ends_with(&format!(".{extension}.gz"))
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && fits(p))
        .collect();
    files.sort();
    Ok(files)
}

impl Blocks for TextCorpus {
    type Item = String;

    fn block_lens(&self) -> &[usize] {
        &self.lens
    }

    fn runs(&self) -> Vec<Range<usize>> {
        let mut runs: Vec<Range<usize>> = Vec::new();
        for (b, block) in self.blocks.iter().enumerate() {
            match runs.last_mut() {
                Some(run) if self.gzip[block.file] && self.blocks[run.start].file == block.file => run.end = b + 1,
                _ => runs.push(b..b + 1),
            }
        }
        runs
    }

    fn read_block(&self, b: usize) -> Result<Vec<String>> {
        let block = self.blocks.get(b).ok_or_else(|| Error::index("corpus blocks", b, self.blocks.len()))?;
        let path = &self.files[block.file];
        let bytes = if self.gzip[block.file] {
            self.read_gzip(block)?
        } else {
            let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
            f.seek(SeekFrom::Start(block.offset)).map_err(|e| Error::io(path, e))?;
            let mut bytes = vec![0u8; block.bytes];
            f.read_exact(&mut bytes).map_err(|e| read_error(path, false, e))?;
            bytes
        };
        let sentences = self.sentences(block.file, &bytes, block.first_line)?;
        if sentences.len() != self.lens[b] {
            return Err(Error::in_file(
                path,
                Some(block.first_line),
                format!("{} sentences where the index counted {}: the file changed", sentences.len(), self.lens[b]),
            ));
        }
        Ok(sentences)
    }
}
