#!/usr/bin/env python3
"""SimCLR on Fashion-MNIST: a plain PyTorch CPU reference implementation.

Written as a side-by-side reference for a later Rust (candle) port, so every
step is written out with basic tensor ops, and the whole recipe is listed here.

Data
  IDX gz files read directly (train-images-idx3-ubyte.gz, train-labels-...,
  t10k-images-..., t10k-labels-...). Pixels are uint8 / 255 -> [0,1], shape
  (N,1,28,28). MEAN/STD are the scalar mean/std of the training pixels; the
  network input is (x - MEAN) / STD, applied after augmentation.

Augmentation (each of the two views is drawn independently, per image, in this order)
  1. RandomResizedCrop(28, scale=(0.2, 1.0), ratio=(3/4, 4/3)): the torchvision
     get_params rule (10 tries: area ~ U(scale)*784, log-aspect ~ U(log 3/4, log 4/3),
     w = round(sqrt(area*aspect)), h = round(sqrt(area/aspect)), first try with
     0<w<=28 and 0<h<=28 wins, top ~ randint(0, 28-h), left ~ randint(0, 28-w);
     if no try fits, the whole image). The crop is resized back to 28x28 by
     bilinear sampling (affine_grid + grid_sample, align_corners=False,
     padding_mode='border'). This is torchvision's crop-then-resize, except that
     the edge pixels may read the real neighbours just outside the crop.
  2. Horizontal flip with p=0.5, done in the same affine map (x scale negated).
  3. With p=0.8, brightness then contrast jitter, strength 0.4 (fixed order):
       b ~ U(0.6, 1.4): x = clamp(x * b, 0, 1)
       c ~ U(0.6, 1.4): x = clamp(c * x + (1 - c) * mean(x), 0, 1)   (mean over the image)
  4. With p=0.5, Gaussian blur, 3x3 kernel, sigma ~ U(0.1, 2.0), separable 1-D
     taps [e, 1, e] / (1 + 2e) with e = exp(-1 / (2 sigma^2)), reflect padding.
  5. Normalise: (x - MEAN) / STD.

Model
  Encoder f (about 0.39M parameters): four [Conv3x3(pad 1, bias=False), BatchNorm2d, ReLU] blocks:
  1->32 stride 1 (28x28), 32->64 stride 2 (14x14), 64->128 stride 2 (7x7),
  128->256 stride 2 (4x4), then global average pool -> h (256-d).
  Projection head g: Linear(256,256,bias=False) - BatchNorm1d(256) - ReLU - Linear(256,64) -> z.
  Default PyTorch init. BatchNorm: eps 1e-5, momentum 0.1.
  Each view is a separate forward pass (batch statistics per view), as in lightly's SimCLR example.

Loss: NT-Xent (normalized temperature-scaled cross entropy)
  z = L2-normalise(cat[z1, z2]) (2N x 64); S = z z^T / T; diagonal set to -inf;
  row i has its positive at (i + N) mod 2N and 2N-2 negatives; loss = mean
  cross entropy over all 2N rows. T = 0.5 by default (lightly CIFAR recipe), --temperature 0.2 also works.

Optimisation
  Adam(lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 1e-6 (coupled L2,
  torch.optim.Adam)), constant learning rate, batch 256 source images (512 views),
  drop_last, new shuffle every epoch.

Evaluation (frozen encoder in eval mode, BN running stats; 256-d h, not z; test set of 10k)
  kNN: weighted kNN as in lightly/InstDisc knn_predict: L2-normalised features,
       cosine similarity to all train features, top k=200, weights exp(sim/0.1),
       class score = sum of weights, top-1 accuracy.
  Linear probe: features standardised per dimension (train mean/std, std clamped at 1e-6),
       Linear(d,10), Adam lr 1e-3, no weight decay, batch 256, 100 epochs,
       cross entropy; accuracy on the test set after the last epoch (no early stopping).
       With --sklearn-probe, sklearn LogisticRegression(max_iter=1000) is also fitted on the same standardised features.
  Baselines: (a) raw pixels in [0,1] flattened to 784-d; (b) the same encoder
  straight after its seeded init, before any step (its BN running stats are mean 0 / var 1).

Output: one JSON line per epoch, then one final JSON line with all the metrics.
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

# OpenMP threads sleep instead of spin-waiting. On a shared 2-core machine the spinning
# made 2-thread steps about 3x slower (measured); must be set before torch starts OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------- data

def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    assert zero == 0 and dtype_code == 0x08, f"{path}: not a uint8 IDX file"
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_split(data_dir, split):
    x = read_idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(x.copy()).float().div_(255.0).unsqueeze(1)  # (N,1,28,28) in [0,1]
    y = torch.from_numpy(y.astype(np.int64))
    return x, y


# ----------------------------------------------------------------------------- augmentation

def rrc_params(n, H, W, scale, ratio, gen):
    """Vectorised torchvision RandomResizedCrop.get_params: returns (top, left, h, w) float tensors."""
    tries = 10
    area = float(H * W)
    target = area * torch.empty(n, tries).uniform_(scale[0], scale[1], generator=gen)
    log_r = torch.empty(n, tries).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    ar = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * ar))
    h = torch.round(torch.sqrt(target / ar))
    ok = (w > 0) & (w <= W) & (h > 0) & (h <= H)
    first = ok.float().argmax(dim=1, keepdim=True)  # index of the first fitting try
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    any_ok = ok.any(dim=1)
    # fallback for a square image: the whole image
    w = torch.where(any_ok, w, torch.full_like(w, W))
    h = torch.where(any_ok, h, torch.full_like(h, H))
    u_top = torch.rand(n, generator=gen)
    u_left = torch.rand(n, generator=gen)
    top = torch.floor(u_top * (H - h + 1))
    left = torch.floor(u_left * (W - w + 1))
    return top, left, h, w


def augment(x, gen, scale=(0.2, 1.0), p_jitter=0.8, jitter=0.4, p_blur=0.5, sigma=(0.1, 2.0), out=None):
    """x: (N,1,H,W) in [0,1]. Returns one augmented view in [0,1] (not yet normalised), of
    out x out pixels if `out` is given (multi-crop's local views), else of the input's size."""
    n, _, H, W = x.shape
    # 1+2. random resized crop + horizontal flip as one affine resampling
    top, left, h, w = rrc_params(n, H, W, scale, (3.0 / 4.0, 4.0 / 3.0), gen)
    flip = torch.rand(n, generator=gen) < 0.5
    sx = w / W
    sy = h / H
    cx = (2.0 * left + w) / W - 1.0
    cy = (2.0 * top + h) / H - 1.0
    sx = torch.where(flip, -sx, sx)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = sx
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, (n, 1, out or H, out or W), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # 3. brightness then contrast, with p_jitter (factor 1 = no change otherwise)
    apply_j = torch.rand(n, generator=gen) < p_jitter
    b = torch.empty(n).uniform_(1 - jitter, 1 + jitter, generator=gen)
    c = torch.empty(n).uniform_(1 - jitter, 1 + jitter, generator=gen)
    b = torch.where(apply_j, b, torch.ones_like(b)).view(n, 1, 1, 1)
    c = torch.where(apply_j, c, torch.ones_like(c)).view(n, 1, 1, 1)
    x = (x * b).clamp_(0, 1)
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (c * x + (1 - c) * m).clamp_(0, 1)
    # 4. gaussian blur 3x3 with p_blur (taps [0,1,0] otherwise)
    apply_b = torch.rand(n, generator=gen) < p_blur
    s = torch.empty(n).uniform_(sigma[0], sigma[1], generator=gen)
    e = torch.exp(-1.0 / (2.0 * s * s))
    e = torch.where(apply_b, e, torch.zeros_like(e))
    k_side = (e / (1 + 2 * e)).view(n, 1, 1, 1)
    k_mid = (1 / (1 + 2 * e)).view(n, 1, 1, 1)
    xp = F.pad(x, (1, 1, 0, 0), mode="reflect")
    x = k_side * xp[..., :, :-2] + k_mid * xp[..., :, 1:-1] + k_side * xp[..., :, 2:]
    xp = F.pad(x, (0, 0, 1, 1), mode="reflect")
    x = k_side * xp[..., :-2, :] + k_mid * xp[..., 1:-1, :] + k_side * xp[..., 2:, :]
    return x


# ----------------------------------------------------------------------------- model

def conv_bn_relu(cin, cout, stride):
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            *conv_bn_relu(1, 32, 1),
            *conv_bn_relu(32, 64, 2),
            *conv_bn_relu(64, 128, 2),
            *conv_bn_relu(128, 256, 2),
        )
        self.dim = 256

    def forward(self, x):
        return self.net(x).mean(dim=(2, 3))  # global average pool -> (N,256)


class SimCLR(nn.Module):
    def __init__(self, proj_dim=64):
        super().__init__()
        self.encoder = Encoder()
        self.head = nn.Sequential(
            nn.Linear(256, 256, bias=False),
            nn.BatchNorm1d(256),
            nn.ReLU(inplace=True),
            nn.Linear(256, proj_dim),
        )

    def forward(self, x):
        h = self.encoder(x)
        return h, self.head(h)


def nt_xent(z1, z2, temperature):
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    sim = z @ z.t() / temperature
    eye = torch.eye(2 * n, dtype=torch.bool)
    sim = sim.masked_fill(eye, float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def extract(encoder, x, mean, std, channels_last, bs=1000):
    encoder.eval()
    out = []
    for i in range(0, x.shape[0], bs):
        xb = (x[i:i + bs] - mean) / std
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        out.append(encoder(xb))
    return torch.cat(out)


@torch.no_grad()
def knn_accuracy(train_f, train_y, test_f, test_y, k=200, t=0.1, num_classes=10, chunk=500):
    bank = F.normalize(train_f, dim=1)
    correct = 0
    for i in range(0, test_f.shape[0], chunk):
        q = F.normalize(test_f[i:i + chunk], dim=1)
        sim = q @ bank.t()
        w, idx = sim.topk(k, dim=1)
        w = (w / t).exp()
        lab = train_y[idx]  # (B,k)
        scores = torch.zeros(q.shape[0], num_classes).scatter_add_(1, lab, w)
        correct += (scores.argmax(1) == test_y[i:i + chunk]).sum().item()
    return correct / test_f.shape[0]


def standardise(train_f, test_f):
    mu = train_f.mean(0, keepdim=True)
    sd = train_f.std(0, keepdim=True).clamp_min(1e-6)
    return (train_f - mu) / sd, (test_f - mu) / sd


def linear_probe(train_f, train_y, test_f, test_y, seed, epochs=100, bs=256, lr=1e-3, num_classes=10,
                 threads=1):
    # tiny ops: 1 thread is much faster than 2 (no OpenMP sync per op); does not change the result
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    train_f, test_f = standardise(train_f, test_f)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clf = nn.Linear(train_f.shape[1], num_classes)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    n = train_f.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            loss = F.cross_entropy(clf(train_f[idx]), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        train_acc = (clf(train_f).argmax(1) == train_y).float().mean().item()
        test_acc = (clf(test_f).argmax(1) == test_y).float().mean().item()
    torch.set_num_threads(prev_threads)
    return test_acc, train_acc


def sklearn_probe(train_f, train_y, test_f, test_y):
    from sklearn.linear_model import LogisticRegression
    tr, te = standardise(train_f, test_f)
    clf = LogisticRegression(max_iter=1000)
    clf.fit(tr.numpy(), train_y.numpy())
    return float(clf.score(te.numpy(), test_y.numpy()))


def evaluate(name, train_f, train_y, test_f, test_y, args):
    t0 = time.time()
    res = {"knn": knn_accuracy(train_f, train_y, test_f, test_y, k=args.knn_k, t=args.knn_t)}
    t1 = time.time()
    res["linear"], res["linear_train"] = linear_probe(train_f, train_y, test_f, test_y, args.seed,
                                                      epochs=args.probe_epochs, threads=args.probe_threads)
    t2 = time.time()
    res["knn_s"] = round(t1 - t0, 1)
    res["linear_s"] = round(t2 - t1, 1)
    if args.sklearn_probe:
        res["sklearn_lr"] = sklearn_probe(train_f, train_y, test_f, test_y)
        res["sklearn_s"] = round(time.time() - t2, 1)
    log({"eval": name, **res})
    return res


def eval_model(model, xtr, ytr, xte, yte, mean, std, channels_last, epoch, args):
    t0 = time.time()
    ftr = extract(model.encoder, xtr, mean, std, channels_last)
    fte = extract(model.encoder, xte, mean, std, channels_last)
    log({"extract_s": round(time.time() - t0, 1), "epoch": epoch})
    res = evaluate(f"simclr_ep{epoch}", ftr, ytr, fte, yte, args)
    if args.save:
        np.savez_compressed(f"{args.save}.features_ep{epoch}.npz", train=ftr.numpy(), train_y=ytr.numpy(),
                            test=fte.numpy(), test_y=yte.numpy())
    model.train()
    return res


def log(d):
    print(json.dumps(d), flush=True)


# ----------------------------------------------------------------------------- training

def train_step(model, opt, xb, gen, mean, std, temperature, channels_last):
    t0 = time.perf_counter()
    v1 = (augment(xb, gen) - mean) / std
    v2 = (augment(xb, gen) - mean) / std
    if channels_last:
        v1 = v1.contiguous(memory_format=torch.channels_last)
        v2 = v2.contiguous(memory_format=torch.channels_last)
    t1 = time.perf_counter()
    _, z1 = model(v1)
    _, z2 = model(v2)
    loss = nt_xent(z1, z2, temperature)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    t2 = time.perf_counter()
    return loss.item(), t1 - t0, t2 - t1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="IDX folder (default: `scripts/fetch-assets fashion-mnist`)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-6)
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--knn-k", type=int, default=200)
    p.add_argument("--knn-t", type=float, default=0.1)
    p.add_argument("--probe-epochs", type=int, default=100)
    p.add_argument("--probe-threads", type=int, default=1, help="threads for the linear-probe loop")
    p.add_argument("--sklearn-probe", action="store_true", help="also fit sklearn LogisticRegression(max_iter=1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-channels-last", action="store_true",
                   help="keep NCHW layout (channels_last only changes speed)")
    p.add_argument("--timing", action="store_true", help="only time train steps, then exit")
    p.add_argument("--timing-warmup", type=int, default=5)
    p.add_argument("--timing-steps", type=int, default=20)
    p.add_argument("--max-steps", type=int, default=0, help="cap on steps per epoch (0 = full epoch)")
    p.add_argument("--eval-at", default="", help="comma list of extra epochs after which to run the full eval "
                   "(the learning rate is constant, so these equal standalone runs of that length)")
    p.add_argument("--train-budget-min", type=float, default=0.0,
                   help="stop before an epoch that would end past this many minutes of training (0 = off)")
    p.add_argument("--skip-baselines", action="store_true", help="skip the raw-pixel and untrained-encoder evals")
    p.add_argument("--save", default="", help="write the trained weights to PATH.pt and PATH.safetensors")
    p.add_argument("--dump-parity", default="",
                   help="write init weights, 8 fixed augmented view pairs, their h/z and loss to this .safetensors")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)  # augmentation + shuffling
    channels_last = not args.no_channels_last
    t_start = time.time()

    if args.data is None:
        from paths import asset
        args.data = asset("fashion-mnist", "fashion-mnist")
    xtr, ytr = load_split(args.data, "train")
    xte, yte = load_split(args.data, "t10k")
    mean, std = xtr.mean().item(), xtr.std().item()
    log({"data": args.data, "train": list(xtr.shape), "test": list(xte.shape), "mean": round(mean, 4),
         "std": round(std, 4), "torch": torch.__version__, "threads": torch.get_num_threads(),
         "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
         "args": vars(args)})

    model = SimCLR()
    n_params = sum(p.numel() for p in model.encoder.parameters())
    n_params_head = sum(p.numel() for p in model.head.parameters())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    bs = args.batch_size

    if args.dump_parity:
        from safetensors.torch import save_file
        g2 = torch.Generator().manual_seed(1234)
        xb = xtr[:8]
        v1 = (augment(xb, g2) - mean) / std
        v2 = (augment(xb, g2) - mean) / std
        model.train()
        h1, z1 = model(v1)
        h2, z2 = model(v2)
        loss = nt_xent(z1, z2, args.temperature)
        model.eval()
        with torch.no_grad():
            h_eval = model.encoder((xb - mean) / std)
        model.train()
        tensors = {f"init.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
        tensors.update({"x": xb.contiguous(), "v1": v1.contiguous(), "v2": v2.contiguous(),
                        "h1_train": h1.detach(), "z1_train": z1.detach().contiguous(),
                        "h2_train": h2.detach(), "z2_train": z2.detach().contiguous(),
                        "h_eval": h_eval.contiguous(), "loss": loss.detach().reshape(1),
                        "mean_std": torch.tensor([mean, std])})
        save_file(tensors, args.dump_parity)
        log({"parity_dump": args.dump_parity, "loss": loss.item()})
        # restore the exact init so the run below is unaffected (BN running stats were touched)
        torch.manual_seed(args.seed)
        model = SimCLR()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)

    if args.timing:
        model.train()
        perm = torch.randperm(xtr.shape[0], generator=gen)
        aug_t, step_t = [], []
        for s in range(args.timing_warmup + args.timing_steps):
            xb = xtr[perm[s * bs:(s + 1) * bs]]
            _, ta, ts = train_step(model, opt, xb, gen, mean, std, args.temperature, channels_last)
            if s >= args.timing_warmup:
                aug_t.append(ta)
                step_t.append(ts)
        a, st = float(np.mean(aug_t)), float(np.mean(step_t))
        log({"timing": True, "batch": bs, "steps": args.timing_steps, "warmup": args.timing_warmup,
             "threads": torch.get_num_threads(), "channels_last": channels_last,
             "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
             "aug_s_per_step": round(a, 4), "train_s_per_step": round(st, 4),
             "train_s_per_step_median": round(float(np.median(step_t)), 4),
             "train_img_per_s": round(bs / st, 1), "train_views_per_s": round(2 * bs / st, 1),
             "total_img_per_s_incl_aug": round(bs / (a + st), 1),
             "load_avg_1m": os.getloadavg()[0]})
        return

    results = {"encoder_params": n_params, "head_params": n_params_head}
    if not args.skip_baselines:
        # (a) raw pixels
        results["raw_pixels"] = evaluate("raw_pixels", xtr.flatten(1), ytr, xte.flatten(1), yte, args)
        # (b) untrained encoder: the exact init training starts from
        t0 = time.time()
        ftr = extract(model.encoder, xtr, mean, std, channels_last)
        fte = extract(model.encoder, xte, mean, std, channels_last)
        log({"extract_s": round(time.time() - t0, 1)})
        results["untrained"] = evaluate("untrained_encoder", ftr, ytr, fte, yte, args)

    steps = xtr.shape[0] // bs
    if args.max_steps:
        steps = min(steps, args.max_steps)
    eval_at = {int(e) for e in args.eval_at.split(",") if e.strip()}
    epoch_log = []
    t_train0 = time.time()
    train_s = 0.0  # training wall time only (evals excluded)
    epochs_done = 0
    for epoch in range(1, args.epochs + 1):
        if args.train_budget_min and epoch_log and \
                train_s + epoch_log[-1]["seconds"] > 60 * args.train_budget_min:
            log({"stop": f"train budget {args.train_budget_min} min reached", "epochs_done": epochs_done})
            break
        model.train()
        c0 = time.process_time()
        perm = torch.randperm(xtr.shape[0], generator=gen)
        t0 = time.time()
        tot_loss, tot_aug, tot_step = 0.0, 0.0, 0.0
        for s in range(steps):
            xb = xtr[perm[s * bs:(s + 1) * bs]]
            l, ta, ts = train_step(model, opt, xb, gen, mean, std, args.temperature, channels_last)
            tot_loss += l
            tot_aug += ta
            tot_step += ts
        dt = time.time() - t0
        train_s += dt
        epochs_done = epoch
        rec = {"epoch": epoch, "loss": round(tot_loss / steps, 5), "steps": steps, "seconds": round(dt, 1),
               "img_per_s": round(steps * bs / dt, 1), "views_per_s": round(2 * steps * bs / dt, 1),
               "aug_seconds": round(tot_aug, 1), "fwd_bwd_opt_seconds": round(tot_step, 1),
               "cpu_seconds": round(time.process_time() - c0, 1), "train_seconds_so_far": round(train_s, 1),
               "load_avg_1m": round(os.getloadavg()[0], 2)}
        epoch_log.append(rec)
        log(rec)
        if epoch in eval_at and epoch != args.epochs:
            results[f"simclr_ep{epoch}"] = eval_model(model, xtr, ytr, xte, yte, mean, std, channels_last,
                                                      epoch, args)
    if f"simclr_ep{epochs_done}" not in results:
        results[f"simclr_ep{epochs_done}"] = eval_model(model, xtr, ytr, xte, yte, mean, std, channels_last,
                                                        epochs_done, args)

    if args.save:
        from safetensors.torch import save_file
        torch.save(model.state_dict(), args.save + ".pt")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.save + ".safetensors")

    log({"final": True, "epochs": epochs_done, "wall_seconds_incl_evals": round(time.time() - t_train0, 1), "steps_per_epoch": steps, "batch": bs,
         "temperature": args.temperature, "seed": args.seed, "train_seconds": round(train_s, 1),
         "total_seconds": round(time.time() - t_start, 1), "epochs_log": epoch_log, **results})


if __name__ == "__main__":
    main()
