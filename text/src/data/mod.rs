//! Sentence data: corpora from text files (in memory with [`read_corpus`], or indexed and read a
//! block at a time with [`TextCorpus`]), STS-style pairs with scores, and the Lee-50 document
//! similarity set (Lee, Pincombe and Welsh 2005).

mod corpus;
mod json_field;
mod lines;

pub use corpus::{LeftOut, TextCorpus};
pub use lines::MAX_LINE_BYTES;

use contrastive_core::data::Blocks;
use contrastive_core::{Error, Result};
use std::path::Path;

/// How a corpus file holds its sentences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorpusFormat {
    /// One sentence per line.
    Lines,
    /// Running text, split into sentences after `.`, `!` or `?` followed by space and a capital.
    Documents,
    /// One JSON object per line (`.jsonl`), the sentence in the string field `field`.
    JsonLines {
        /// The field that holds the text, e.g. `text`.
        field: String,
    },
}

/// Splits running text into sentences: whitespace runs collapse to one space, and a sentence ends
/// after `.`, `!` or `?` when a space and a capital letter follow (`(?<=[.!?])\s+(?=[A-Z])`).
pub fn split_sentences(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut sentences = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        current.push(w);
        let ends = w.ends_with(['.', '!', '?']);
        let next_capital = words.get(i + 1).and_then(|n| n.chars().next()).is_some_and(|c| c.is_ascii_uppercase());
        if ends && next_capital {
            sentences.push(current.join(" "));
            current.clear();
        }
    }
    if !current.is_empty() {
        sentences.push(current.join(" "));
    }
    sentences
}

/// Sentences of a file, or of every file of a folder that fits the format (see [`TextCorpus`]),
/// kept when their length in characters is within `chars` (inclusive), all in memory. An empty
/// result is an error naming the path. For a corpus larger than memory, open a [`TextCorpus`] and
/// train through `contrastive_core::data::StreamLoader`.
pub fn read_corpus(path: &Path, format: CorpusFormat, chars: (usize, usize)) -> Result<Vec<String>> {
    let corpus = TextCorpus::open(path, format, chars)?;
    let mut out = Vec::with_capacity(corpus.len());
    for b in 0..corpus.block_lens().len() {
        out.extend(corpus.read_block(b)?);
    }
    Ok(out)
}

/// Sentence pairs with a similarity score, from a TSV of `sentence 1 <tab> sentence 2 <tab>
/// score` lines (STS-B style; a header line whose score is not a number is skipped).
pub fn read_sts_tsv(path: &Path) -> Result<Vec<(String, String, f64)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != 3 {
            let message = format!("{} fields, expected 3 (sentence, sentence, score)", fields.len());
            return Err(Error::in_file(path, Some(i + 1), message));
        }
        match fields[2].trim().parse::<f64>() {
            Ok(score) if score.is_finite() => pairs.push((fields[0].to_string(), fields[1].to_string(), score)),
            Ok(score) => return Err(Error::in_field(path, i + 1, "score", format!("{score} is not finite"))),
            Err(_) if i == 0 => continue,
            Err(_) => return Err(Error::in_field(path, i + 1, "score", format!("`{}` is not a number", fields[2]))),
        }
    }
    if pairs.is_empty() {
        return Err(Error::in_file(path, None, "no sentence pair"));
    }
    Ok(pairs)
}

/// The Lee-50 set: 50 news documents and the mean human similarity of each of their 1,225 pairs.
#[derive(Clone, Debug)]
pub struct Lee50 {
    /// The documents, in file order.
    pub documents: Vec<String>,
    /// `(i, j, similarity)` for every pair i < j (the diagonal is ignored).
    pub pairs: Vec<(usize, usize, f64)>,
}

/// Reads `lee.cor` (one document per line, Latin-1) and `similarities0-1.txt` (a 50 x 50 matrix,
/// upper triangle used) from `dir`.
pub fn read_lee50(dir: &Path) -> Result<Lee50> {
    let cor = dir.join("lee.cor");
    let bytes = std::fs::read(&cor).map_err(|e| Error::io(&cor, e))?;
    // Latin-1: every byte is the code point of the same value.
    let text: String = bytes.iter().map(|&b| b as char).collect();
    let documents: Vec<String> = text.split('\n').map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    let sim = dir.join("similarities0-1.txt");
    let matrix_text = std::fs::read_to_string(&sim).map_err(|e| Error::io(&sim, e))?;
    let rows: Vec<Vec<f64>> = matrix_text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            l.split_whitespace()
                .map(|v| {
                    v.parse::<f64>().map_err(|_| Error::in_file(&sim, Some(i + 1), format!("`{v}` is not a number")))
                })
                .collect()
        })
        .collect::<Result<_>>()?;
    let n = documents.len();
    let wrong_row = rows.iter().position(|r| r.len() != n);
    if rows.len() != n || wrong_row.is_some() {
        // Rows count the non-empty lines.
        let found = match wrong_row {
            Some(i) => format!("row {} has {} values", i + 1, rows[i].len()),
            None => format!("{} rows", rows.len()),
        };
        return Err(Error::in_file(
            &sim,
            None,
            format!("expected a {n} x {n} matrix for the {n} documents of {}; {found}", cor.display()),
        ));
    }
    let pairs = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).map(|(i, j)| (i, j, rows[i][j])).collect();
    Ok(Lee50 { documents, pairs })
}
