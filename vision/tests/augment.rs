//! Augmentations: torchvision's outputs on a fixed image, and the properties every view must have.

use contrastive_core::augment::Augment;
use contrastive_core::rng::sample_rng;
use contrastive_vision::augment::*;
use contrastive_vision::Image;
use std::collections::HashMap;

/// The golden script's input: v[c, y, x] = ((7x + 13y + 29c + 3xy) mod 17) / 16.
fn image(c: usize, h: usize, w: usize) -> Image {
    let mut data = Vec::new();
    for ci in 0..c {
        for y in 0..h {
            for x in 0..w {
                data.push(((7 * x + 13 * y + 29 * ci + 3 * x * y) % 17) as f32 / 16.0);
            }
        }
    }
    Image::new(c, h, w, data).unwrap()
}

#[derive(serde::Deserialize)]
struct Golden {
    shape: Vec<usize>,
    data: Vec<f32>,
}

fn goldens() -> HashMap<String, Golden> {
    serde_json::from_str(include_str!("golden/augment.json")).unwrap()
}

// Produced by tests/golden/augment.py (torchvision 0.29.2's functional transforms on the image
// above); values are rounded there to 7 decimals, so the tolerance is 2e-6 (5e-6 for the HSV
// round trip).
#[test]
fn transforms_match_torchvision() {
    let g = goldens();
    let img = image(3, 9, 11);
    let check = |name: &str, out: &Image, tol: f32| {
        let want = &g[name];
        assert_eq!(want.shape, [out.channels, out.height, out.width], "{name}");
        let worst = want.data.iter().zip(&out.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= tol, "{name}: off by {worst}");
    };
    let with = |f: &dyn Fn(&mut Image)| {
        let mut x = img.clone();
        f(&mut x);
        x
    };
    check("crop_up", &resized_crop(&img, (1, 2, 5, 7), (9, 11)).unwrap(), 2e-6);
    check("crop_down", &resized_crop(&img, (0, 0, 9, 11), (4, 5)).unwrap(), 2e-6);
    check("hflip", &with(&|x| hflip(x)), 0.0);
    check("brightness_1.3", &with(&|x| adjust_brightness(x, 1.3)), 2e-6);
    check("contrast_0.6", &with(&|x| adjust_contrast(x, 0.6)), 2e-6);
    let mut gray = image(1, 9, 11);
    adjust_contrast(&mut gray, 1.8);
    check("contrast_gray_1.8", &gray, 2e-6);
    check("saturation_1.7", &with(&|x| adjust_saturation(x, 1.7)), 2e-6);
    check("saturation_0.2", &with(&|x| adjust_saturation(x, 0.2)), 2e-6);
    check("hue_0.23", &with(&|x| adjust_hue(x, 0.23)), 5e-6);
    check("hue_-0.4", &with(&|x| adjust_hue(x, -0.4)), 5e-6);
    check("grayscale", &with(&|x| to_grayscale(x)), 2e-6);
    check("blur_5_1.3", &gaussian_blur(&img, 5, 1.3).unwrap(), 2e-6);
    check("blur_3_0.4", &gaussian_blur(&img, 3, 0.4).unwrap(), 2e-6);
    check("solarize_0.5", &with(&|x| solarize(x, 0.5)), 0.0);
    check("normalize_imagenet", &with(&|x| Normalize::imagenet().normalize(x).unwrap()), 2e-6);
}

fn all_augmentations(side: usize) -> Vec<(&'static str, Box<dyn Augment<Image>>)> {
    vec![
        ("crop", Box::new(RandomResizedCrop::new((side, side)))),
        ("flip", Box::new(HorizontalFlip { p: 0.5 })),
        ("jitter", Box::new(ColorJitter { brightness: 0.8, contrast: 0.8, saturation: 0.8, hue: 0.2 })),
        ("grayscale", Box::new(RandomGrayscale { p: 0.5 })),
        ("blur", Box::new(GaussianBlur::for_side(side, 0.5))),
        ("solarize", Box::new(Solarize { threshold: 0.5, p: 0.5 })),
        ("simclr", Box::new(ViewAugmentation::simclr((side, side), Normalize { mean: vec![0.0], std: vec![1.0] }))),
        ("moco", Box::new(ViewAugmentation::moco_v2((side, side), Normalize { mean: vec![0.0], std: vec![1.0] }))),
    ]
}

#[test]
fn views_keep_size_and_range_and_repeat_by_seed() {
    let img = image(3, 32, 32);
    for (name, aug) in all_augmentations(32) {
        let mut distinct = 0;
        for index in 0..20 {
            let a = aug.apply(img.clone(), &mut sample_rng(7, 0, index)).unwrap();
            let b = aug.apply(img.clone(), &mut sample_rng(7, 0, index)).unwrap();
            assert_eq!(a, b, "{name}: same seed, same view");
            assert_eq!((a.channels, a.height, a.width), (3, 32, 32), "{name}");
            assert!(a.data.iter().all(|v| (0.0..=1.0).contains(v)), "{name}: values leave [0, 1]");
            let other = aug.apply(img.clone(), &mut sample_rng(7, 0, index + 100)).unwrap();
            distinct += usize::from(other != a);
        }
        // Different indices draw different views (p = 0.5 ops may agree on a few).
        assert!(distinct >= 5, "{name}: only {distinct} of 20 views differ");
    }
}

#[test]
fn probability_zero_is_identity() {
    let img = image(3, 16, 16);
    let off: Vec<Box<dyn Augment<Image>>> = vec![
        Box::new(HorizontalFlip { p: 0.0 }),
        Box::new(RandomGrayscale { p: 0.0 }),
        Box::new(GaussianBlur { kernel: 3, sigma: (0.1, 2.0), p: 0.0 }),
        Box::new(Solarize { threshold: 0.5, p: 0.0 }),
        Box::new(ColorJitter { brightness: 0.0, contrast: 0.0, saturation: 0.0, hue: 0.0 }),
        Box::new(RandomResizedCrop { scale: (1.0, 1.0), ratio: (1.0, 1.0), size: (16, 16) }),
    ];
    for (i, aug) in off.iter().enumerate() {
        assert_eq!(aug.apply(img.clone(), &mut sample_rng(1, 0, i)).unwrap(), img, "augmentation {i}");
    }
}

#[test]
fn flip_twice_is_identity_and_crops_stay_inside() {
    let img = image(1, 7, 10);
    let mut x = img.clone();
    hflip(&mut x);
    assert_ne!(x, img);
    hflip(&mut x);
    assert_eq!(x, img);
    let crop = RandomResizedCrop::new((5, 5));
    for i in 0..500 {
        let (top, left, h, w) = crop.params(7, 10, &mut sample_rng(3, 1, i));
        assert!(h >= 1 && w >= 1 && top + h <= 7 && left + w <= 10);
    }
    // A region outside the image is an error that says so, not a panic.
    let err = resized_crop(&img, (5, 0, 4, 4), (3, 3)).unwrap_err();
    assert!(
        matches!(&err, contrastive_core::Error::Shape { expected, found, .. } if expected.contains(">= 9") && found[1..] == [7, 10]),
        "{err}"
    );
}

#[test]
fn labelled_items_keep_their_label() {
    let aug = ViewAugmentation::small_images((12, 12), Normalize { mean: vec![0.5], std: vec![0.25] });
    let (view, label) = Augment::<(Image, u32)>::apply(&aug, (image(1, 12, 12), 7), &mut sample_rng(0, 0, 0)).unwrap();
    assert_eq!(label, 7);
    assert_eq!((view.channels, view.height, view.width), (1, 12, 12));
    // Normalised: (x - 0.5) / 0.25 maps [0, 1] to [-2, 2].
    assert!(view.data.iter().all(|v| (-2.0..=2.0).contains(v)));
}

#[test]
fn normalize_fits_each_channel_of_a_dataset() {
    use contrastive_vision::augment::Normalize;
    use contrastive_vision::InMemoryImages;
    // Two 2-channel 1x2 images: channel 0 holds 0, 1, 1, 1 (mean 0.75, variance 0.1875), channel 1
    // holds 0.5 everywhere (std 0, floored at 1e-6).
    let images = InMemoryImages {
        channels: 2,
        height: 1,
        width: 2,
        pixels: vec![0.0, 1.0, 0.5, 0.5, 1.0, 1.0, 0.5, 0.5],
        labels: vec![0, 1],
    };
    let n = Normalize::fit(&images).unwrap();
    assert!((n.mean[0] - 0.75).abs() < 1e-7 && (n.std[0] - 0.1875f32.sqrt()).abs() < 1e-7, "{n:?}");
    assert!((n.mean[1] - 0.5).abs() < 1e-7 && (n.std[1] - 1e-6).abs() < 1e-9, "{n:?}");
    let empty = InMemoryImages { pixels: vec![], labels: vec![], ..images };
    assert!(Normalize::fit(&empty).unwrap_err().to_string().contains("no pixels"));
    // Images of different sizes (a folder read one at a time) count by their pixels: a 1x1 image
    // of 0 and a 1x3 image of 1, 1, 1 give mean 0.75 and variance 0.1875, as above.
    use contrastive_vision::Image;
    let mixed = vec![(Image::new(1, 1, 1, vec![0.0]).unwrap(), 0), (Image::new(1, 1, 3, vec![1.0; 3]).unwrap(), 0)];
    let n = Normalize::fit(&mixed).unwrap();
    assert!((n.mean[0] - 0.75).abs() < 1e-7 && (n.std[0] - 0.1875f32.sqrt()).abs() < 1e-7, "{n:?}");
    let channels = vec![(Image::new(1, 1, 1, vec![0.0]).unwrap(), 0), (Image::new(3, 1, 1, vec![1.0; 3]).unwrap(), 0)];
    let err = Normalize::fit(&channels).unwrap_err();
    assert!(
        matches!(&err, contrastive_core::Error::Shape { what, found, .. } if what.contains("image 1") && found == &[3, 1, 1]),
        "{err}"
    );
}
