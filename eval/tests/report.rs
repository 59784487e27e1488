//! `report.html` opened in headless Chromium (Debian's `chromium`): it renders without a console
//! message, its map holds every point, a point named in the address shows its item, and text
//! from the data (`</script>`, markup) stays text.

use candle_core::{Device, Tensor};
use contrastive_core::train::HistoryRecord;
use contrastive_eval::{Content, EmbeddingMap, Items, RunReport, Thumbnails, CURVE_POINTS};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Chromium: CONTRASTIVE_CHROMIUM, else `chromium` on the PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONTRASTIVE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("chromium")).find(|p| p.is_file())
}

/// The page's DOM after its scripts ran, and what Chromium logged (console messages appear as
/// `CONSOLE` lines); None when there is no Chromium and CONTRASTIVE_REQUIRE_CHROMIUM is not 1
/// (CI sets it and installs Debian's chromium).
fn render(page: &Path, fragment: &str) -> Option<(String, String)> {
    let Some(browser) = chromium() else {
        assert!(
            !std::env::var("CONTRASTIVE_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1"),
            "CONTRASTIVE_REQUIRE_CHROMIUM=1 but no chromium on the PATH"
        );
        eprintln!("skipped: no chromium on the PATH (Debian: apt-get install chromium)");
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}{fragment}", page.canonicalize().unwrap().display());
    // The flags keep Chromium off the network: no background fetches, no component updates.
    // Into files: a page's DOM is larger than a pipe holds while we wait.
    let (dom, log) = (profile.path().join("dom.html"), profile.path().join("log.txt"));
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
        .arg("--dump-dom")
        .arg(url)
        .stdout(Stdio::from(std::fs::File::create(&dom).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("chromium did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "chromium: {status}\n{log}");
    Some((std::fs::read_to_string(&dom).unwrap(), log))
}

fn history(steps: usize) -> Vec<HistoryRecord> {
    let mut records: Vec<HistoryRecord> = (1..=steps)
        .map(|s| HistoryRecord {
            step: s,
            epoch: 0,
            // A NaN loss is left out of the curve, not written as invalid JSON.
            loss: Some(if s == 3 { f64::NAN } else { 4.0 / s as f64 }),
            lr: Some(1e-3),
            samples_per_s: Some(500.0),
            step_s: Some(0.128),
            method: [("temperature".to_string(), 0.07 + s as f64 * 1e-4)].into(),
            elapsed_s: s as f64,
            eval: HashMap::new(),
        })
        .collect();
    records.push(HistoryRecord {
        step: steps,
        epoch: 0,
        loss: None,
        lr: None,
        samples_per_s: None,
        step_s: None,
        method: Default::default(),
        elapsed_s: 0.0,
        eval: [("knn_monitor".to_string(), 71.5)].into(),
    });
    records
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// The page from the first `start` up to the next section's heading.
fn from<'a>(dom: &'a str, start: &str) -> &'a str {
    let at = dom.find(start).unwrap_or_else(|| panic!("no {start} in the page"));
    let rest = &dom[at..];
    &rest[..rest.find("<h2>").unwrap_or(rest.len())]
}

#[test]
fn the_report_renders_every_point_and_shows_items_on_hover() {
    let dir = tempfile::tempdir().unwrap();
    let n = 300;
    // Three clusters on three axes of 4-D space, labelled by cluster.
    let mut values = Vec::new();
    for i in 0..n {
        let mut row = [0.01 * (i % 7) as f32, 0.02 * (i % 5) as f32, 0.0, 0.0];
        row[i % 3] += 3.0;
        values.extend(row);
    }
    let x = Tensor::from_vec(values, (n, 4), &Device::Cpu).unwrap();
    let sentences: Vec<String> =
        (0..n).map(|i| format!("sentence {i} </script><b>bold</b> & \"quotes\"\ttab")).collect();
    let items = Items {
        labels: Some((0..n).map(|i| (i % 3) as u32).collect()),
        class_names: vec!["first".into(), "<second>".into(), "third".into()],
        content: Content::Sentences(sentences),
    };
    let history = history(2 * CURVE_POINTS + 7);
    let report = RunReport {
        title: "simcse: runs/<a>".into(),
        config: serde_json::json!({"example": "simcse", "flags": {"batch_size": 64, "data": "</script>.txt"}}),
        figures: serde_json::json!({"steps": 2007, "lee50_after": {"pearson": 0.61, "spearman": 0.58}, "none": null}),
        history: &history,
        map: Some(EmbeddingMap::pca(&x, items).unwrap()),
    };
    let page = dir.path().join("report.html");
    report.write(&page).unwrap();
    let text = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing is fetched.
    assert!(!text.contains("http://") || text.matches("http://").all(|_| text.contains("http://www.w3.org/2000/svg")));
    assert!(!text.contains("https://") && !text.contains(" src="));

    let Some((dom, log)) = render(&page, "#point=17") else { return };
    assert!(!log.contains("CONSOLE"), "console messages:\n{log}");
    assert!(dom.contains("data-rendered=\"true\""), "the script did not finish");
    assert!(dom.contains("<div id=\"errors\"></div>"), "errors were shown");
    assert_eq!(count(&dom, "class=\"point"), n);
    for i in [0, 17, n - 1] {
        assert_eq!(count(&dom, &format!("data-index=\"{i}\"")), 1);
    }
    // One chart per series: loss, lr, samples_per_s, step_s, temperature, knn_monitor.
    assert_eq!(count(&dom, "data-series="), 6);
    for series in ["train/loss", "train/temperature", "train/step_s", "eval/knn_monitor"] {
        assert!(dom.contains(&format!("data-series=\"{series}\"")), "{series}");
    }
    // Point 17 (cluster 2) named in the address: its label and sentence, as text.
    let tip = from(&dom, "<div id=\"tip\"");
    assert!(tip.contains("data-point=\"17\""), "{tip}");
    assert!(tip.contains("#17: third (2)"), "{tip}");
    assert!(tip.contains("sentence 17 &lt;/script&gt;&lt;b&gt;bold&lt;/b&gt; &amp; \"quotes\""), "{tip}");
    assert!(dom.contains("&lt;second&gt;"), "class names are text");
    assert!(dom.contains("runs/&lt;a&gt;"), "the title is text");
    assert!(!dom.contains("<b>bold</b>"));
}

#[test]
fn a_report_of_pictures_shows_a_thumbnail_and_one_without_embeddings_renders() {
    let dir = tempfile::tempdir().unwrap();
    let n = 50;
    let x =
        Tensor::from_vec((0..n * 3).map(|v| ((v * 37) % 11) as f32).collect::<Vec<_>>(), (n, 3), &Device::Cpu).unwrap();
    let thumbnails = Thumbnails { height: 8, width: 6, channels: 1, pixels: (0..n * 48).map(|v| v as u8).collect() };
    let items = Items { labels: None, class_names: vec![], content: Content::Thumbnails(thumbnails) };
    let history = history(5);
    let report = RunReport {
        title: "simclr".into(),
        config: serde_json::Value::Null,
        figures: serde_json::json!({}),
        history: &history,
        map: Some(EmbeddingMap::pca(&x, items).unwrap()),
    };
    let page = dir.path().join("report.html");
    report.write(&page).unwrap();
    let Some((dom, log)) = render(&page, "#point=9") else { return };
    assert!(!log.contains("CONSOLE"), "console messages:\n{log}");
    assert!(dom.contains("data-rendered=\"true\""));
    assert_eq!(count(&dom, "class=\"point"), n);
    let tip = from(&dom, "<div id=\"tip\"");
    assert!(tip.contains("#9"), "{tip}");
    // The sprite holds 8 pictures a row: picture 9 is the second of the second row, drawn 12x
    // (96 pixels over the longer side of 8).
    let thumb = from(tip, "<div class=\"thumb\"");
    assert!(thumb.contains("background-image: url(&quot;data:image/png;base64,"), "{thumb}");
    assert!(thumb.contains("background-position: -72px -96px"), "{thumb}");

    let bare = RunReport {
        title: "empty".into(),
        config: serde_json::Value::Null,
        figures: serde_json::json!({}),
        history: &[],
        map: None,
    };
    bare.write(&page).unwrap();
    let Some((dom, log)) = render(&page, "") else { return };
    assert!(!log.contains("CONSOLE"), "console messages:\n{log}");
    assert!(dom.contains("data-rendered=\"true\""));
    assert_eq!(count(&dom, "class=\"point"), 0);
    assert!(dom.contains("No training steps were logged.") && dom.contains("This run saved no embeddings to map."));
}
