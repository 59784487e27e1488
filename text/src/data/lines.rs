//! Lines of a corpus file at the byte level: reading one without ever holding more than
//! [`MAX_LINE_BYTES`] of it, the errors for a line past that, UTF-8 checks of a block, and the
//! kept length of a sentence without building it.

use contrastive_core::{Error, Result};
use std::io::BufRead;
use std::path::Path;

/// A line longer than this is not a sentence, a document's paragraph or a JSON record: the file
/// is binary or has no line breaks, and reading on would hold all of it in memory.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// The length in characters of `s` with whitespace runs collapsed to one space and trimmed, as
/// the sentence is kept; without building it.
pub(super) fn collapsed_chars(s: &str) -> usize {
    let (mut chars, mut words) = (0usize, 0usize);
    for word in s.split_whitespace() {
        chars += word.chars().count();
        words += 1;
    }
    chars + words.saturating_sub(1)
}

/// A line past [`MAX_LINE_BYTES`], at `line` of `path`.
pub(super) fn too_long_line(path: &Path, line: usize) -> Error {
    Error::in_file(
        path,
        Some(line),
        format!(
            "a line longer than {} MiB: not text of sentences, paragraphs or JSON records \
             (a binary file, or one without line breaks?)",
            MAX_LINE_BYTES >> 20
        ),
    )
}

/// An error if the unfinished last line of `bytes` (which follow `lines_before` lines) is
/// already longer than [`MAX_LINE_BYTES`].
pub(super) fn check_last_line(path: &Path, bytes: &[u8], lines_before: usize) -> Result<()> {
    let last = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if bytes.len() - last > MAX_LINE_BYTES {
        let line = lines_before + bytes[..last].iter().filter(|&&b| b == b'\n').count() + 1;
        return Err(too_long_line(path, line));
    }
    Ok(())
}

/// The first line of `bytes` (numbered from `first_line`) that is not valid UTF-8, and how many
/// are not.
pub(super) fn invalid_utf8_lines(bytes: &[u8], first_line: usize) -> (Option<usize>, usize) {
    if std::str::from_utf8(bytes).is_ok() {
        return (None, 0);
    }
    let bad: Vec<usize> = bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| std::str::from_utf8(line).is_err())
        .map(|(k, _)| first_line + k)
        .collect();
    (bad.first().copied(), bad.len())
}

/// Reads up to and including the next `\n` into `line`, as `read_until` does, but stops adding
/// bytes beyond [`MAX_LINE_BYTES`] (the count returned goes on, so the caller sees the length):
/// a file without line breaks is never held whole.
pub(super) fn read_line(reader: &mut dyn BufRead, line: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(total);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() <= MAX_LINE_BYTES {
            line.extend_from_slice(&buf[..take]);
        }
        reader.consume(take);
        total += take;
        if done || total > MAX_LINE_BYTES {
            return Ok(total);
        }
    }
}
