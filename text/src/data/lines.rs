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
fn collapsed_chars(s: &str) -> usize {
    let (mut chars, mut words) = (0usize, 0usize);
    for word in s.split_whitespace() {
        chars += word.chars().count();
        words += 1;
    }
    chars + words.saturating_sub(1)
}

/// The kept length ([`collapsed_chars`]) of every line of a block, as
/// `String::from_utf8_lossy(bytes).lines().map(collapsed_chars)` gives them, numbered from 0.
/// Valid UTF-8 (checked at memory speed) is measured eight bytes at a time where a line is ASCII:
/// the opening pass over a gigabyte of lines spends its time here.
pub(super) fn line_lengths(bytes: &[u8]) -> Vec<(usize, usize)> {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.lines().map(kept_length).enumerate().collect(),
        Err(_) => String::from_utf8_lossy(bytes).lines().map(collapsed_chars).enumerate().collect(),
    }
}

/// The line breaks in `bytes`, eight bytes at a time (the sequential part of opening a corpus).
pub(super) fn count_line_breaks(bytes: &[u8]) -> usize {
    let mut chunks = bytes.chunks_exact(8);
    let mut count = 0usize;
    for chunk in &mut chunks {
        count += zero_bytes(u64::from_le_bytes(chunk.try_into().unwrap_or_default()) ^ (u64::from(b'\n') * ONES))
            .count_ones() as usize;
    }
    count + chunks.remainder().iter().filter(|&&b| b == b'\n').count()
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Each byte's high bit where the byte of `t` is zero (exact: no carry crosses a byte).
fn zero_bytes(t: u64) -> u64 {
    !(((t & !HIGH) + !HIGH) | t) & HIGH
}

/// Each byte's high bit where the byte (ASCII, below 0x80) is whitespace as `char::is_whitespace`
/// has it: space, or tab to carriage return (9 to 13: tab, line feed, vertical tab, form feed,
/// carriage return; `u8::is_ascii_whitespace` leaves out the vertical tab).
fn space_bits(w: u64) -> u64 {
    let is_space = zero_bytes(w ^ (0x20 * ONES));
    // High bit where the byte is at least 9, and where at least 14.
    let at_least = |n: u64| ((w | HIGH) - n * ONES) & HIGH;
    is_space | (at_least(9) & !at_least(14))
}

/// The kept length of a sentence ([`collapsed_chars`]), eight bytes at a time where it is ASCII.
pub(super) fn kept_length(s: &str) -> usize {
    ascii_collapsed_chars(s.as_bytes()).unwrap_or_else(|| collapsed_chars(s))
}

/// [`collapsed_chars`] of an ASCII line, eight bytes at a time (non-space bytes, plus the
/// spaces between words: words are counted where a non-space byte follows a space or the
/// start); `None` when the line is not ASCII.
fn ascii_collapsed_chars(line: &[u8]) -> Option<usize> {
    let (mut chars, mut words, mut any_high) = (0u32, 0u32, 0u64);
    // The previous byte's space bit, at the first byte's high bit (the start counts as a space).
    let mut carry = 0x80u64;
    let mut word = |w: u64, valid: u64| {
        any_high |= w & valid;
        let space = space_bits(w) & valid;
        let starts = !space & valid & ((space << 8) | carry);
        chars += (valid & !space).count_ones();
        words += starts.count_ones();
        carry = (space >> 56) & 0x80;
    };
    let mut chunks = line.chunks_exact(8);
    for chunk in &mut chunks {
        word(u64::from_le_bytes(chunk.try_into().unwrap_or_default()), HIGH);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        word(u64::from_le_bytes(last), HIGH >> (8 * (8 - rest.len())));
    }
    (any_high == 0).then(|| (chars + words.saturating_sub(1)) as usize)
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
        let line = lines_before + count_line_breaks(&bytes[..last]) + 1;
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
