//! What each embedded point is, for a person looking at a map of them: its label and the item
//! itself (a thumbnail, a sentence, a molecule's SMILES). The projector files and the HTML report
//! show the same [`Items`].

use contrastive_core::{Error, Result};

/// The items behind the rows of an embedding matrix, row for row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Items {
    /// Each item's class id, if the items are labelled.
    pub labels: Option<Vec<u32>>,
    /// The name of each class id (empty: ids are shown as numbers).
    pub class_names: Vec<String>,
    /// The items themselves.
    pub content: Content,
}

/// What an item is, as it is shown on hover.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Content {
    /// Nothing but the label.
    #[default]
    Nothing,
    /// Sentences (SimCSE and other text encoders).
    Sentences(Vec<String>),
    /// Molecules as SMILES strings.
    Smiles(Vec<String>),
    /// Small pictures of images.
    Thumbnails(Thumbnails),
}

impl Content {
    /// The texts and the column they go under, for text items.
    pub(crate) fn texts(&self) -> Option<(&'static str, &[String])> {
        match self {
            Content::Sentences(t) => Some(("sentence", t)),
            Content::Smiles(t) => Some(("smiles", t)),
            Content::Nothing | Content::Thumbnails(_) => None,
        }
    }

    fn len(&self) -> Option<usize> {
        match self {
            Content::Nothing => None,
            Content::Sentences(t) | Content::Smiles(t) => Some(t.len()),
            Content::Thumbnails(t) => Some(t.len()),
        }
    }
}

/// Same-sized small pictures, 8-bit grey or RGB, row-major (N, H, W, C).
#[derive(Clone, Debug, PartialEq)]
pub struct Thumbnails {
    /// Pixels of one picture down.
    pub height: usize,
    /// Pixels of one picture across.
    pub width: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// `N * height * width * channels` bytes, one picture after the other.
    pub pixels: Vec<u8>,
}

/// The largest side of a sprite TensorBoard's projector shows (WebGL texture limit).
pub const MAX_SPRITE_SIDE: usize = 8192;

impl Thumbnails {
    /// Thumbnails from pictures of values in [0, 1], channel-first (N, C, H, W) as the image
    /// crates hold them; values outside [0, 1] are clamped.
    pub fn from_unit_chw(channels: usize, height: usize, width: usize, values: &[f32]) -> Result<Self> {
        let per = channels * height * width;
        if !(channels == 1 || channels == 3) || per == 0 || values.len() % per != 0 {
            return Err(Error::shape(
                "thumbnails: pixels",
                format!("(N, C, H, W) with C 1 or 3: a multiple of {channels} x {height} x {width} values"),
                &[values.len()],
            ));
        }
        let mut pixels = Vec::with_capacity(values.len());
        for picture in values.chunks_exact(per) {
            for y in 0..height {
                for x in 0..width {
                    for c in 0..channels {
                        let v = picture[(c * height + y) * width + x];
                        pixels.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
                    }
                }
            }
        }
        Ok(Self { height, width, channels, pixels })
    }

    /// Number of pictures.
    pub fn len(&self) -> usize {
        self.pixels.len().checked_div(self.height * self.width * self.channels).unwrap_or(0)
    }

    /// Whether there are no pictures.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pictures at `indices`.
    fn select(&self, indices: &[usize]) -> Self {
        let per = self.height * self.width * self.channels;
        let pixels = indices.iter().flat_map(|&i| &self.pixels[i * per..(i + 1) * per]).copied().collect();
        Self { pixels, ..self.clone() }
    }

    /// All pictures on one RGB PNG grid, row by row, as TensorBoard's projector and the report
    /// read them: (the PNG, pictures per row). Fails past [`MAX_SPRITE_SIDE`] pixels a side.
    pub fn sprite_png(&self) -> Result<(Vec<u8>, usize)> {
        let n = self.len();
        let per_row = (n as f64).sqrt().ceil().max(1.0) as usize;
        let rows = n.div_ceil(per_row).max(1);
        let (w, h) = (per_row * self.width, rows * self.height);
        if w > MAX_SPRITE_SIDE || h > MAX_SPRITE_SIDE {
            return Err(Error::config(
                "thumbnails",
                format!(
                    "{n} pictures of {}x{} make a {w}x{h} sprite, past {MAX_SPRITE_SIDE} a side: show fewer or smaller",
                    self.width, self.height
                ),
            ));
        }
        let mut canvas = image::RgbImage::new(w as u32, h as u32);
        let per = self.height * self.width * self.channels;
        for (i, picture) in self.pixels.chunks_exact(per).enumerate() {
            let (x0, y0) = ((i % per_row) * self.width, (i / per_row) * self.height);
            for y in 0..self.height {
                for x in 0..self.width {
                    let p = &picture[(y * self.width + x) * self.channels..][..self.channels];
                    let rgb = if self.channels == 1 { [p[0]; 3] } else { [p[0], p[1], p[2]] };
                    canvas.put_pixel((x0 + x) as u32, (y0 + y) as u32, image::Rgb(rgb));
                }
            }
        }
        let mut png = Vec::new();
        canvas
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| Error::Data(format!("thumbnails: PNG encoding failed: {e}")))?;
        Ok((png, per_row))
    }
}

impl Items {
    /// Labelled items without content.
    pub fn labelled(labels: &[u32]) -> Self {
        Self { labels: Some(labels.to_vec()), ..Self::default() }
    }

    /// Checks that labels and content describe `rows` items; names what does not.
    pub fn check(&self, rows: usize) -> Result<()> {
        if let Some(labels) = &self.labels {
            if labels.len() != rows {
                return Err(Error::shape("items: labels", format!("({rows},), one per embedding"), &[labels.len()]));
            }
        }
        if let Some(n) = self.content.len() {
            if n != rows {
                return Err(Error::shape("items: content", format!("({rows},), one per embedding"), &[n]));
            }
        }
        Ok(())
    }

    /// The items at `indices` (each below the number of items).
    pub fn select(&self, indices: &[usize]) -> Self {
        let pick = |v: &[String]| indices.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
        Self {
            labels: self.labels.as_ref().map(|l| indices.iter().map(|&i| l[i]).collect()),
            class_names: self.class_names.clone(),
            content: match &self.content {
                Content::Nothing => Content::Nothing,
                Content::Sentences(t) => Content::Sentences(pick(t)),
                Content::Smiles(t) => Content::Smiles(pick(t)),
                Content::Thumbnails(t) => Content::Thumbnails(t.select(indices)),
            },
        }
    }

    /// The name shown for item `i`'s label: its class name, else its id.
    pub(crate) fn label_name(&self, i: usize) -> Option<String> {
        let label = *self.labels.as_ref()?.get(i)?;
        Some(self.class_names.get(label as usize).cloned().unwrap_or_else(|| label.to_string()))
    }
}

/// At most `cap` indices of `0..len`, spread evenly (all of them when `len <= cap`): a sample
/// that covers a set listed class by class.
pub fn spread_indices(len: usize, cap: usize) -> Vec<usize> {
    if len <= cap {
        return (0..len).collect();
    }
    (0..cap).map(|i| i * len / cap).collect()
}
