#!/usr/bin/env python3
"""BYOL, SimSiam, Barlow Twins, VICReg and DINO on Fashion-MNIST with lightly's own heads, losses
and momentum utilities: the reference of the `byol`, `simsiam`, `barlow_twins`, `vicreg` and
`dino` examples.

Everything but the method is simclr_fmnist_torch.py's (imported from it): the IDX data, the
augmentation (crop 0.2-1, flip, brightness/contrast 0.4 with p 0.8, 3x3 blur with p 0.5), the
4-block ConvNet (256-d), Adam 1e-3 with weight decay 1e-6, batch 256, 2 epochs, and the
evaluation of the frozen 256-d features of the 10k test images (weighted kNN k 200 t 0.1; with
--sklearn-probe, logistic regression with C = 1 on standardised features, the Rust examples'
probe). The methods, as lightly's CIFAR-10 examples (lightly 1.6.0) on a 256-wide encoder:

  byol          BYOLProjectionHead(256, 1024, 128), BYOLPredictionHead(128, 1024, 128),
                NegativeCosineSimilarity, symmetric; target = deep copy, update_momentum with
                cosine_schedule(step, total_steps, 0.996, 1) before each step
  simsiam       SimSiamProjectionHead(256, 512, 128), SimSiamPredictionHead(128, 64, 128),
                NegativeCosineSimilarity against the detached projections, symmetric
  barlow_twins  BarlowTwinsProjectionHead(256, 2048, 2048), BarlowTwinsLoss() (lambda 5e-3)
  vicreg        BarlowTwinsProjectionHead(256, 2048, 2048), VICRegLoss() (25/25/1)
  dino          DINOProjectionHead(256, 512, 64, 2048, freeze_last_layer=1), DINOLoss(2048,
                warmup_teacher_temp_epochs=5) (teacher 0.04, student 0.1, centre 0.9); teacher =
                deep copy, cosine momentum from 0.996; 2 global views (crop 0.4-1, 28x28) and 6
                local (crop 0.05-0.4, 12x12), each through the rest of the recipe

Also prints the collapse measures of the examples' history for the test features: the std of the
l2-normalised features per dimension times sqrt(D), and the effective rank (exp of the entropy of
the normalised singular values).

    python3 bench/pytorch/non_contrastive_fmnist_lightly.py --method byol --epochs 2 --sklearn-probe
"""
import argparse
import copy
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightly.loss import BarlowTwinsLoss, DINOLoss, NegativeCosineSimilarity, VICRegLoss
from lightly.models.modules.heads import (BarlowTwinsProjectionHead, BYOLPredictionHead, BYOLProjectionHead,
                                          DINOProjectionHead, SimSiamPredictionHead, SimSiamProjectionHead)
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule

from simclr_fmnist_torch import Encoder, augment, evaluate, extract, load_split, log


class TwoView(nn.Module):
    """Encoder, projector, optional predictor, optional momentum copies."""

    def __init__(self, projector, predictor=None, momentum=False):
        super().__init__()
        self.encoder = Encoder()
        self.projector = projector
        self.predictor = predictor
        self.momentum = momentum
        if momentum:
            self.encoder_m = copy.deepcopy(self.encoder)
            self.projector_m = copy.deepcopy(self.projector)
            deactivate_requires_grad(self.encoder_m)
            deactivate_requires_grad(self.projector_m)

    def project(self, x):
        return self.projector(self.encoder(x))

    def project_m(self, x):
        return self.projector_m(self.encoder_m(x)).detach()


class DINO(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.head = DINOProjectionHead(256, 512, 64, 2048, freeze_last_layer=1)
        self.encoder_t = copy.deepcopy(self.encoder)
        self.head_t = DINOProjectionHead(256, 512, 64, 2048)
        self.head_t.load_state_dict(self.head.state_dict())
        deactivate_requires_grad(self.encoder_t)
        deactivate_requires_grad(self.head_t)


def build(method):
    if method == "byol":
        return TwoView(BYOLProjectionHead(256, 1024, 128), BYOLPredictionHead(128, 1024, 128), momentum=True)
    if method == "simsiam":
        return TwoView(SimSiamProjectionHead(256, 512, 128), SimSiamPredictionHead(128, 64, 128))
    if method in ("barlow_twins", "vicreg"):
        return TwoView(BarlowTwinsProjectionHead(256, 2048, 2048))
    if method == "dino":
        return DINO()
    raise SystemExit(f"unknown method {method}")


def make_views(method, xb, gen, mean, std):
    """The normalised views of a batch: 2 global + 6 local for DINO, 2 for the others."""
    norm = lambda v: ((v - mean) / std).contiguous(memory_format=torch.channels_last)
    if method == "dino":
        return ([norm(augment(xb, gen, scale=(0.4, 1.0))) for _ in range(2)]
                + [norm(augment(xb, gen, scale=(0.05, 0.4), out=12)) for _ in range(6)])
    return [norm(augment(xb, gen)), norm(augment(xb, gen))]


def loss_of(method, model, criterion, views, step, total, epoch):
    if method == "dino":
        m = cosine_schedule(step, total, 0.996, 1)
        update_momentum(model.encoder, model.encoder_t, m)
        update_momentum(model.head, model.head_t, m)
        teacher = [model.head_t(model.encoder_t(v)).detach() for v in views[:2]]
        student = [model.head(model.encoder(v)) for v in views]
        return criterion(teacher, student, epoch=epoch)
    v1, v2 = views
    if method == "byol":
        m = cosine_schedule(step, total, 0.996, 1)
        update_momentum(model.encoder, model.encoder_m, m)
        update_momentum(model.projector, model.projector_m, m)
        p1, p2 = model.predictor(model.project(v1)), model.predictor(model.project(v2))
        z1, z2 = model.project_m(v1), model.project_m(v2)
        return 0.5 * (criterion(p1, z2) + criterion(p2, z1))
    z1, z2 = model.project(v1), model.project(v2)
    if method == "simsiam":
        p1, p2 = model.predictor(z1), model.predictor(z2)
        return 0.5 * (criterion(p1, z2.detach()) + criterion(p2, z1.detach()))
    return criterion(z1, z2)


def spread(f):
    z = F.normalize(f.double(), dim=1)
    scaled_std = (z.std(dim=0, unbiased=False).mean() * z.shape[1] ** 0.5).item()
    s = torch.linalg.svdvals(z)
    p = s / s.sum()
    rank = torch.exp(-(p[p > 0] * torch.log(p[p > 0])).sum()).item()
    return {"embedding_std": round(scaled_std, 4), "effective_rank": round(rank, 2)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--method", required=True, choices=["byol", "simsiam", "barlow_twins", "vicreg", "dino"])
    p.add_argument("--data", default=None, help="IDX folder (default: `scripts/fetch-assets fashion-mnist`)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-6)
    p.add_argument("--knn-k", type=int, default=200)
    p.add_argument("--knn-t", type=float, default=0.1)
    p.add_argument("--probe-epochs", type=int, default=100)
    p.add_argument("--probe-threads", type=int, default=1)
    p.add_argument("--sklearn-probe", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=0, help="cap on steps per epoch (0 = full epoch)")
    p.add_argument("--timing", action="store_true",
                   help="train only; median_step_s is the step without augmentation (cargo bench's measure)")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    if args.data is None:
        from paths import asset
        args.data = asset("fashion-mnist", "fashion-mnist")
    xtr, ytr = load_split(args.data, "train")
    xte, yte = load_split(args.data, "t10k")
    mean, std = xtr.mean().item(), xtr.std().item()
    model = build(args.method).to(memory_format=torch.channels_last)
    criterion = {"byol": NegativeCosineSimilarity, "simsiam": NegativeCosineSimilarity,
                 "barlow_twins": BarlowTwinsLoss, "vicreg": VICRegLoss}.get(args.method)
    criterion = criterion() if criterion else DINOLoss(output_dim=2048, warmup_teacher_temp_epochs=5)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    log({"method": args.method, "torch": torch.__version__, "threads": torch.get_num_threads(), "args": vars(args)})

    bs = args.batch_size
    steps = xtr.shape[0] // bs
    if args.max_steps:
        steps = min(steps, args.max_steps)
    total = steps * args.epochs
    train_s, step_times, step = 0.0, [], 0
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(xtr.shape[0], generator=gen)
        t0 = time.time()
        losses = []
        for s in range(steps):
            xb = xtr[perm[s * bs:(s + 1) * bs]]
            views = make_views(args.method, xb, gen, mean, std)
            ts = time.perf_counter()  # the step: forward, backward, optimiser (augmentation apart)
            loss = loss_of(args.method, model, criterion, views, step, total, epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.method == "dino":
                model.head.cancel_last_layer_gradients(current_epoch=epoch)
            opt.step()
            losses.append(loss.item())
            step_times.append(time.perf_counter() - ts)
            step += 1
        dt = time.time() - t0
        train_s += dt
        log({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 5), "last_loss": losses[-1], "steps": steps,
             "seconds": round(dt, 1), "steps_per_s": round(steps / dt, 3)})
    median = float(np.median(step_times[2:] or step_times))
    result = {"final": True, "method": args.method, "epochs": args.epochs, "batch": bs, "steps": step,
              "train_seconds": round(train_s, 1), "steps_per_s": round(step / train_s, 3),
              "median_step_s": round(median, 4)}
    if not args.timing:
        with torch.no_grad():
            ftr = extract(model.encoder, xtr, mean, std, True)
            fte = extract(model.encoder, xte, mean, std, True)
        result["spread"] = spread(fte)
        # The probe trains its own layer: outside no_grad.
        result["trained"] = evaluate(args.method, ftr, ytr, fte, yte, args)
    log(result)


if __name__ == "__main__":
    main()
