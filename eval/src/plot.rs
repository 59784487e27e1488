//! Pictures people look at before they read numbers: the curves of a training history and a 2-D
//! PCA projection of embeddings coloured by label, each written as SVG and PNG (plotters, with
//! DejaVu Sans Mono embedded so that no system font is needed).

use crate::check;
use candle_core::{DType, Tensor};
use contrastive_core::atomic::write_atomically;
use contrastive_core::train::HistoryRecord;
use contrastive_core::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
const WIDTH: u32 = 900;
const HEIGHT: u32 = 600;

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in, so this only fails if it is corrupt; text is then left out.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn plot_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Data(format!("{what}: {e}"))
}

/// Something drawn the same way on every backend.
trait Figure {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Draws `figure` into `{stem}.svg` and `{stem}.png`; returns both paths.
fn render(stem: &Path, what: &str, figure: &impl Figure) -> Result<Vec<PathBuf>> {
    register_font();
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    write_atomically(&svg, |tmp| {
        let area = SVGBackend::new(tmp, (WIDTH, HEIGHT)).into_drawing_area();
        area.fill(&WHITE).map_err(|e| plot_error(what, e))?;
        figure.draw(&area)?;
        area.present().map_err(|e| plot_error(&format!("{what} ({})", svg.display()), e))
    })?;
    write_atomically(&png, |tmp| {
        let area = BitMapBackend::new(tmp, (WIDTH, HEIGHT)).into_drawing_area();
        area.fill(&WHITE).map_err(|e| plot_error(what, e))?;
        figure.draw(&area)?;
        area.present().map_err(|e| plot_error(&format!("{what} ({})", png.display()), e))
    })?;
    Ok(vec![svg, png])
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

/// Training loss against step, and every evaluation metric against step below it, from the
/// records of a `history.jsonl`; written to `{stem}.svg` and `{stem}.png`.
pub fn plot_history(records: &[HistoryRecord], stem: &Path) -> Result<Vec<PathBuf>> {
    let losses: Vec<(f64, f64)> = records.iter().filter_map(|r| r.loss.map(|l| (r.step as f64, l))).collect();
    if losses.is_empty() {
        return Err(Error::Data("plot_history: the history has no loss record".into()));
    }
    let mut metrics: Vec<String> = records.iter().flat_map(|r| r.eval.keys().cloned()).collect();
    metrics.sort();
    metrics.dedup();
    let series: Vec<(String, Vec<(f64, f64)>)> = metrics
        .iter()
        .map(|m| (m.clone(), records.iter().filter_map(|r| r.eval.get(m).map(|v| (r.step as f64, *v))).collect()))
        .collect();
    let max_step = losses.iter().map(|p| p.0).fold(1.0, f64::max);
    render(stem, "plot_history", &HistoryFigure { losses, series, max_step })
}

struct HistoryFigure {
    losses: Vec<(f64, f64)>,
    series: Vec<(String, Vec<(f64, f64)>)>,
    max_step: f64,
}

impl Figure for HistoryFigure {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let (losses, series, max_step) = (&self.losses, &self.series, self.max_step);
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| plot_error("plot_history", e);
        let (top, bottom) = if series.is_empty() {
            (area.clone(), None)
        } else {
            let (t, b) = area.split_vertically(HEIGHT * 3 / 5);
            (t, Some(b))
        };
        let (lo, hi) = bounds(losses.iter().map(|p| p.1));
        let mut chart = ChartBuilder::on(&top)
            .caption("training loss", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_step, lo..hi)
            .map_err(err)?;
        chart.configure_mesh().x_desc("step").y_desc("loss").label_style(("sans-serif", 13)).draw().map_err(err)?;
        chart.draw_series(LineSeries::new(losses.iter().copied(), &BLUE)).map_err(err)?;
        if let Some(bottom) = bottom {
            let (lo, hi) = bounds(series.iter().flat_map(|s| s.1.iter().map(|p| p.1)));
            let mut chart = ChartBuilder::on(&bottom)
                .caption("evaluation", ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..max_step, lo..hi)
                .map_err(err)?;
            chart.configure_mesh().x_desc("step").label_style(("sans-serif", 13)).draw().map_err(err)?;
            for (i, (name, points)) in series.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                chart
                    .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)).point_size(3))
                    .map_err(err)?
                    .label(name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
            }
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 13))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
        Ok(())
    }
}

/// The rows of `x` (N, D) projected on their first two principal components (centred; power
/// iteration with deflation on the covariance, started from a fixed vector, so deterministic).
pub fn pca_2d(x: &Tensor) -> Result<Vec<[f64; 2]>> {
    let (n, d) = check::embeddings("pca", x)?;
    if n < 2 {
        return Err(Error::shape("pca: embeddings", "(N >= 2, D)", &[n, d]));
    }
    let x = x.to_dtype(DType::F64)?;
    let centred = x.broadcast_sub(&x.mean_keepdim(0)?)?;
    let cov = (centred.t()?.matmul(&centred)? / (n - 1) as f64)?.to_vec2::<f64>()?;
    let mut components: Vec<Vec<f64>> = Vec::new();
    for c in 0..2.min(d) {
        let mut v: Vec<f64> = (0..d).map(|i| 1.0 + 0.01 * ((i * 7 + c * 3) % 11) as f64).collect();
        for _ in 0..500 {
            let mut w: Vec<f64> = cov.iter().map(|row| row.iter().zip(&v).map(|(a, b)| a * b).sum()).collect();
            for p in &components {
                let dot: f64 = w.iter().zip(p).map(|(a, b)| a * b).sum();
                w.iter_mut().zip(p).for_each(|(a, b)| *a -= dot * b);
            }
            let norm = w.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            w.iter_mut().for_each(|a| *a /= norm);
            let delta: f64 = w.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
            v = w;
            if delta < 1e-12 {
                break;
            }
        }
        // A fixed sign: the largest entry is positive.
        let big = v.iter().copied().fold(0.0f64, |m, a| if a.abs() > m.abs() { a } else { m });
        if big < 0.0 {
            v.iter_mut().for_each(|a| *a = -*a);
        }
        components.push(v);
    }
    while components.len() < 2 {
        components.push(vec![0.0; d]);
    }
    let rows = centred.to_vec2::<f64>()?;
    Ok(rows
        .iter()
        .map(|r| {
            let p = |c: &[f64]| r.iter().zip(c).map(|(a, b)| a * b).sum::<f64>();
            [p(&components[0]), p(&components[1])]
        })
        .collect())
}

/// A PCA scatter of `x` (N, D) coloured by `labels`, written to `{stem}.svg` and `{stem}.png`.
pub fn plot_embeddings(x: &Tensor, labels: &[u32], title: &str, stem: &Path) -> Result<Vec<PathBuf>> {
    let points = pca_2d(x)?;
    check::labels("plot_embeddings", labels, points.len())?;
    let (xlo, xhi) = bounds(points.iter().map(|p| p[0]));
    let (ylo, yhi) = bounds(points.iter().map(|p| p[1]));
    let figure =
        ScatterFigure { points, labels: labels.to_vec(), title: title.to_string(), ranges: ((xlo, xhi), (ylo, yhi)) };
    render(stem, "plot_embeddings", &figure)
}

struct ScatterFigure {
    points: Vec<[f64; 2]>,
    labels: Vec<u32>,
    title: String,
    ranges: ((f64, f64), (f64, f64)),
}

impl Figure for ScatterFigure {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let (points, labels, title, (xr, yr)) = (&self.points, &self.labels, self.title.as_str(), self.ranges);
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| plot_error("plot_embeddings", e);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)
            .map_err(err)?;
        chart.configure_mesh().x_desc("PC 1").y_desc("PC 2").label_style(("sans-serif", 13)).draw().map_err(err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .zip(labels)
                    .map(|(p, &l)| Circle::new((p[0], p[1]), 3, Palette99::pick(l as usize).filled())),
            )
            .map_err(err)?;
        Ok(())
    }
}
