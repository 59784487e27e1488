"""Writes tests/fixtures/tiny_bert.{bin,safetensors}: one small random BERT (vocab 29, hidden 8,
2 layers, 2 heads, intermediate 16, 16 positions) saved as PyTorch's pickle with old-style names
(`bert.` prefix, LayerNorm `gamma`/`beta`, a pooler) and as safetensors with today's names, so a
test can check that both load to the same model.

    python3 text/tests/golden/tiny_bert.py
"""
import os

import torch
from safetensors.torch import save_file

torch.manual_seed(0)
H, I, V, P, L = 8, 16, 29, 16, 2
sd = {
    "embeddings.word_embeddings.weight": torch.randn(V, H),
    "embeddings.position_embeddings.weight": torch.randn(P, H),
    "embeddings.token_type_embeddings.weight": torch.randn(2, H),
    "embeddings.LayerNorm.weight": 1 + 0.1 * torch.randn(H),
    "embeddings.LayerNorm.bias": 0.1 * torch.randn(H),
}
for i in range(L):
    p = f"encoder.layer.{i}."
    for m in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"]:
        sd[p + m + ".weight"] = 0.3 * torch.randn(H, H)
        sd[p + m + ".bias"] = 0.1 * torch.randn(H)
    sd[p + "intermediate.dense.weight"] = 0.3 * torch.randn(I, H)
    sd[p + "intermediate.dense.bias"] = 0.1 * torch.randn(I)
    sd[p + "output.dense.weight"] = 0.3 * torch.randn(H, I)
    sd[p + "output.dense.bias"] = 0.1 * torch.randn(H)
    for m in ["attention.output.LayerNorm", "output.LayerNorm"]:
        sd[p + m + ".weight"] = 1 + 0.1 * torch.randn(H)
        sd[p + m + ".bias"] = 0.1 * torch.randn(H)
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, "tiny_bert.safetensors"))
old = {"bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
       for k, v in sd.items()}
old["bert.pooler.dense.weight"] = torch.randn(H, H)
old["bert.pooler.dense.bias"] = torch.randn(H)
torch.save(old, os.path.join(out, "tiny_bert.bin"), _use_new_zipfile_serialization=True)
