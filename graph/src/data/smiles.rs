//! The SMILES strings that accompany a TU molecule dataset, for pairing each graph with its
//! string (CLIP between graphs and SMILES).

use contrastive_core::{Error, Result};
use std::path::Path;

/// The SMILES strings of a TU dataset's molecules: the last column of `{name}_graph_sources.tsv`
/// (a header line, then `graph_id ... smiles` per line, tab-separated, ids 1, 2, ... in graph
/// order), one per graph; a line out of order, without a SMILES or a count other than `graphs`
/// is an error naming the file and line.
pub fn read_tu_smiles(path: &Path, graphs: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut smiles = Vec::with_capacity(graphs);
    for (i, line) in text.lines().enumerate().skip(1) {
        let fields: Vec<&str> = line.split('\t').collect();
        let (Some(id), Some(s)) = (fields.first(), fields.last().filter(|_| fields.len() >= 2)) else {
            return Err(Error::in_file(path, Some(i + 1), "expected tab-separated graph_id ... smiles"));
        };
        if id.trim().parse::<usize>().ok() != Some(smiles.len() + 1) {
            let message = format!("{id:?}, expected {} (rows in graph order)", smiles.len() + 1);
            return Err(Error::in_field(path, i + 1, "graph_id", message));
        }
        if s.trim().is_empty() {
            return Err(Error::in_field(path, i + 1, "smiles", "empty"));
        }
        smiles.push(s.trim().to_string());
    }
    if smiles.len() != graphs {
        return Err(Error::in_file(path, None, format!("{} SMILES for {graphs} graphs", smiles.len())));
    }
    Ok(smiles)
}
