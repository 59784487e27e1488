//! Writes every target's valid inputs to `DIR/<target>/seed-N` (default `fuzz/corpus`, where
//! `cargo fuzz run <target>` looks), so that coverage-guided fuzzing starts from real files.

fn main() {
    let root = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".to_string()));
    for reader in contrastive_fuzz::Reader::ALL {
        let dir = root.join(reader.name());
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("error: {}: {e}", dir.display());
            std::process::exit(1);
        }
        for (i, seed) in reader.seeds().iter().enumerate() {
            let path = dir.join(format!("seed-{i}"));
            if let Err(e) = std::fs::write(&path, seed) {
                eprintln!("error: {}: {e}", path.display());
                std::process::exit(1);
            }
        }
        println!("{}: {} seeds in {}", reader.name(), reader.seeds().len(), dir.display());
    }
}
