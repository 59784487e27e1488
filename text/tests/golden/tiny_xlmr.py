"""Writes tests/fixtures/tiny_xlmr/: a small random XLM-RoBERTa (transformers' XLMRobertaModel:
vocabulary 50, hidden 16, 2 layers, 2 heads, feed-forward 32, 40 positions, one token type,
padding id 1, LayerNorm eps 1e-5) saved with save_pretrained (config.json, model.safetensors),
and golden.safetensors: three rows of token ids with right padding, the model's last hidden
state in eval mode for them, and the gradients of sum(hidden * sin(0..n)) for four weights.

    python3 text/tests/golden/tiny_xlmr.py     (torch 2.15.0, transformers 5.25.0 from PyPI)
"""
import os

import torch
from safetensors.torch import save_file
from transformers import XLMRobertaConfig, XLMRobertaModel

here = os.path.join(os.path.dirname(__file__), "..", "fixtures", "tiny_xlmr")
torch.manual_seed(0)
config = XLMRobertaConfig(
    vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
    max_position_embeddings=40, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
    hidden_act="gelu", layer_norm_eps=1e-5,
)
model = XLMRobertaModel(config, add_pooling_layer=False)
# Away from the initialisation's near-zero weights, so every term of the forward pass counts.
with torch.no_grad():
    for p in model.parameters():
        p.add_(0.2 * torch.randn_like(p))
model.eval()
model.save_pretrained(here, safe_serialization=True)

ids = torch.tensor([[0, 5, 9, 17, 2, 1, 1], [0, 33, 2, 1, 1, 1, 1], [0, 7, 8, 9, 10, 11, 2]])
mask = (ids != 1).long()
out = model(input_ids=ids, attention_mask=mask).last_hidden_state
weights = torch.sin(torch.arange(out.numel(), dtype=torch.float32)).reshape(out.shape)
(out * weights).sum().backward()
named = dict(model.named_parameters())
grads = [
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "encoder.layer.0.attention.self.query.weight",
    "encoder.layer.1.output.dense.weight",
]
golden = {"ids": ids.to(torch.int64), "hidden": out.detach().contiguous()}
golden.update({f"grad.{g}": named[g].grad.contiguous() for g in grads})
save_file(golden, os.path.join(here, "golden.safetensors"))
# A Unigram tokenizer.json of XLM-R's layout (<s>=0, <pad>=1, </s>=2, <unk>=3, Metaspace words,
# "<s> $A </s>"), on the same 50 ids, to check that padding uses <pad> and that a whole folder loads.
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import Unigram

words = ["alpha", "beta", "gamma", "delta", "river", "stone", "light", "cloud", "north", "south"]
pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
pieces += [("\u2581" + w, -2.0 - 0.1 * i) for i, w in enumerate(words)]
pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
pieces += [("\u2581", -4.0)] + [(f"x{i}", -9.0) for i in range(50 - len(pieces) - 1)]
assert len(pieces) == 50
tok = Tokenizer(Unigram(pieces, unk_id=3, byte_fallback=False))
tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
tok.post_processor = processors.TemplateProcessing(
    single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
)
tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>"])
tok.save(os.path.join(here, "tokenizer.json"))
print("wrote", here)
