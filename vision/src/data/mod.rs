//! Images and where they come from: the in-memory image types, the readers (IDX files of the
//! MNIST family, CSV rows of pixels, folders of PNG and JPEG files) and [`ImageSplit`], a train
//! and test set from whichever layout a folder has. Every reader yields
//! channel-first f32 images in [0, 1] and implements `contrastive_core::data::Dataset`.

mod idx;
mod image_folder;
mod images;
mod pixel_csv;
mod resized;
mod split;

pub use idx::{load_idx, load_idx_folder, read_idx_images, read_idx_labels};
pub use image_folder::{ColorMode, ImageFolder, Unreadable};
pub use images::{Image, InMemoryImages};
pub use pixel_csv::{load_pixel_csv, parse_pixel_csv, uci_digits};
pub use resized::Resized;
pub use split::{ImageSet, ImageSplit};
