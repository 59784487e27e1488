//! `report.html`: one self-contained file per run (no network, no other file) with the final
//! figures, the training curves, a 2-D map of the embeddings that shows each item on hover, and
//! the configuration.

use crate::items::{Content, Items};
use crate::plot::pca_2d;
use candle_core::Tensor;
use contrastive_core::train::HistoryRecord;
use contrastive_core::{Error, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Points a report's map holds by default: enough to see clusters, few enough for a light page.
pub const REPORT_POINTS: usize = 2_000;

/// Points a curve keeps: longer series are averaged over that many equal runs of steps.
pub const CURVE_POINTS: usize = 1_000;

/// What a report shows.
pub struct RunReport<'a> {
    /// The page's heading.
    pub title: String,
    /// The run's settings (its flags).
    pub config: Value,
    /// The run's final figures.
    pub figures: Value,
    /// The run's `history.jsonl` records.
    pub history: &'a [HistoryRecord],
    /// The embeddings' map, if the run has embeddings.
    pub map: Option<EmbeddingMap>,
}

/// Embeddings placed in 2-D, with the items they stand for.
pub struct EmbeddingMap {
    /// One (x, y) per item.
    pub points: Vec<[f64; 2]>,
    /// What each point is.
    pub items: Items,
    /// How the points were placed, shown above the map.
    pub note: String,
}

impl EmbeddingMap {
    /// The rows of `embeddings` (N, D) on their first two principal components.
    pub fn pca(embeddings: &Tensor, items: Items) -> Result<Self> {
        let points = pca_2d(embeddings)?;
        items.check(points.len())?;
        let note = format!(
            "{} embeddings on their first two principal components; hover over a point to see it (or open this file with #point=N).",
            points.len()
        );
        Ok(Self { points, items, note })
    }
}

impl RunReport<'_> {
    /// Writes the page to `path` (atomically).
    pub fn write(&self, path: &Path) -> Result<()> {
        let data = json!({
            "title": self.title,
            "config": self.config,
            "figures": self.figures,
            "series": series(self.history),
            "map": self.map.as_ref().map(map_json).transpose()?,
        });
        let text =
            serde_json::to_string(&data).map_err(|e| Error::Json { path: path.into(), message: e.to_string() })?;
        let page = include_str!("report.html").replace("__REPORT_DATA__", &script_safe(&text));
        contrastive_core::atomic::write_bytes_atomically(path, page.as_bytes())
    }
}

/// JSON that cannot end its `<script>` element or open a comment: `<`, `>` and `&` only occur
/// inside JSON strings, where their `\u` escapes read back the same.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

/// Each figure of the history as (step, value) pairs, by TensorBoard's names: `train/loss`,
/// `train/lr`, ..., `eval/<name>`; non-finite values are left out (JSON has none).
fn series(history: &[HistoryRecord]) -> BTreeMap<String, Vec<[f64; 2]>> {
    let mut out: BTreeMap<String, Vec<[f64; 2]>> = BTreeMap::new();
    for r in history {
        for (name, value) in r.scalars() {
            if value.is_finite() {
                out.entry(name).or_default().push([r.step as f64, value]);
            }
        }
    }
    out.into_iter().map(|(name, points)| (name, thinned(&points, CURVE_POINTS))).collect()
}

/// At most `cap` points: the means of `cap` equal runs of consecutive points (of steps and of
/// values), so a noisy loss keeps its trend.
fn thinned(points: &[[f64; 2]], cap: usize) -> Vec<[f64; 2]> {
    if points.len() <= cap {
        return points.to_vec();
    }
    (0..cap)
        .map(|b| {
            let run = &points[b * points.len() / cap..(b + 1) * points.len() / cap];
            let n = run.len() as f64;
            [run.iter().map(|p| p[0]).sum::<f64>() / n, run.iter().map(|p| p[1]).sum::<f64>() / n]
        })
        .collect()
}

fn map_json(map: &EmbeddingMap) -> Result<Value> {
    let items = &map.items;
    let mut out = json!({
        "note": map.note,
        "x": map.points.iter().map(|p| p[0]).collect::<Vec<_>>(),
        "y": map.points.iter().map(|p| p[1]).collect::<Vec<_>>(),
        "labels": items.labels,
        "class_names": items.class_names,
        "texts": null,
        "text_kind": null,
        "sprite": null,
    });
    if let Some((kind, texts)) = items.content.texts() {
        out["texts"] = json!(texts);
        out["text_kind"] = json!(kind);
    }
    if let Content::Thumbnails(t) = &items.content {
        let (png, columns) = t.sprite_png()?;
        out["sprite"] = json!(format!("data:image/png;base64,{}", base64(&png)));
        out["sprite_columns"] = json!(columns);
        out["thumb"] = json!([t.width, t.height]);
    }
    Ok(out)
}

/// Standard base64 with padding (RFC 4648), for the sprite's data URI.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{base64, script_safe, thinned};

    #[test]
    fn base64_matches_the_rfc_4648_test_vectors() {
        // RFC 4648 section 10.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn script_safe_json_reads_back_the_same_and_cannot_close_the_script() {
        let value = serde_json::json!({"s": "</script><!-- & -->"});
        let safe = script_safe(&serde_json::to_string(&value).unwrap());
        assert!(!safe.contains('<') && !safe.contains('>') && !safe.contains('&'));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&safe).unwrap(), value);
    }

    #[test]
    fn thinning_averages_equal_runs() {
        let points: Vec<[f64; 2]> = (0..10).map(|i| [i as f64, (i * i) as f64]).collect();
        assert_eq!(thinned(&points, 20), points);
        // Runs start at b * 10 / 4: points 0-1, 2-4, 5-6, 7-9.
        assert_eq!(thinned(&points, 4), vec![[0.5, 0.5], [3.0, 29.0 / 3.0], [5.5, 30.5], [8.0, 194.0 / 3.0]]);
    }
}
