"""Golden values for core/tests/loss_golden.rs, from the reference implementations.

    pip install torch lightly pytorch-metric-learning   # in a venv outside the repo
    python3 core/tests/golden/losses.py

The inputs are closed-form so that the Rust test rebuilds them exactly (see `fixture` there).
"""
import math
import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss, DCLLoss
from pytorch_metric_learning.losses import SupConLoss

torch.set_default_dtype(torch.float64)
N, D = 6, 5


def fixture():
    z1 = torch.tensor([[math.sin(0.37 * (i + 1) * (d + 1) + 0.11 * i) for d in range(D)] for i in range(N)])
    z2 = torch.tensor([[math.cos(0.23 * (i + 1) - 0.41 * (d + 2)) * (1 + 0.1 * d) for d in range(D)] for i in range(N)])
    z3 = torch.tensor([[math.sin(0.5 * i - 0.3 * d + 1.0) for d in range(D)] for i in range(N - 2)])
    return z1, z2, z3


z1, z2, z3 = fixture()

# lightly's NTXentLoss (SimCLR), no memory bank
print("nt_xent_t05", NTXentLoss(temperature=0.5)(z1, z2).item())
print("nt_xent_t01", NTXentLoss(temperature=0.1)(z1, z2).item())

# lightly's DCLLoss (decoupled, no weighting): symmetric over the two views
print("dcl_t01", DCLLoss(temperature=0.1, weight_fn=None)(z1, z2).item())

# SimCSE's loss (princeton-nlp/SimCSE, models.py cl_forward): z1 -> z2 in-batch, z3 hard negatives
cos = torch.cat([F.cosine_similarity(z1.unsqueeze(1), z2.unsqueeze(0), dim=-1),
                 F.cosine_similarity(z1.unsqueeze(1), z3.unsqueeze(0), dim=-1)], 1) / 0.05
print("simcse_hard_t005", F.cross_entropy(cos, torch.arange(N)).item())
cos = F.cosine_similarity(z1.unsqueeze(1), z2.unsqueeze(0), dim=-1) / 0.05
print("simcse_t005", F.cross_entropy(cos, torch.arange(N)).item())


# Chuang et al. 2020 (chingyaoc/DCL, main.py criterion) and Robinson et al. 2021 (joshr17/HCL)
def hcl_criterion(out_1, out_2, tau_plus, batch_size, beta, estimator, temperature):
    out_1, out_2 = F.normalize(out_1, dim=1), F.normalize(out_2, dim=1)
    out = torch.cat([out_1, out_2], dim=0)
    neg = torch.exp(torch.mm(out, out.t().contiguous()) / temperature)
    mask = torch.ones((2 * batch_size, 2 * batch_size), dtype=bool)
    for i in range(batch_size):
        mask[i, i] = mask[i, i + batch_size] = mask[i + batch_size, i] = mask[i + batch_size, i + batch_size] = False
    neg = neg.masked_select(mask).view(2 * batch_size, -1)
    pos = torch.exp(torch.sum(out_1 * out_2, dim=-1) / temperature)
    pos = torch.cat([pos, pos], dim=0)
    n = batch_size * 2 - 2
    if estimator == "hard":
        imp = (beta * neg.log()).exp()
        reweight_neg = (imp * neg).sum(dim=-1) / imp.mean(dim=-1)
        ng = (-tau_plus * n * pos + reweight_neg) / (1 - tau_plus)
    else:
        ng = (-tau_plus * n * pos + neg.sum(dim=-1)) / (1 - tau_plus)
    ng = torch.clamp(ng, min=n * math.e ** (-1 / temperature))
    return (-torch.log(pos / (pos + ng))).mean()


print("debiased_t05_tp01", hcl_criterion(z1, z2, 0.1, N, 0.0, "easy", 0.5).item())
print("debiased_t01_tp03", hcl_criterion(z1, z2, 0.3, N, 0.0, "easy", 0.1).item())
print("hcl_t05_b1_tp01", hcl_criterion(z1, z2, 0.1, N, 1.0, "hard", 0.5).item())
print("hcl_t02_b05_tp0", hcl_criterion(z1, z2, 0.0, N, 0.5, "hard", 0.2).item())

# SupCon: pytorch-metric-learning's SupConLoss, and Khosla et al.'s formula (HobbitLong/SupContrast)
labels = torch.tensor([0, 1, 0, 2, 1, 2])
print("supcon_pml_t01", SupConLoss(temperature=0.1)(z1, labels).item())
f = F.normalize(z1, dim=1)
logits = f @ f.t() / 0.1
logits = logits - logits.max(dim=1, keepdim=True).values.detach()
same = (labels[:, None] == labels[None, :]).double()
not_self = 1 - torch.eye(N)
same = same * not_self
log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(1, keepdim=True))
print("supcon_khosla_t01", (-(same * log_prob).sum(1) / same.sum(1)).mean().item())
