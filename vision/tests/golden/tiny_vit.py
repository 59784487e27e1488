"""Writes tests/fixtures/tiny_vit/: a small random timm VisionTransformer (patch 8, images 32x32:
a 4x4 grid, width 24, 2 blocks, 3 heads, MLP 96, class token, no head; dynamic_img_size so that
other sizes resample the position embeddings as timm does) as model.safetensors with timm's
names, and golden.safetensors: two 32x32 images and one 48x40 pair (a 6x5 grid: the position
embeddings resampled, bicubic with antialiasing), the class token's final state in eval mode for
each, the gradients of sum(features * sin(0..n)) for five weights on the 48x40 pair, and
PyTorch's antialiased bicubic weights of 4 -> 6, 4 -> 5, 7 -> 3 and 5 -> 5 samples.

    python3 vision/tests/golden/tiny_vit.py     (torch 2.15.0, timm 1.0.31 from PyPI)
"""
import os

import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

here = os.path.join(os.path.dirname(__file__), "..", "fixtures", "tiny_vit")
torch.manual_seed(0)
model = timm.models.vision_transformer.VisionTransformer(
    img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=3, mlp_ratio=4.0, num_classes=0,
    dynamic_img_size=True,
)
# Away from the initialisation's near-zero weights, so every term of the forward pass counts.
with torch.no_grad():
    for p in model.parameters():
        p.add_(0.2 * torch.randn_like(p))
model.eval()
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(here, "model.safetensors"))

small = torch.randn(2, 3, 32, 32)
other = torch.randn(2, 3, 48, 40)
golden = {"small": small, "other": other, "small_features": model(small).detach().contiguous()}
out = model(other)
golden["other_features"] = out.detach().contiguous()
weights = torch.sin(torch.arange(out.numel(), dtype=torch.float32)).reshape(out.shape)
(out * weights).sum().backward()
named = dict(model.named_parameters())
for g in ["pos_embed", "cls_token", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.weight"]:
    golden[f"grad.{g}"] = named[g].grad.contiguous()
# Each resize's weights: the images of the unit vectors, resized along the width (PyTorch's
# antialiased path gives other numbers along a height whose width is 1).
for n_in, n_out in [(4, 6), (4, 5), (7, 3), (5, 5)]:
    eye = torch.eye(n_in).reshape(n_in, 1, 1, n_in)
    w = F.interpolate(eye, size=(1, n_out), mode="bicubic", align_corners=False, antialias=True)
    golden[f"resize_{n_in}_{n_out}"] = w.reshape(n_in, n_out).t().contiguous()
save_file(golden, os.path.join(here, "golden.safetensors"))
print("wrote", here, timm.__version__)
