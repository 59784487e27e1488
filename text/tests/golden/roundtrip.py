"""Loads a folder written by SentenceEncoder::save with sentence-transformers and prints the first
8 dimensions of the embeddings of tests/minilm.rs's sentences (they must equal FIRST8).

    SAVE_ENCODER_TO=/tmp/exported cargo test -p contrastive-text --test minilm sentence_encoder
    python3 text/tests/golden/roundtrip.py /tmp/exported
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
emb = model.encode(SENTENCES, convert_to_numpy=True)
print(json.dumps([[round(float(v), 6) for v in e[:8]] for e in emb]))
