"""Golden value for tests/gin.rs: PyTorch Geometric's GINConv on a fixed graph.

    python3 graph/tests/golden/gin_conv.py

Two graphs in one batch: a triangle (nodes 0-2) and a path 3-4-5; 3 input features, hidden 4.
Weights and inputs by formula: W1[i, j] = 0.1 * (i - j) + 0.05, b1[i] = 0.02 * i, W2[i, j] =
0.3 sin(1 + i + 2j), b2[i] = 0.05 cos(i); x[n, f] = ((n * 3 + f) % 5) / 4.
GINConv(Sequential(Linear(3, 4), ReLU(), Linear(4, 4)), eps=0.3) computes
MLP((1 + eps) x_i + sum_j x_j). Our GIN layer applies ReLU then BatchNorm after it; with
BatchNorm in eval mode at its initial state (mean 0, var 1, weight 1, bias 0) that is
relu(GINConv(x)) / sqrt(1 + 1e-5). Summed per graph (sum readout).
torch 2.15, torch_geometric 2.8.1.
"""
import math

import torch
from torch_geometric.nn import GINConv, global_add_pool

torch.set_default_dtype(torch.float64)
mlp = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4))
conv = GINConv(mlp, eps=0.3)  # resets the MLP's parameters: set them after
with torch.no_grad():
    for i in range(4):
        mlp[0].bias[i] = 0.02 * i
        mlp[2].bias[i] = 0.05 * math.cos(i)
        for j in range(3):
            mlp[0].weight[i, j] = 0.1 * (i - j) + 0.05
        for j in range(4):
            mlp[2].weight[i, j] = 0.3 * math.sin(1 + i + 2 * j)
x = torch.tensor([[((n * 3 + f) % 5) / 4 for f in range(3)] for n in range(6)])
und = [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5)]
ei = torch.tensor([[u for u, v in und] + [v for u, v in und], [v for u, v in und] + [u for u, v in und]])
batch = torch.tensor([0, 0, 0, 1, 1, 1])
h = torch.relu(conv(x, ei)) / math.sqrt(1 + 1e-5)
print(global_add_pool(h, batch).tolist())
