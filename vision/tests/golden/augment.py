"""Golden outputs of torchvision's functional transforms on a fixed image, for tests/augment.rs.

    python3 vision/tests/golden/augment.py > vision/tests/golden/augment.json

The input is exact in f32: v[c, y, x] = ((7x + 13y + 29c + 3xy) mod 17) / 16, shape (3, 9, 11).
torch 2.15, torchvision 0.29.2.
"""
import json

import torch
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode


def image(c=3, h=9, w=11):
    t = torch.zeros(c, h, w)
    for ci in range(c):
        for y in range(h):
            for x in range(w):
                t[ci, y, x] = ((7 * x + 13 * y + 29 * ci + 3 * x * y) % 17) / 16
    return t


img = image()
gray = image(1)
out = {
    "crop_up": F.resized_crop(img, 1, 2, 5, 7, [9, 11], InterpolationMode.BILINEAR, antialias=False),
    "crop_down": F.resized_crop(img, 0, 0, 9, 11, [4, 5], InterpolationMode.BILINEAR, antialias=False),
    "hflip": F.hflip(img),
    "brightness_1.3": F.adjust_brightness(img, 1.3),
    "contrast_0.6": F.adjust_contrast(img, 0.6),
    "contrast_gray_1.8": F.adjust_contrast(gray, 1.8),
    "saturation_1.7": F.adjust_saturation(img, 1.7),
    "saturation_0.2": F.adjust_saturation(img, 0.2),
    "hue_0.23": F.adjust_hue(img, 0.23),
    "hue_-0.4": F.adjust_hue(img, -0.4),
    "grayscale": F.rgb_to_grayscale(img, num_output_channels=3),
    "blur_5_1.3": F.gaussian_blur(img, [5, 5], [1.3, 1.3]),
    "blur_3_0.4": F.gaussian_blur(img, [3, 3], [0.4, 0.4]),
    "solarize_0.5": F.solarize(img, 0.5),
    "normalize_imagenet": F.normalize(img, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}
print(json.dumps({k: {"shape": list(v.shape), "data": [round(float(x), 7) for x in v.flatten()]} for k, v in out.items()}))
