#!/usr/bin/env python
"""Evaluate a SentenceTransformer model folder on
  eval 1 (dev):      Lee-50 document similarity  -> Pearson / Spearman (1,225 pairs)
  eval 2 (optional): retrieval on a TSV with columns pos, lemma, example, gloss, given by the
                     environment variable RETRIEVAL_TSV -> R@1, R@10, MRR of example -> gloss

Usage:
  python3 embed_eval.py MODEL_DIR [MODEL_DIR ...] \
      [--max_seq_length 256] [--batch_size 64] [--json out.json]

Also importable: simcse_st.py uses eval_lee / eval_retrieval / load_* from here.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import csv
import json
import time

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

from paths import REPO

LEE_DIR = os.path.join(REPO, "text", "data", "lee50")
WORDNET_TSV = os.environ.get("RETRIEVAL_TSV", "")


# --------------------------------------------------------------------------- data
def load_lee():
    """50 docs (lee.cor is latin-1: contains a raw 0xA3 pound sign) + 50x50 upper-triangular matrix."""
    with open(os.path.join(LEE_DIR, "lee.cor"), "rb") as f:
        docs = [ln.strip() for ln in f.read().decode("latin-1").split("\n")]
    docs = [d for d in docs if d]
    assert len(docs) == 50, len(docs)
    sims = np.loadtxt(os.path.join(LEE_DIR, "similarities0-1.txt"))
    assert sims.shape == (50, 50)
    iu = np.triu_indices(50, k=1)  # 1,225 pairs, i<j, diagonal ignored
    return docs, sims, iu


def load_retrieval():
    with open(WORDNET_TSV, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, rows = rows[0], rows[1:]
    assert header == ["pos", "lemma", "example", "gloss"], header
    examples = [r[2] for r in rows]
    glosses = [r[3] for r in rows]
    return examples, glosses


# --------------------------------------------------------------------------- encode
@torch.no_grad()
def encode(model, texts, batch_size=64, max_seq_length=256):
    """model.encode in eval mode; restores the previous max_seq_length / train flag."""
    old_len, was_training = model.max_seq_length, model.training
    model.max_seq_length = max_seq_length
    try:
        emb = model.encode(
            texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
    finally:
        model.max_seq_length = old_len
        model.train(was_training)
    return emb.astype(np.float32)


# --------------------------------------------------------------------------- metrics
def eval_lee(model, max_seq_length=256, batch_size=64):
    docs, sims, iu = load_lee()
    e = encode(model, docs, batch_size, max_seq_length)
    cos = e @ e.T
    pred, gold = cos[iu], sims[iu]
    return {
        "lee_pearson": float(pearsonr(pred, gold)[0]),
        "lee_spearman": float(spearmanr(pred, gold)[0]),
        "lee_pairs": int(len(gold)),
    }


def eval_retrieval(model, max_seq_length=256, batch_size=64):
    """Each example retrieves among the 3,000 glosses. Gold = its own row's gloss.
    The file has 2,998 distinct glosses (two glosses occur twice); a gloss with identical text to the gold gloss
    is not counted as a competitor (rank = 1 + #{distinct-text glosses scoring strictly higher than the gold})."""
    examples, glosses = load_retrieval()
    q = encode(model, examples, batch_size, max_seq_length)
    d = encode(model, glosses, batch_size, max_seq_length)
    S = q @ d.T  # (3000, 3000) cosine
    gold = np.diag(S).copy()
    gl = np.array(glosses, dtype=object)
    same_text = gl[None, :] == gl[:, None]  # True on the diagonal and for the duplicated glosses
    higher = (S > gold[:, None]) & ~same_text
    rank = 1 + higher.sum(axis=1)
    return {
        "wn_r@1": float((rank <= 1).mean()),
        "wn_r@10": float((rank <= 10).mean()),
        "wn_mrr": float((1.0 / rank).mean()),
        "wn_median_rank": float(np.median(rank)),
        "wn_n": int(len(rank)),
    }


def evaluate(model, max_seq_length=256, batch_size=64, heldout=bool(WORDNET_TSV)):
    t0 = time.time()
    out = {"eval_max_seq_length": max_seq_length}
    out.update(eval_lee(model, max_seq_length, batch_size))
    if heldout:
        out.update(eval_retrieval(model, max_seq_length, batch_size))
    out["eval_seconds"] = round(time.time() - t0, 2)
    return out


def fmt(m):
    s = f"Lee pearson={m['lee_pearson']:.4f} spearman={m['lee_spearman']:.4f}"
    if "wn_r@1" in m:
        s += f" | WN R@1={m['wn_r@1']:.4f} R@10={m['wn_r@10']:.4f} MRR={m['wn_mrr']:.4f}"
    return s + f"  (max_seq={m['eval_max_seq_length']})"


def main():
    from sentence_transformers import SentenceTransformer

    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+", help="saved SentenceTransformer folders")
    ap.add_argument("--max_seq_length", type=int, nargs="+", default=[256])
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--no_heldout", action="store_true", help="only Lee-50, even if RETRIEVAL_TSV is set")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default=None, help="append results (jsonl)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for path in args.models:
        model = SentenceTransformer(path, device="cpu")
        for L in args.max_seq_length:
            m = evaluate(model, L, args.batch_size, heldout=bool(WORDNET_TSV) and not args.no_heldout)
            m["model"] = path
            print(f"{path}: {fmt(m)}", flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(m) + "\n")


if __name__ == "__main__":
    main()
