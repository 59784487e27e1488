"""Golden outputs of torchvision's ResNet-18 for tests/resnet_weights.rs.

    python3 vision/tests/golden/resnet.py > vision/tests/golden/resnet.json

Every tensor of the state dict (sorted by name, index j) is filled by a formula that Rust
reproduces: v[i] = a + b * sin(0.37 i + 1.3 j), with (a, b) by kind: conv weights (0, sqrt(3 /
fan_in)), BatchNorm weight (1, 0.2), bias (0, 0.1), running_mean (0, 0.1), running_var (1, 0.3).
The model runs in eval mode with fc replaced by the identity, on x[i] = sin(0.1 i) of shape
(2, 3, 64, 64) for the ImageNet stem and (2, 3, 32, 32) for the CIFAR stem (conv1 3x3 stride 1,
no max pool, as SimCLR's CIFAR ResNets do). The script also checks that timm's resnet18 has the
same state-dict names and shapes as torchvision's, so the same loader serves both.
torch 2.15, torchvision 0.29.2, timm 1.0.31.
"""
import json
import math

import torch
import torch.nn as nn
import torchvision


def fill(model):
    sd = model.state_dict()
    names = sorted(k for k in sd if not k.endswith("num_batches_tracked") and not k.startswith("fc."))
    for j, name in enumerate(names):
        t = sd[name]
        i = torch.arange(t.numel(), dtype=torch.float64)
        s = torch.sin(0.37 * i + 1.3 * j)
        if name.endswith("running_mean"):
            a, b = 0.0, 0.1
        elif name.endswith("running_var"):
            a, b = 1.0, 0.3
        elif t.dim() == 4:
            a, b = 0.0, math.sqrt(3.0 / (t[0].numel()))
        elif name.endswith("weight"):
            a, b = 1.0, 0.2
        else:
            a, b = 0.0, 0.1
        t.copy_((a + b * s).to(torch.float32).reshape(t.shape))
    return names


def run(cifar, side):
    model = torchvision.models.resnet18()
    if cifar:
        model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    names = fill(model)
    model.eval()
    n = 2 * 3 * side * side
    x = torch.sin(0.1 * torch.arange(n, dtype=torch.float64)).to(torch.float32).reshape(2, 3, side, side)
    with torch.no_grad():
        y = model(x)
    return names, [round(float(v), 7) for v in y.flatten()]


import timm

tv = {k: list(v.shape) for k, v in torchvision.models.resnet18().state_dict().items()}
tm = {k: list(v.shape) for k, v in timm.create_model("resnet18", pretrained=False).state_dict().items()}
assert tv == tm, "timm and torchvision resnet18 state dicts differ"

names, imagenet = run(False, 64)
_, cifar = run(True, 32)
print(json.dumps({"names": names, "imagenet_64": imagenet, "cifar_32": cifar}))
