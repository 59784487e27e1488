"""Writes tests/fixtures/tiny_mpnet/: a small random MPNet (transformers' MPNetModel: vocabulary
60, hidden 16, 2 layers, 2 heads, feed-forward 32, 160 positions, 32 relative position buckets,
padding id 1, LayerNorm eps 1e-5) saved with save_pretrained (config.json, model.safetensors),
a WordPiece tokenizer.json of MPNet's layout, and golden.safetensors: three rows of token ids with
right padding (one of 150 tokens, so that offsets past the exact buckets and past 128 count), the
model's last hidden state in eval mode for them, the gradients of sum(hidden * sin(0..n)) for five
weights (the relative position bias among them), and MPNet's bucket of every offset -300..300.

    python3 text/tests/golden/tiny_mpnet.py     (torch 2.15.0, transformers 5.25.0 from PyPI)
"""
import os

import torch
from safetensors.torch import save_file
from transformers import MPNetConfig, MPNetModel
from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

here = os.path.join(os.path.dirname(__file__), "..", "fixtures", "tiny_mpnet")
torch.manual_seed(0)
config = MPNetConfig(
    vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
    max_position_embeddings=160, relative_attention_num_buckets=32, pad_token_id=1, bos_token_id=0,
    eos_token_id=2, hidden_act="gelu", layer_norm_eps=1e-5,
)
model = MPNetModel(config, add_pooling_layer=False)
# Away from the initialisation's near-zero weights, so every term of the forward pass counts.
with torch.no_grad():
    for p in model.parameters():
        p.add_(0.2 * torch.randn_like(p))
model.eval()
model.save_pretrained(here, safe_serialization=True)

long = [0] + [5 + (i * 7) % 50 for i in range(148)] + [2]
ids = torch.tensor([
    [0, 5, 9, 17, 2] + [1] * 145,
    [0, 33, 2] + [1] * 147,
    long,
])
mask = (ids != 1).long()
out = model(input_ids=ids, attention_mask=mask).last_hidden_state
weights = torch.sin(torch.arange(out.numel(), dtype=torch.float32)).reshape(out.shape)
(out * weights).sum().backward()
named = dict(model.named_parameters())
grads = [
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "encoder.relative_attention_bias.weight",
    "encoder.layer.0.attention.attn.q.weight",
    "encoder.layer.1.output.dense.weight",
]
offsets = torch.arange(-300, 301)
golden = {
    "ids": ids.to(torch.int64),
    "hidden": out.detach().contiguous(),
    "buckets": MPNetEncoder.relative_position_bucket(offsets).to(torch.int64),
}
golden.update({f"grad.{g}": named[g].grad.contiguous() for g in grads})
save_file(golden, os.path.join(here, "golden.safetensors"))

# A WordPiece tokenizer.json of MPNet's layout (<s>=0, <pad>=1, </s>=2, <unk>=3, then a
# lower-cased WordPiece vocabulary holding BERT's [PAD] too, as MPNet's does; "<s> $A </s>").
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors, decoders
from tokenizers.models import WordPiece

words = ["alpha", "beta", "gamma", "delta", "river", "stone", "light", "cloud", "north", "south"]
vocab = ["<s>", "<pad>", "</s>", "<unk>", "[PAD]", "[UNK]", "<mask>"] + words + list("abcdefghijklmnopqrstuvwxyz")
vocab += [f"##{c}" for c in "aeiou"]
vocab += [f"x{i}" for i in range(60 - len(vocab))]
assert len(vocab) == 60
tok = Tokenizer(WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
tok.normalizer = normalizers.BertNormalizer(lowercase=True)
tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
tok.decoder = decoders.WordPiece()
tok.post_processor = processors.TemplateProcessing(
    single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
)
tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
tok.save(os.path.join(here, "tokenizer.json"))
print("wrote", here)
