//! `cargo +nightly fuzz run bert_config`: see the crate README.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| contrastive_fuzz::Reader::BertConfig.read(data));
