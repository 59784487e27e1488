"""Writes tests/fixtures/tiny_roberta/: RoBERTa's byte-level BPE tokenizer.json (tokenizers'
BpeTrainer on a few sentences: <s>=0, <pad>=1, </s>=2, <unk>=3, the 256 byte symbols, merges up to
300 ids; ByteLevel pre-tokenizer without a prefix space; "<s> $A </s>"), a small random RoBERTa
(transformers' RobertaModel: hidden 16, 2 layers, 2 heads, feed-forward 32, 40 positions, one
token type, padding id 1, LayerNorm eps 1e-5) saved with save_pretrained (config.json,
model.safetensors), and golden.safetensors: the tokenizer's ids for four sentences (accents,
a dash, CJK and an emoji, which byte-level BPE splits into bytes) padded with <pad> to the longest,
the model's last hidden state in eval mode for them, and the gradients of sum(hidden * sin(0..n))
for four weights.

    python3 text/tests/golden/tiny_roberta.py   (torch 2.15.0, transformers 5.25.0, tokenizers 0.23.3 from PyPI)
"""
import os

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import RobertaConfig, RobertaModel

here = os.path.join(os.path.dirname(__file__), "..", "fixtures", "tiny_roberta")
os.makedirs(here, exist_ok=True)

corpus = [
    "The river runs north past the stone bridge.",
    "A cloud of light rose over the southern hills.",
    "The stone was cold, and the river was colder.",
    "North and south of the river the fields lay open.",
] * 20
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=300, min_frequency=2, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
tok.train_from_iterator(corpus, trainer)
tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                  add_prefix_space=False)
assert [tok.token_to_id(t) for t in ["<s>", "<pad>", "</s>", "<unk>"]] == [0, 1, 2, 3]
tok.save(os.path.join(here, "tokenizer.json"))

sentences = ["The river runs north.", "Café naïve — 東京 😀", "stone", "the  cold river, colder"]
tok.enable_padding(pad_id=1, pad_token="<pad>")
ids = torch.tensor([e.ids for e in tok.encode_batch(sentences)], dtype=torch.int64)

torch.manual_seed(0)
config = RobertaConfig(
    vocab_size=tok.get_vocab_size(), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
    intermediate_size=32, max_position_embeddings=40, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
    eos_token_id=2, hidden_act="gelu", layer_norm_eps=1e-5,
)
assert ids.shape[1] + 2 <= config.max_position_embeddings
model = RobertaModel(config, add_pooling_layer=False)
# Away from the initialisation's near-zero weights, so every term of the forward pass counts.
with torch.no_grad():
    for p in model.parameters():
        p.add_(0.2 * torch.randn_like(p))
model.eval()
model.save_pretrained(here, safe_serialization=True)

mask = (ids != 1).long()
out = model(input_ids=ids, attention_mask=mask).last_hidden_state
weights = torch.sin(torch.arange(out.numel(), dtype=torch.float32)).reshape(out.shape)
(out * weights).sum().backward()
named = dict(model.named_parameters())
grads = [
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "encoder.layer.0.attention.self.key.weight",
    "encoder.layer.1.intermediate.dense.weight",
]
golden = {"ids": ids, "hidden": out.detach().contiguous()}
golden.update({f"grad.{g}": named[g].grad.contiguous() for g in grads})
save_file(golden, os.path.join(here, "golden.safetensors"))
print("wrote", here, "ids", ids.tolist())
