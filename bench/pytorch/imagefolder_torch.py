#!/usr/bin/env python3
"""torchvision's counterpart of `cargo bench -p contrastive-vision --bench image_files`: the JPEGs
of mixed sizes in IMAGE_DIR (class folders) read by torchvision's ImageFolder (PIL), made into two
views by the SimCLR recipe at 96x96 and 224x224, stacked into batches of 256 by a DataLoader with
2 worker processes (1 thread each). Prints images per second over 2 epochs after a warm-up epoch
(persistent workers, so process start-up is not timed).

    cargo run --release -p contrastive-examples --bin synth_data -- images --out target/bench-images --images 2048 --max-side 512
    OMP_WAIT_POLICY=PASSIVE python3 bench/pytorch/imagefolder_torch.py [--data target/bench-images]
"""
import argparse
import json
import time

import torch
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2 as T


class TwoViews:
    def __init__(self, transform):
        self.t = transform

    def __call__(self, img):
        return self.t(img), self.t(img)


def simclr(side):
    # Our ViewAugmentation::simclr((side, side), ...): blur kernel side / 10 made odd, at least 3.
    k = max(side // 10, 3)
    k = k + 1 if k % 2 == 0 else k
    return T.Compose([
        T.ToImage(),
        T.RandomResizedCrop(side, scale=(0.08, 1.0), antialias=False),
        T.RandomHorizontalFlip(0.5),
        T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        T.RandomGrayscale(0.2),
        T.RandomApply([T.GaussianBlur(k, sigma=(0.1, 2.0))], p=0.5),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="target/bench-images")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    for side in (96, 224):
        data = datasets.ImageFolder(args.data, transform=TwoViews(simclr(side)))
        loader = DataLoader(data, batch_size=256, shuffle=True, drop_last=True, num_workers=args.workers,
                            persistent_workers=True)
        for _ in loader:  # warm-up: workers start, files enter the page cache
            pass
        start = time.perf_counter()
        n = 0
        for _ in range(args.epochs):
            for (a, b), _ in loader:
                assert a.shape == (256, 3, side, side)
                n += a.shape[0]
        seconds = time.perf_counter() - start
        print(json.dumps({"fw": "torchvision", "bench": f"image_files/simclr_jpeg_{side}",
                          "images_per_s": round(n / seconds, 1), "workers": args.workers, "images": len(data)}))


if __name__ == "__main__":
    main()
