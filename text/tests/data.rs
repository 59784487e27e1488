//! Sentence data: the splitting rule, corpora, STS TSV and Lee-50, good and bad; a BPE tokenizer
//! trained on SMILES.

use contrastive_text::{read_corpus, read_lee50, read_sts_tsv, split_sentences, CorpusFormat, Tokenizer};
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
