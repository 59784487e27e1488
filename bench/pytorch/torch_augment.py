#!/usr/bin/env python3
"""torchvision's counterpart of `cargo bench -p contrastive-vision --bench augment`
(`simclr_rgb_32x32`): the SimCLR recipe at 32x32 RGB on 4,096 random float images, two views
each, torchvision.transforms.v2 on tensors, a DataLoader with 2 worker processes (1 thread each)
and batches of 256 stacked by the default collate. Prints images per second over 3 epochs after a
warm-up epoch (persistent workers, so process start-up is not timed).

    OMP_WAIT_POLICY=PASSIVE python3 bench/pytorch/torch_augment.py
"""
import json
import time

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2 as T

IMAGES, SIDE = 4096, 32


class TwoViews(Dataset):
    def __init__(self, x, transform):
        self.x, self.t = x, transform

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        img = self.x[i]
        return self.t(img), self.t(img)


def main():
    torch.manual_seed(0)
    x = torch.rand(IMAGES, 3, SIDE, SIDE)
    # Our ViewAugmentation::simclr((32, 32), ...): blur kernel max(32 / 10, 3) = 3.
    transform = T.Compose([
        T.RandomResizedCrop(SIDE, scale=(0.08, 1.0), antialias=False),
        T.RandomHorizontalFlip(0.5),
        T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        T.RandomGrayscale(0.2),
        T.RandomApply([T.GaussianBlur(3, sigma=(0.1, 2.0))], p=0.5),
        T.Normalize([0.49, 0.48, 0.45], [0.25, 0.24, 0.26]),
    ])
    loader = DataLoader(TwoViews(x, transform), batch_size=256, shuffle=True, drop_last=True,
                        num_workers=2, persistent_workers=True)
    for _ in loader:  # warm-up: workers start
        pass
    epochs = 3
    start = time.perf_counter()
    for _ in range(epochs):
        for a, b in loader:
            assert a.shape == (256, 3, SIDE, SIDE)
    seconds = time.perf_counter() - start
    print(json.dumps({"fw": "torchvision", "bench": "augment/simclr_rgb_32x32", "images_per_s": round(IMAGES * epochs / seconds, 1),
                      "seconds_per_epoch": round(seconds / epochs, 3), "workers": 2}))


if __name__ == "__main__":
    main()
