"""PyTorch side of vision/benches/train_step.rs: one SimCLR step of ResNet-18 (CIFAR stem) at
32x32, batch 64 (two views, head 512-512(BN)-64, NT-Xent T 0.5, Adam), CPU, 2 threads.

    OMP_WAIT_POLICY=PASSIVE python3 bench/pytorch/torch_train_step.py

The ConvNet step at 28x28 is `simclr_fmnist_torch.py --timing`, and the conv block
`torch_ref.py conv_block`.
"""
import json
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

torch.set_num_threads(2)
torch.manual_seed(0)
enc = torchvision.models.resnet18()
enc.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
enc.maxpool = nn.Identity()
enc.fc = nn.Identity()
head = nn.Sequential(nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 64))
params = list(enc.parameters()) + list(head.parameters())
opt = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-6)
v1, v2 = torch.randn(64, 3, 32, 32), torch.randn(64, 3, 32, 32)
channels_last = True
if channels_last:
    enc = enc.to(memory_format=torch.channels_last)
    v1, v2 = v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)


def nt_xent(z1, z2, t=0.5):
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    s = (z @ z.t() / t).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(s, target)


def step():
    loss = nt_xent(head(enc(v1)), head(enc(v2)))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


runs = []
for i in range(12):
    t = time.perf_counter()
    step()
    if i >= 2:
        runs.append(time.perf_counter() - t)
print(json.dumps({"fw": "torch", "bench": "resnet18_simclr_step_b64_32x32", "median_s": round(statistics.median(runs), 4),
                  "min_s": round(min(runs), 4), "reps": len(runs), "channels_last": channels_last}))
