"""PyTorch side of vision/benches/conv_layers.rs: each distinct convolution of ResNet-18 (CIFAR
stem, 32x32) or ResNet-50 (ImageNet stem, 96x96) with BatchNorm in training mode and ReLU,
channels-last, forward then backward of the sum of its outputs, the least of --reps runs, CPU,
2 threads.

    OMP_WAIT_POLICY=PASSIVE python3 bench/pytorch/torch_conv_layers.py
    OMP_WAIT_POLICY=PASSIVE python3 bench/pytorch/torch_conv_layers.py --net resnet50 --batch 32
"""
import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
import torch.nn as nn

RESNET18_CIFAR = [(3, 64, 3, 1, 32), (64, 64, 3, 1, 32), (64, 128, 3, 2, 32), (64, 128, 1, 2, 32),
                  (128, 128, 3, 1, 16), (128, 256, 3, 2, 16), (128, 256, 1, 2, 16), (256, 256, 3, 1, 8),
                  (256, 512, 3, 2, 8), (256, 512, 1, 2, 8), (512, 512, 3, 1, 4)]
RESNET50_96 = [(3, 64, 7, 2, 96), (64, 64, 1, 1, 24), (64, 64, 3, 1, 24), (64, 256, 1, 1, 24),
               (256, 64, 1, 1, 24), (256, 128, 1, 1, 24), (128, 128, 3, 2, 24), (128, 512, 1, 1, 12),
               (256, 512, 1, 2, 24), (512, 128, 1, 1, 12), (128, 128, 3, 1, 12), (512, 256, 1, 1, 12),
               (256, 256, 3, 2, 12), (256, 1024, 1, 1, 6), (512, 1024, 1, 2, 12), (1024, 256, 1, 1, 6),
               (256, 256, 3, 1, 6), (1024, 512, 1, 1, 6), (512, 512, 3, 2, 6), (512, 2048, 1, 1, 3),
               (1024, 2048, 1, 2, 6), (2048, 512, 1, 1, 3), (512, 512, 3, 1, 3)]

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--net", choices=["resnet18", "resnet50"], default="resnet18")
parser.add_argument("--batch", type=int)
parser.add_argument("--reps", type=int, default=8)
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(args.threads)
layers = RESNET50_96 if args.net == "resnet50" else RESNET18_CIFAR
n = args.batch or (32 if args.net == "resnet50" else 64)
total_fwd = total_bwd = 0.0
for c, o, k, s, h in layers:
    layer = nn.Sequential(nn.Conv2d(c, o, k, s, k // 2, bias=False), nn.BatchNorm2d(o), nn.ReLU())
    layer = layer.to(memory_format=torch.channels_last)
    x = torch.rand(n, c, h, h).mul(2).sub(1).contiguous(memory_format=torch.channels_last).requires_grad_()
    fwd = bwd = float("inf")
    for _ in range(args.reps):
        start = time.perf_counter()
        y = layer(x)
        fwd = min(fwd, time.perf_counter() - start)
        loss = y.sum()
        start = time.perf_counter()
        loss.backward()
        bwd = min(bwd, time.perf_counter() - start)
        x.grad = None
        layer.zero_grad(set_to_none=True)
    side = (h + 2 * (k // 2) - k) // s + 1
    flop = 2 * n * side * side * o * c * k * k
    print(f"{c:5} -> {o:5}  {k}x{k} stride {s}  {h:3}x{h:<3}  forward {fwd * 1e3:7.2f} ms ({flop / fwd / 1e9:4.0f} GFLOP/s)"
          f"  backward {bwd * 1e3:7.2f} ms ({2 * flop / bwd / 1e9:4.0f} GFLOP/s)")
    total_fwd += fwd
    total_bwd += bwd
print(f"sum of the layers above: forward {total_fwd * 1e3:.1f} ms, backward {total_bwd * 1e3:.1f} ms")
