"""Golden embeddings for tests/minilm.rs: sentence-transformers' all-MiniLM-L6-v2 (mean pooling,
L2 normalisation) on four sentences, from the folder scripts/fetch-assets writes.

    python3 text/tests/golden/minilm.py ~/.cache/contrastive/all-MiniLM-L6-v2

sentence-transformers 6.2.0, transformers 5.24.0, torch 2.15 (CPU, float32). Prints the first 8
dimensions of each embedding, the token counts, and the cosine similarities of the pairs.
"""
import json
import sys

from sentence_transformers import SentenceTransformer

SENTENCES = [
    "A man is playing a guitar.",
    "A person plays a musical instrument.",
    "The stock market fell sharply today.",
    "Contrastive learning pulls two views of one sentence together and pushes other sentences away.",
]
model = SentenceTransformer(sys.argv[1], device="cpu")
emb = model.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=True)
tok = model.tokenizer(SENTENCES)
print(json.dumps({
    "first8": [[round(float(v), 6) for v in e[:8]] for e in emb],
    "tokens": [len(ids) for ids in tok["input_ids"]],
    "cos01": round(float(emb[0] @ emb[1]), 6),
    "cos02": round(float(emb[0] @ emb[2]), 6),
    "sum_abs": [round(float(abs(e).sum()), 5) for e in emb],
}))
