"""PyTorch side of vision/benches/train_step.rs, CPU, 2 threads: one SimCLR step (two views,
head dim-dim(BN)-64, NT-Xent T 0.5, Adam) of

- resnet18_simclr_step_b64_32x32: ResNet-18 with the CIFAR stem (3x3 conv, no max pool), batch 64
- resnet18_simclr_step_b256_32x32: the same at batch 256
- resnet18_simclr_step_b32_96x96: ResNet-18 with torchvision's ImageNet stem, 96x96, batch 32
- resnet50_simclr_step_b32_96x96: ResNet-50, ImageNet stem, 96x96, batch 32

and resnet50_forward_b32_96x96: ResNet-50 in evaluation mode under no_grad, 32 images at 96x96.

    OMP_WAIT_POLICY=PASSIVE python3 bench/pytorch/torch_train_step.py            # the first
    OMP_WAIT_POLICY=PASSIVE python3 bench/pytorch/torch_train_step.py --all
    OMP_WAIT_POLICY=PASSIVE python3 bench/pytorch/torch_train_step.py --bench resnet50_forward_b32_96x96

Channels-last (oneDNN's fast layout on the CPU). Each line: median and minimum of the timed
repetitions after two warm-up ones. The ConvNet step at 28x28 is `simclr_fmnist_torch.py
--timing`, and the conv block `torch_ref.py conv_block`.
"""
import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

# name: (architecture, CIFAR stem, batch, side, training step)
BENCHES = {
    "resnet18_simclr_step_b64_32x32": ("resnet18", True, 64, 32, True),
    "resnet18_simclr_step_b256_32x32": ("resnet18", True, 256, 32, True),
    "resnet18_simclr_step_b32_96x96": ("resnet18", False, 32, 96, True),
    "resnet50_simclr_step_b32_96x96": ("resnet50", False, 32, 96, True),
    "resnet50_forward_b32_96x96": ("resnet50", False, 32, 96, False),
}


def nt_xent(z1, z2, t=0.5):
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    s = (z @ z.t() / t).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(s, target)


def run(name, reps):
    arch, cifar, batch, side, train = BENCHES[name]
    torch.manual_seed(0)
    enc = getattr(torchvision.models, arch)()
    dim = enc.fc.in_features
    if cifar:
        enc.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        enc.maxpool = nn.Identity()
    enc.fc = nn.Identity()
    enc = enc.to(memory_format=torch.channels_last)
    head = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(), nn.Linear(dim, 64))
    opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=1e-3, weight_decay=1e-6)
    v1, v2 = (torch.randn(batch, 3, side, side).contiguous(memory_format=torch.channels_last) for _ in range(2))

    def step():
        loss = nt_xent(head(enc(v1)), head(enc(v2)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def forward():
        with torch.no_grad():
            enc(v1)

    if not train:
        enc.eval()
    work = step if train else forward
    runs = []
    for i in range(reps + 2):
        t = time.perf_counter()
        work()
        if i >= 2:
            runs.append(time.perf_counter() - t)
    print(json.dumps({"fw": "torch", "bench": name, "median_s": round(statistics.median(runs), 4),
                      "min_s": round(min(runs), 4), "reps": len(runs), "channels_last": True}), flush=True)


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--bench", choices=sorted(BENCHES), default="resnet18_simclr_step_b64_32x32")
parser.add_argument("--all", action="store_true", help="every bench, one after another")
parser.add_argument("--reps", type=int, default=10)
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(args.threads)
for name in BENCHES if args.all else [args.bench]:
    run(name, args.reps)
