//! Text corpora of any size: indexed in one pass when opened (where each block of about 16 KiB
//! starts, and how many sentences it holds), then read a block at a time, so that a corpus of
//! gigabytes trains through `contrastive_core::data::StreamLoader` in the memory of one window.

use super::json_field::{json_field, Field};
use super::lines::{
    check_last_line, count_line_breaks, invalid_utf8_lines, kept_length, line_lengths, read_line, too_long_line,
    MAX_LINE_BYTES,
};
use super::{split_sentences, CorpusFormat};
use contrastive_core::data::Blocks;
use contrastive_core::{Error, Result};
use rayon::prelude::*;
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

/// Blocks whose sentences are counted together on rayon's threads while the file is indexed.
const BLOCKS_PER_BATCH: usize = 256;

/// What opening a corpus left out, so that nothing is dropped unseen: sentences outside the
/// length bounds, and where the first too long one is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeftOut {
    /// Sentences (or lines) shorter than the lower bound, blank lines aside.
    pub too_short: usize,
    /// Sentences longer than the upper bound.
    pub too_long: usize,
    /// The file and line of the first too long one (for documents, the line its block starts on).
    pub first_too_long: Option<(PathBuf, usize)>,
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
    left_out: LeftOut,
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
            left_out: LeftOut::default(),
            cursors: Mutex::new(HashMap::new()),
        };
        for f in 0..corpus.files.len() {
            corpus.index_file(f)?;
        }
        if let Some((file, line)) = &corpus.left_out.first_too_long {
            tracing::warn!(
                sentences = corpus.left_out.too_long,
                first = %format!("{}:{line}", file.display()),
                "sentences longer than {} characters left out",
                chars.1
            );
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

    /// What the length bounds left out.
    pub fn left_out(&self) -> &LeftOut {
        &self.left_out
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

    /// One pass over a file: block boundaries (where the format allows a cut) and their counts,
    /// the counting of a batch of blocks spread over rayon's threads. Running text is read a line
    /// at a time (a block ends only where a sentence does); see [`Self::index_lines`] for the rest.
    fn index_file(&mut self, file: usize) -> Result<()> {
        let (mut reader, gz) = self.open_text(file)?;
        self.gzip.push(gz);
        let path = self.files[file].clone();
        if !matches!(self.format, CorpusFormat::Documents) {
            return self.index_lines(file, &mut *reader, gz);
        }
        let (mut block, mut line) = (Vec::with_capacity(2 * BLOCK_BYTES), Vec::new());
        let (mut offset, mut block_offset, mut line_no, mut block_line) = (0u64, 0u64, 0usize, 1usize);
        let (mut sentence_ended, mut bad_utf8) = (false, None::<(usize, usize)>);
        let mut pending: Vec<(Block, Vec<u8>)> = Vec::with_capacity(BLOCKS_PER_BATCH);
        loop {
            line.clear();
            let n = read_line(&mut reader, &mut line).map_err(|e| read_error(&path, gz, e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if n > MAX_LINE_BYTES {
                return Err(too_long_line(&path, line_no));
            }
            let text = String::from_utf8_lossy(&line);
            if let std::borrow::Cow::Owned(_) = text {
                bad_utf8 = Some(bad_utf8.map_or((line_no, 1), |(first, count)| (first, count + 1)));
            }
            let starts_sentence = text.trim_start().starts_with(|c: char| c.is_ascii_uppercase());
            // Running text is cut only between sentences.
            if block.len() >= BLOCK_BYTES && sentence_ended && starts_sentence {
                let bytes = std::mem::replace(&mut block, Vec::with_capacity(2 * BLOCK_BYTES));
                pending.push((Block { file, offset: block_offset, bytes: bytes.len(), first_line: block_line }, bytes));
                if pending.len() == BLOCKS_PER_BATCH {
                    self.count_blocks(std::mem::take(&mut pending))?;
                }
                (block_offset, block_line) = (offset, line_no);
            }
            if !text.trim().is_empty() {
                sentence_ended = text.trim_end().ends_with(['.', '!', '?']);
            }
            block.extend_from_slice(&line);
            offset += n as u64;
        }
        if !block.is_empty() {
            pending.push((Block { file, offset: block_offset, bytes: block.len(), first_line: block_line }, block));
        }
        self.count_blocks(pending)?;
        if let Some((first, count)) = bad_utf8 {
            tracing::warn!(file = %path.display(), first_line = first, lines = count, "invalid UTF-8 replaced by U+FFFD");
        }
        Ok(())
    }

    /// [`Self::index_file`] for a sentence or a record a line, where a block may end at any line
    /// break: the one sequential pass only looks for line breaks (and counts them, for line
    /// numbers); decoding, UTF-8 checks and parsing happen in [`Self::count_blocks`], in parallel.
    fn index_lines(&mut self, file: usize, reader: &mut dyn BufRead, gz: bool) -> Result<()> {
        let path = self.files[file].clone();
        let mut buf: Vec<u8> = Vec::with_capacity(2 << 20);
        let (mut start, mut offset, mut lines_before) = (0usize, 0u64, 0usize);
        let mut pending: Vec<(Block, Vec<u8>)> = Vec::with_capacity(BLOCKS_PER_BATCH);
        let mut bad_utf8 = (None::<usize>, 0usize);
        let mut emit = |this: &mut Self, bytes: &[u8], offset: &mut u64, lines_before: &mut usize| -> Result<()> {
            let block = Block { file, offset: *offset, bytes: bytes.len(), first_line: *lines_before + 1 };
            *offset += bytes.len() as u64;
            *lines_before += count_line_breaks(bytes);
            pending.push((block, bytes.to_vec()));
            if pending.len() == BLOCKS_PER_BATCH {
                let (first, count) = this.count_blocks(std::mem::take(&mut pending))?;
                bad_utf8 = (bad_utf8.0.or(first), bad_utf8.1 + count);
            }
            Ok(())
        };
        loop {
            // Cut every block the buffer holds: at the first line break after BLOCK_BYTES.
            while buf.len() - start >= BLOCK_BYTES {
                let Some(p) = buf[start + BLOCK_BYTES - 1..].iter().position(|&b| b == b'\n') else {
                    check_last_line(&path, &buf[start..], lines_before)?;
                    break;
                };
                let end = start + BLOCK_BYTES + p;
                emit(self, &buf[start..end], &mut offset, &mut lines_before)?;
                start = end;
            }
            buf.drain(..start);
            start = 0;
            let data = reader.fill_buf().map_err(|e| read_error(&path, gz, e))?;
            if data.is_empty() {
                break;
            }
            let n = data.len();
            buf.extend_from_slice(data);
            reader.consume(n);
        }
        if !buf.is_empty() {
            check_last_line(&path, &buf, lines_before)?;
            emit(self, &buf, &mut offset, &mut lines_before)?;
        }
        let (first, count) = self.count_blocks(pending)?;
        bad_utf8 = (bad_utf8.0.or(first), bad_utf8.1 + count);
        if let (Some(first), count) = bad_utf8 {
            tracing::warn!(file = %path.display(), first_line = first, lines = count, "invalid UTF-8 replaced by U+FFFD");
        }
        Ok(())
    }

    /// Counts the kept sentences of blocks (in parallel) and records them in order; blocks
    /// without one are left out of the index.
    /// Returns the first line with invalid UTF-8 among them and how many lines have it.
    fn count_blocks(&mut self, blocks: Vec<(Block, Vec<u8>)>) -> Result<(Option<usize>, usize)> {
        let counted = blocks
            .into_par_iter()
            .map(|(block, bytes)| {
                let lengths: Vec<(usize, usize)> = match &self.format {
                    // Only lengths are needed here: counted without building the strings.
                    CorpusFormat::Lines => line_lengths(&bytes),
                    // Lengths only, from the field borrowed in place.
                    CorpusFormat::JsonLines { field } => {
                        let mut lengths = Vec::new();
                        let text = String::from_utf8_lossy(&bytes);
                        self.json_texts(block.file, &text, block.first_line, field.as_str(), |k, s| {
                            lengths.push((k, kept_length(s)))
                        })?;
                        lengths
                    }
                    CorpusFormat::Documents => self
                        .candidates(block.file, &bytes, block.first_line)?
                        .into_iter()
                        .map(|(k, s)| (k, s.chars().count()))
                        .collect(),
                };
                Ok((self.tally(&lengths), invalid_utf8_lines(&bytes, block.first_line), block))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut bad = (None, 0);
        for (tally, (first_bad, bad_lines), block) in counted {
            bad = (bad.0.or(first_bad), bad.1 + bad_lines);
            self.left_out.too_short += tally.too_short;
            self.left_out.too_long += tally.too_long;
            if self.left_out.first_too_long.is_none() {
                if let Some(k) = tally.first_too_long {
                    let line = match self.format {
                        CorpusFormat::Documents => block.first_line,
                        _ => block.first_line + k,
                    };
                    self.left_out.first_too_long = Some((self.files[block.file].clone(), line));
                }
            }
            if tally.kept > 0 {
                self.blocks.push(block);
                self.lens.push(tally.kept);
            }
        }
        Ok(bad)
    }

    /// Kept, too short and too long candidates, given as (line in the block, length in
    /// characters), blank ones aside, and the line of the first too long one.
    fn tally(&self, lengths: &[(usize, usize)]) -> Tally {
        let mut tally = Tally::default();
        for &(k, n) in lengths {
            if n > self.chars.1 {
                tally.too_long += 1;
                tally.first_too_long.get_or_insert(k);
            } else if n >= self.chars.0 {
                tally.kept += 1;
            } else if n > 0 {
                tally.too_short += 1;
            }
        }
        tally
    }

    /// The kept sentences of a block's bytes.
    fn sentences(&self, file: usize, bytes: &[u8], first_line: usize) -> Result<Vec<String>> {
        let candidates = self.candidates(file, bytes, first_line)?;
        Ok(candidates
            .into_iter()
            .map(|(_, s)| s)
            .filter(|s| (self.chars.0..=self.chars.1).contains(&s.chars().count()))
            .collect())
    }

    /// Every sentence of a block's bytes, whitespace collapsed, each with its line's index in the
    /// block (documents: 0), before the length bounds.
    fn candidates(&self, file: usize, bytes: &[u8], first_line: usize) -> Result<Vec<(usize, String)>> {
        let text = String::from_utf8_lossy(bytes);
        let collapse = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        Ok(match &self.format {
            CorpusFormat::Lines => text.lines().map(collapse).enumerate().collect(),
            CorpusFormat::Documents => split_sentences(&text).into_iter().map(|s| (0, s)).collect(),
            CorpusFormat::JsonLines { field } => {
                let mut out = Vec::new();
                self.json_texts(file, &text, first_line, field, |k, s| out.push((k, collapse(s))))?;
                out
            }
        })
    }

    /// Calls `each` with (line in the block, text) for every JSON line of `text` (blank lines
    /// aside); a line that is not JSON, not an object, or whose field is missing or not a
    /// string is an error naming the file, the line and the field.
    fn json_texts(
        &self,
        file: usize,
        text: &str,
        first_line: usize,
        field: &str,
        mut each: impl FnMut(usize, &str),
    ) -> Result<()> {
        for (k, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = first_line + k;
            let path = &self.files[file];
            match json_field(line, field) {
                Ok(Field::Text(s)) => each(k, &s),
                Ok(Field::NotText(kind)) => {
                    return Err(Error::in_field(path, at, field, format!("{kind}, not a string")))
                }
                Ok(Field::Missing) => return Err(Error::in_field(path, at, field, "missing")),
                Ok(Field::NotObject) => return Err(Error::in_field(path, at, field, "the line is not a JSON object")),
                Err(e) => return Err(Error::in_file(path, Some(at), format!("not a JSON line: {e}"))),
            }
        }
        Ok(())
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

/// Kept and left-out counts of one block.
#[derive(Default)]
struct Tally {
    kept: usize,
    too_short: usize,
    too_long: usize,
    first_too_long: Option<usize>,
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
