"""Golden trajectories for core/tests/optim.rs: torch.optim.SGD and torch.optim.AdamW, and LARS as
in SimCLR's code (google-research/simclr, lars_optimizer.py), in f64.

    python3 core/tests/golden/optim.py
"""
import math
import torch

torch.set_default_dtype(torch.float64)


def init():
    w = torch.tensor([[0.1 * (i * 4 + j) - 0.5 for j in range(4)] for i in range(3)], requires_grad=True)
    b = torch.tensor([0.05 * j - 0.1 for j in range(4)], requires_grad=True)
    return w, b


def loss_fn(w, b):
    rows = torch.tensor([1.0 + 0.1 * i for i in range(3)])[:, None]
    return ((w - 0.3) ** 2 * rows).sum() + torch.sin(3 * b).sum() + 0.5 * (w * b[None, :]).sum()


def run(make, steps=5, lrs=None):
    w, b = init()
    opt = make(w, b)
    for s in range(steps):
        if lrs:
            for g in opt.param_groups:
                g["lr"] = lrs[s]
        opt.zero_grad()
        loss_fn(w, b).backward()
        opt.step()
    return w.detach().flatten().tolist() + b.detach().tolist()


def show(name, values):
    print(f"{name}: [{', '.join(repr(v) for v in values)}]")


show("sgd_momentum_dampening_wd", run(lambda w, b: torch.optim.SGD([w, b], lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)))
show("sgd_nesterov", run(lambda w, b: torch.optim.SGD([w, b], lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.001)))
show("sgd_plain_lr_schedule", run(lambda w, b: torch.optim.SGD([w, b], lr=0.1), lrs=[0.1, 0.05, 0.2, 0.01, 0.1]))
show("adamw_groups", run(lambda w, b: torch.optim.AdamW([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}], lr=0.01, betas=(0.9, 0.999), eps=1e-8)))


def lars(steps=5, lr=0.5, momentum=0.9, wd=0.01, eeta=0.001):
    # SimCLR LARSOptimizer.apply_gradients, with exclude_from_weight_decay/layer_adaptation = bias
    w, b = init()
    bufs = [torch.zeros_like(w), torch.zeros_like(b)]
    for _ in range(steps):
        w.grad = b.grad = None
        loss_fn(w, b).backward()
        with torch.no_grad():
            for k, (p, excluded) in enumerate([(w, False), (b, True)]):
                grad = p.grad.clone()
                if not excluded:
                    grad = grad + wd * p
                    w_norm, g_norm = torch.norm(p), torch.norm(grad)
                    trust = torch.where(w_norm > 0, torch.where(g_norm > 0, eeta * w_norm / g_norm, 1.0), 1.0)
                else:
                    trust = 1.0
                scaled_lr = lr * trust
                bufs[k] = momentum * bufs[k] + scaled_lr * grad
                p -= bufs[k]
    return w.detach().flatten().tolist() + b.detach().tolist()


show("lars", lars())
# the trust ratio of w at the start: eeta * |w| / |grad + wd * w|
w, b = init()
loss_fn(w, b).backward()
g = w.grad + 0.01 * w
print("lars_trust_ratio_w0:", repr((0.001 * torch.norm(w) / torch.norm(g)).item()))
