//! Sentence data: the splitting rule, corpora, STS TSV and Lee-50, good and bad; a BPE tokenizer
//! trained on SMILES.

use contrastive_core::data::{Blocks, LoaderConfig, StreamLoader, TwoViews, ViewPair};
use contrastive_text::{read_corpus, read_lee50, read_sts_tsv, split_sentences, CorpusFormat, TextCorpus, Tokenizer};
use std::io::Write;
use std::path::Path;

#[test]
fn sentences_split_as_the_reference_regex_does() {
    // Python: re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(text.split()))
    //   -> ['Mr.', 'Speaker, we meet today.', 'Is it late? yes. it is!', 'The end 3.5 percent.', 'Done']
    let text = "Mr. Speaker, we meet\n today.  Is it late? yes. it is! The end 3.5 percent. Done";
    let want = ["Mr.", "Speaker, we meet today.", "Is it late? yes. it is!", "The end 3.5 percent.", "Done"];
    assert_eq!(split_sentences(text), want);
}

#[test]
fn corpora_from_lines_and_documents() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "first line here\n\nsecond   line here\n").unwrap();
    std::fs::write(dir.path().join("b.txt"), "One sentence here. Another one there! tiny").unwrap();
    std::fs::write(dir.path().join("skip.md"), "not read").unwrap();
    let lines = read_corpus(&dir.path().join("a.txt"), CorpusFormat::Lines, (5, 100)).unwrap();
    assert_eq!(lines, ["first line here", "second line here"]);
    let docs = read_corpus(dir.path(), CorpusFormat::Documents, (10, 100)).unwrap();
    assert_eq!(docs, ["first line here second line here", "One sentence here.", "Another one there! tiny"]);
    let err = read_corpus(&dir.path().join("a.txt"), CorpusFormat::Lines, (50, 60)).unwrap_err().to_string();
    assert!(err.contains("a.txt") && err.contains("no sentence of 50 to 60 characters"), "{err}");
}

#[test]
fn sts_pairs_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sts.tsv");
    std::fs::write(&path, "sentence1\tsentence2\tscore\nA cat.\tA feline.\t4.5\nA car.\tA cloud.\t0.2\n").unwrap();
    let pairs = read_sts_tsv(&path).unwrap();
    assert_eq!(pairs, [("A cat.".into(), "A feline.".into(), 4.5), ("A car.".into(), "A cloud.".into(), 0.2)]);
    std::fs::write(&path, "A cat.\tA feline.\t4.5\nA car.\tA cloud.\thigh\n").unwrap();
    let err = read_sts_tsv(&path).unwrap_err().to_string();
    assert!(err.contains("sts.tsv:2: field score") && err.contains("`high`"), "{err}");
    std::fs::write(&path, "A cat.\t4.5\n").unwrap();
    assert!(read_sts_tsv(&path).unwrap_err().to_string().contains("sts.tsv:1: 2 fields"));
}

#[test]
fn lee50_has_50_documents_and_1225_pairs() {
    let lee = read_lee50(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/lee50")).unwrap();
    assert_eq!((lee.documents.len(), lee.pairs.len()), (50, 1225));
    // Latin-1 decoded: the file's raw 0xA3 is a pound sign.
    assert!(lee.documents.iter().any(|d| d.contains('£')));
    assert!(lee.pairs.iter().all(|&(i, j, s)| i < j && (0.0..=1.0).contains(&s)));
    assert_eq!(lee.pairs[0], (0, 1, 0.3));
}

#[test]
fn bpe_trained_on_smiles_merges_frequent_substrings_and_round_trips() {
    use candle_core::Device;
    let smiles = ["c1ccccc1O", "c1ccccc1N", "CC(=O)Oc1ccccc1C(=O)O", "CCO", "c1ccccc1CCN", "CC(C)c1ccccc1"];
    let texts: Vec<&str> = smiles.iter().copied().cycle().take(60).collect();
    let tokenizer = Tokenizer::train_bpe(&texts, 40, 32).unwrap();
    let again = Tokenizer::train_bpe(&texts, 40, 32).unwrap();
    assert!(tokenizer.vocab_size() <= 40 && tokenizer.vocab_size() > 10);
    let batch = tokenizer.encode(&["c1ccccc1O", "CCO"], &Device::Cpu).unwrap();
    let ids = batch.ids.to_vec2::<u32>().unwrap();
    // [CLS] = 2 first, [SEP] = 3 last, [PAD] = 0 after; the benzene ring is fewer tokens than its
    // 8 characters.
    assert_eq!(ids[0][0], 2);
    let len0 = batch.attention_mask.to_vec2::<u32>().unwrap()[0].iter().sum::<u32>() as usize;
    assert_eq!(ids[0][len0 - 1], 3);
    assert!(len0 - 2 < 9, "{:?}", ids[0]);
    assert_eq!(ids, again.encode(&["c1ccccc1O", "CCO"], &Device::Cpu).unwrap().ids.to_vec2::<u32>().unwrap());
    let dir = tempfile::tempdir().unwrap();
    tokenizer.save(&dir.path().join("tokenizer.json")).unwrap();
    let loaded = Tokenizer::from_file(&dir.path().join("tokenizer.json"), 32).unwrap();
    assert_eq!(ids, loaded.encode(&["c1ccccc1O", "CCO"], &Device::Cpu).unwrap().ids.to_vec2::<u32>().unwrap());
    assert!(Tokenizer::train_bpe(&[], 40, 32).is_err());
    assert!(Tokenizer::train_bpe(&texts, 5, 32).err().unwrap().to_string().contains("vocab_size"));
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Line i of a generated corpus: words that say i, of varying length.
fn line(i: usize) -> String {
    format!("sentence number {i} says {} and ends here.", "word ".repeat(i % 13))
}

#[test]
fn a_large_corpus_is_indexed_in_blocks_and_reads_back_exactly() {
    // 6,000 lines (about 400 KB): many blocks, plain and gzipped, one sentence a line.
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..6000).map(|i| line(i) + "\n").collect();
    std::fs::write(dir.path().join("big.txt"), &text).unwrap();
    std::fs::write(dir.path().join("big.txt.gz"), gzip(text.as_bytes())).unwrap();
    let want: Vec<String> = (0..6000).map(|i| line(i).split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    for name in ["big.txt", "big.txt.gz"] {
        let corpus = TextCorpus::open(&dir.path().join(name), CorpusFormat::Lines, (0, 1000)).unwrap();
        assert_eq!(corpus.len(), 6000);
        assert!(corpus.block_lens().len() > 10, "{name}: {} blocks", corpus.block_lens().len());
        let runs = corpus.runs();
        assert_eq!(runs.len(), if name.ends_with(".gz") { 1 } else { corpus.block_lens().len() }, "{name}");
        let all: Vec<String> = (0..corpus.block_lens().len()).flat_map(|b| corpus.read_block(b).unwrap()).collect();
        assert_eq!(all, want, "{name}");
        // Out of order: a gzip block after a later one restarts the stream, and still reads right.
        let last = corpus.block_lens().len() - 1;
        let (late, early) = (corpus.read_block(last).unwrap(), corpus.read_block(1).unwrap());
        assert_eq!(late.last(), want.last());
        assert_eq!(early.len(), corpus.block_lens()[1]);
    }
    // A folder holds both files (sorted: big.txt, big.txt.gz): every sentence twice, read back in
    // memory by read_corpus.
    assert_eq!(read_corpus(dir.path(), CorpusFormat::Lines, (0, 1000)).unwrap().len(), 12_000);

    // Streamed: every sentence once per epoch, the gzip file's blocks read in order, and a resume
    // from batch 40 equals the rest of the epoch.
    let corpus = TextCorpus::open(&dir.path().join("big.txt.gz"), CorpusFormat::Lines, (0, 1000)).unwrap();
    let config = LoaderConfig { batch_size: 64, seed: 3, shuffle: true, drop_last: true, threads: 2 };
    let same = |s: String, _: &mut dyn rand::RngCore| Ok(s);
    let collate = |b: Vec<ViewPair<String>>| Ok(b.into_iter().map(|v| v.first).collect::<Vec<String>>());
    let loader = StreamLoader::new(corpus, TwoViews(same), collate, config, 1000).unwrap();
    let epoch: Vec<Vec<String>> = loader.epoch_from(0, 0).map(|b| b.unwrap()).collect();
    assert_eq!(epoch.len(), 6000 / 64);
    let mut seen: Vec<&String> = epoch.iter().flatten().collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 64 * (6000 / 64), "no sentence twice");
    let resumed: Vec<Vec<String>> = loader.epoch_from(0, 40).map(|b| b.unwrap()).collect();
    assert_eq!(resumed, epoch[40..].to_vec());
}

#[test]
fn documents_split_across_blocks_as_the_whole_text_splits() {
    // Running text of about 200 KB whose sentences run over line ends: cut into blocks only
    // where a sentence ends, so the sentences equal those of the whole text.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..3000 {
        text.push_str(&format!("The {i}th part runs on"));
        text.push_str(if i % 3 == 0 { "\nover a line end. " } else { " to its end. " });
        if i % 5 == 0 {
            text.push('\n');
        }
    }
    let path = dir.path().join("doc.txt");
    std::fs::write(&path, &text).unwrap();
    let corpus = TextCorpus::open(&path, CorpusFormat::Documents, (1, 1000)).unwrap();
    assert!(corpus.block_lens().len() > 5);
    let all: Vec<String> = (0..corpus.block_lens().len()).flat_map(|b| corpus.read_block(b).unwrap()).collect();
    assert_eq!(all, split_sentences(&text));
}

#[test]
fn json_lines_name_the_field_and_bad_lines_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.jsonl");
    std::fs::write(&path, "{\"text\": \"  a first   sentence\", \"id\": 1}\n\n{\"text\": \"the second one\"}\n")
        .unwrap();
    let format = || CorpusFormat::JsonLines { field: "text".into() };
    assert_eq!(read_corpus(&path, format(), (1, 100)).unwrap(), ["a first sentence", "the second one"]);
    let cases = [
        ("{\"text\": \"ok\"}\n{\"body\": \"x\"}\n", "c.jsonl:2: field text: missing"),
        ("{\"text\": 3}\n", "c.jsonl:1: field text: a number, not a string"),
        ("[1, 2]\n", "c.jsonl:1: field text: the line is not a JSON object"),
        ("{\"text\": \"ok\"}\n{\"text\": \"cut\n", "c.jsonl:2: not a JSON line"),
    ];
    for (content, want) in cases {
        std::fs::write(&path, content).unwrap();
        let e = TextCorpus::open(&path, format(), (1, 100)).err().unwrap().to_string();
        assert!(e.contains(want), "{e}");
    }
    // A folder of JSON lines reads the .jsonl files only; an empty file is an error naming it.
    std::fs::write(&path, "{\"text\": \"from the folder\"}\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not json\n").unwrap();
    assert_eq!(read_corpus(dir.path(), format(), (1, 100)).unwrap(), ["from the folder"]);
    std::fs::write(&path, "").unwrap();
    let e = TextCorpus::open(&path, format(), (1, 100)).err().unwrap().to_string();
    assert!(e.contains("c.jsonl") && e.contains("no sentence"), "{e}");
}

#[test]
fn invalid_utf8_is_replaced_and_a_changed_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.txt");
    std::fs::write(&path, b"caf\xe9 au lait\nplain line\n").unwrap();
    assert_eq!(read_corpus(&path, CorpusFormat::Lines, (1, 100)).unwrap(), ["caf\u{fffd} au lait", "plain line"]);
    // A file cut after it was indexed: the read names it.
    let text: String = (0..3000).map(|i| line(i) + "\n").collect();
    std::fs::write(&path, &text).unwrap();
    let corpus = TextCorpus::open(&path, CorpusFormat::Lines, (0, 1000)).unwrap();
    std::fs::write(&path, &text[..1000]).unwrap();
    let last = corpus.block_lens().len() - 1;
    let e = corpus.read_block(last).unwrap_err().to_string();
    assert!(e.contains("latin1.txt") && e.contains("the file changed"), "{e}");
}

#[test]
fn sentences_out_of_bounds_are_counted_and_the_first_too_long_is_named() {
    // 40,000 lines (about 2.5 MB: many batches of blocks counted in parallel); every 1000th is
    // 400 characters, every 7th 3 characters, every 11th blank.
    let dir = tempfile::tempdir().unwrap();
    let text_of = |i: usize| match i {
        _ if i % 1000 == 999 => "x".repeat(400),
        _ if i % 7 == 3 => "abc".to_string(),
        _ if i % 11 == 5 => String::new(),
        _ => line(i),
    };
    let lines: Vec<String> = (0..40_000).map(text_of).collect();
    let path = dir.path().join("bounds.txt");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let collapse = |s: &String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let kept: Vec<String> = lines.iter().map(collapse).filter(|s| (10..=300).contains(&s.len())).collect();
    let too_long = lines.iter().filter(|s| s.len() > 300).count();
    let too_short = lines.iter().filter(|s| (1..10).contains(&s.len())).count();
    let corpus = TextCorpus::open(&path, CorpusFormat::Lines, (10, 300)).unwrap();
    assert_eq!(corpus.len(), kept.len());
    let all: Vec<String> = (0..corpus.block_lens().len()).flat_map(|b| corpus.read_block(b).unwrap()).collect();
    assert_eq!(all, kept);
    let left = corpus.left_out();
    assert_eq!((left.too_long, left.too_short), (too_long, too_short));
    assert_eq!(left.first_too_long, Some((path.clone(), 1000)));

    // JSON lines: the first too long record's own line.
    let json: String = lines.iter().map(|s| format!("{{\"text\": {:?}}}\n", s)).collect();
    let jsonl = dir.path().join("bounds.jsonl");
    std::fs::write(&jsonl, json).unwrap();
    let corpus = TextCorpus::open(&jsonl, CorpusFormat::JsonLines { field: "text".into() }, (10, 300)).unwrap();
    assert_eq!((corpus.len(), corpus.left_out().first_too_long.clone()), (kept.len(), Some((jsonl, 1000))));

    // A file without line breaks past MAX_LINE_BYTES is refused at its line, not read whole.
    let binary = dir.path().join("dump.txt");
    let mut f = std::fs::File::create(&binary).unwrap();
    f.write_all(b"first line\nsecond line\n").unwrap();
    f.write_all(&vec![b'a'; contrastive_text::MAX_LINE_BYTES + 10]).unwrap();
    drop(f);
    let e = TextCorpus::open(&binary, CorpusFormat::Lines, (1, 300)).err().unwrap().to_string();
    assert!(e.contains("dump.txt:3:") && e.contains("16 MiB"), "{e}");
}

/// The opening pass measures ASCII lines a byte at a time and others by characters: both give
/// the length the kept sentence has (whitespace runs, of any kind Rust's `char::is_whitespace`
/// knows, collapsed to one space), so the index counts exactly what reading keeps. Lengths sit
/// around both bounds, with tabs, vertical tabs, form feeds, carriage returns, no-break and
/// ideographic spaces, and letters of two and three bytes.
#[test]
fn the_index_measures_every_kind_of_whitespace_as_the_kept_sentence() {
    let pieces = ["ab", "c", " ", "  ", "\t", "\u{b}", "\u{c}", "\r", "\u{a0}", "\u{3000}", "é", "語", "x y"];
    let mut state = 7u64;
    let lines: Vec<String> = (0..5000)
        .map(|_| {
            let n = 1 + (state % 9) as usize;
            (0..n)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    pieces[(state >> 33) as usize % pieces.len()]
                })
                .collect()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spaces.txt");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let collapse = |s: &String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let kept: Vec<String> = lines.iter().map(collapse).filter(|s| (4..=9).contains(&s.chars().count())).collect();
    let too_long = lines.iter().map(collapse).filter(|s| s.chars().count() > 9).count();
    let too_short = lines.iter().map(collapse).filter(|s| (1..4).contains(&s.chars().count())).count();
    assert!(kept.len() > 200 && too_long > 200 && too_short > 200, "{} {too_long} {too_short}", kept.len());
    let corpus = TextCorpus::open(&path, CorpusFormat::Lines, (4, 9)).unwrap();
    assert_eq!(corpus.len(), kept.len());
    assert_eq!((corpus.left_out().too_long, corpus.left_out().too_short), (too_long, too_short));
    let all: Vec<String> = (0..corpus.block_lens().len()).flat_map(|b| corpus.read_block(b).unwrap()).collect();
    assert_eq!(all, kept);
}

/// JSON lines are opened by reading only the named field: escapes, repeated keys (the last one
/// counts, as in `serde_json::Value`), nested and null fields around it give the sentences that
/// parsing each whole line gives.
#[test]
fn json_lines_read_only_the_named_field_as_a_whole_parse_would() {
    let records = [
        r#"{"id": {"a": [1, 2, {"b": "c"}]}, "text": "caf\u00e9\tau  lait served with \"quotes\" here", "x": null}"#,
        r#"{"text": "first", "text": "the second value of a repeated key wins"}"#,
        r#"{"meta": [true, false, 1.5e3], "text": "a line\nbreak inside an escaped sentence"}"#,
        r#"{"text": "\u8a9e\u8a9e words beside   ideographs and more", "n": -3}"#,
        r#"  {"text" : "spaces around the colon and the braces are fine too"}  "#,
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.jsonl");
    std::fs::write(&path, records.join("\n") + "\n").unwrap();
    let collapse = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let expected: Vec<String> = records
        .iter()
        .map(|r| collapse(serde_json::from_str::<serde_json::Value>(r).unwrap()["text"].as_str().unwrap()))
        .filter(|s| (20..=60).contains(&s.chars().count()))
        .collect();
    assert_eq!(expected.len(), 5, "{expected:?}");
    let corpus = TextCorpus::open(&path, CorpusFormat::JsonLines { field: "text".into() }, (20, 60)).unwrap();
    assert_eq!(corpus.len(), expected.len());
    let all: Vec<String> = (0..corpus.block_lens().len()).flat_map(|b| corpus.read_block(b).unwrap()).collect();
    assert_eq!(all, expected);
    // Trailing text after the object is not a JSON line.
    std::fs::write(&path, "{\"text\": \"a sentence long enough to keep\"} extra\n").unwrap();
    let e = TextCorpus::open(&path, CorpusFormat::JsonLines { field: "text".into() }, (1, 60)).err().unwrap();
    assert!(e.to_string().contains("records.jsonl:1: not a JSON line"), "{e}");
}
