#!/usr/bin/env python
"""Reference unsupervised SimCSE fine-tuning with sentence-transformers (CPU, offline).

Unsupervised SimCSE == MultipleNegativesRankingLoss on pairs (s, s): the two columns go through two separate
forward passes in train mode, so the two "views" differ only by dropout. In-batch negatives, cosine similarity,
scale = 1/temperature, one direction (anchor->candidates), mean over the batch of cross-entropy.

Training uses the classic (pre-v3) `SentenceTransformer.old_fit` loop, which needs neither `datasets` nor
`accelerate` (the v3+ `fit`/`SentenceTransformerTrainer` need both, and they are not in the venv):
  AdamW(lr, weight_decay=0.01 on everything except bias/LayerNorm), linear decay to 0 with `warmup_steps` warmup
  ("WarmupLinear"), grad-norm clip 1.0, fp32, loss_model.train() at the start of each epoch (dropout on).

Outputs in --out:
  train_sentences.txt   the exact training sentences in epoch-0 order (batch b = lines [64b, 64b+64))
  order_epoch{e}.txt    index order for epochs e>=1 (only when --epochs > 1)
  train_log.jsonl       per step: step, epoch, lr used, loss, step wall seconds, batch width (tokens)
  parity.json           deterministic anchors for a port: eval-mode loss on batch 0, a few embedding values
  metrics.json          before/after evals, timings, settings
  model/                the trained SentenceTransformer (load with SentenceTransformer(out/model))

Example:
  scripts/fetch-assets minilm sotu
  python3 bench/pytorch/simcse_st.py --out runs/base_e1
  (MINILM_DIR=DIR takes another model folder)
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import glob
import json
import platform
import random
import re
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from embed_eval import eval_lee, evaluate, fmt

from paths import ASSETS, asset

# all-MiniLM-L6-v2 and the SOTU corpus as `scripts/fetch-assets minilm sotu` fetches them.
MODEL_DIR = os.environ.get("MINILM_DIR", os.path.join(ASSETS, "all-MiniLM-L6-v2"))
SPLIT_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


# --------------------------------------------------------------------------- data
def load_sotu_sentences(n=10000, min_chars=40, max_chars=300, seed=0):
    """Sorted file list; per file collapse all whitespace runs to one space; split on the regex
    (?<=[.!?])\\s+(?=[A-Z]); strip; keep 40 <= len(chars) <= 300; random.Random(seed).shuffle; take n.
    (No de-duplication: the 10k contain 9,995 distinct sentences.)"""
    files = sorted(glob.glob(os.path.join(asset("sotu", "sotu"), "*.txt")))
    sents = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            text = re.sub(r"\s+", " ", fh.read()).strip()
        sents.extend(s.strip() for s in SPLIT_RE.split(text))
    kept = [s for s in sents if min_chars <= len(s) <= max_chars]
    random.Random(seed).shuffle(kept)
    stats = {"files": len(files), "raw_sentences": len(sents), "kept_40_300": len(kept)}
    return kept[:n], stats


class EpochOrderSampler(Sampler):
    """Epoch 0: file order (already seed-shuffled). Epoch e>=1: random.Random(seed*1000+e).shuffle(range(n)).
    Makes batch composition trivially reproducible outside torch (orders are dumped to files)."""

    def __init__(self, n, seed, epochs, out_dir=None):
        self.n, self.seed, self.epoch = n, seed, 0
        self.orders = []
        for e in range(max(epochs, 1) + 1):  # +1: old_fit may build one extra iterator at the very end
            idx = list(range(n))
            if e > 0:
                random.Random(seed * 1000 + e).shuffle(idx)
            self.orders.append(idx)
        if out_dir:
            for e in range(1, epochs):
                with open(os.path.join(out_dir, f"order_epoch{e}.txt"), "w") as f:
                    f.write("\n".join(map(str, self.orders[e])) + "\n")

    def __iter__(self):
        order = self.orders[min(self.epoch, len(self.orders) - 1)]
        self.epoch += 1
        return iter(order)

    def __len__(self):
        return self.n


# --------------------------------------------------------------------------- model
def build_model(args):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(MODEL_DIR, device="cpu")
    if args.random_init:
        # Same architecture / tokenizer / mean pooling / normalize, but a freshly initialised BertModel
        # (transformers' own init: N(0, initializer_range=0.02) linears+embeddings, LayerNorm 1/0, zero biases).
        from transformers import BertModel

        torch.manual_seed(args.seed)
        fresh = BertModel(model[0].auto_model.config)
        model[0].auto_model.load_state_dict(fresh.state_dict(), strict=True)
        del fresh
    model.max_seq_length = args.max_seq_length
    return model


def make_loss(model, scale):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    class LoggedMNRL(MultipleNegativesRankingLoss):
        """MNRL that records loss / batch width / time of every training call."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.records = []

        def forward(self, sentence_features, labels):
            if self.training:
                self.records.append(
                    {
                        "t_start": time.perf_counter(),
                        "width": int(sentence_features[0]["input_ids"].shape[1]),
                        # every nn.Dropout inside the BERT must be in train mode (SimCSE needs the noise)
                        "dropout_on": all(mod.training for mod in self.model.modules()
                                          if isinstance(mod, torch.nn.Dropout)),
                    }
                )
            loss = super().forward(sentence_features, labels)
            if self.training:
                self.records[-1]["loss"] = float(loss.detach())
            return loss

    return LoggedMNRL(model, scale=scale)


@torch.no_grad()
def parity_anchors(model, loss_fn, sentences, batch_size):
    """Deterministic numbers (dropout off) that a port can reproduce exactly-ish before training."""
    was = model.training
    model.eval()
    loss_fn.eval()
    batch = sentences[:batch_size]
    feats = [model.preprocess(batch), model.preprocess(batch)]
    eval_loss = float(loss_fn(feats, torch.zeros(len(batch))))
    emb = model(model.preprocess(batch[:3]))["sentence_embedding"]
    f0 = model.preprocess(batch)
    out = {
        "note": "eval mode (no dropout), max_seq_length as in training; embeddings are mean-pooled + L2-normalised",
        "batch0_eval_mode_loss": eval_loss,
        "batch0_input_ids_shape": list(f0["input_ids"].shape),
        "batch0_first_input_ids": f0["input_ids"][0].tolist(),
        "first3_sentences": batch[:3],
        "first3_emb_first8": emb[:, :8].tolist(),
    }
    model.train(was)
    loss_fn.train(was)
    return out


# --------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--random_init", action="store_true", help="re-initialise the BERT weights (MiniLM-sized)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--temperature", type=float, default=0.05, help="scale = 1/temperature")
    ap.add_argument("--max_seq_length", type=int, default=32)
    ap.add_argument("--warmup_steps", type=int, default=0)
    ap.add_argument("--weight_decay", type=float, default=0.01)
    ap.add_argument("--max_grad_norm", type=float, default=1.0)
    ap.add_argument("--n_train", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval_max_seq_length", type=int, default=256)
    ap.add_argument("--no_eval_before", action="store_true")
    ap.add_argument("--no_eval_after", action="store_true", help="smoke tests only")
    ap.add_argument("--eval_each_epoch", action="store_true",
                    help="also evaluate (Lee-50, and retrieval when RETRIEVAL_TSV is set) after every epoch but the last; eval time is excluded "
                         "from the training wall time")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--log_every", type=int, default=10)
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    sentences, data_stats = load_sotu_sentences(args.n_train, seed=args.seed)
    with open(os.path.join(args.out, "train_sentences.txt"), "w") as f:
        f.write("\n".join(sentences) + "\n")
    print(f"data: {data_stats} -> using {len(sentences)} ({len(set(sentences))} distinct)", flush=True)

    model = build_model(args)
    loss_fn = make_loss(model, scale=1.0 / args.temperature)
    info = {
        "settings": vars(args) | {"scale": 1.0 / args.temperature},
        "data": data_stats | {"n_train": len(sentences), "n_distinct": len(set(sentences))},
        "env": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
    }
    import sentence_transformers
    import transformers

    info["env"] |= {"sentence_transformers": sentence_transformers.__version__, "transformers": transformers.__version__}

    info["parity"] = parity_anchors(model, loss_fn, sentences, args.batch_size)
    with open(os.path.join(args.out, "parity.json"), "w") as f:
        json.dump(info["parity"], f, indent=1)
    print(f"parity: batch0 eval-mode loss = {info['parity']['batch0_eval_mode_loss']:.6f}", flush=True)

    if not args.no_eval_before:
        before = evaluate(model, args.eval_max_seq_length)
        before["lee32"] = eval_lee(model, 32)
        info["before"] = before
        print(f"BEFORE: {fmt(before)}; Lee@32 P={before['lee32']['lee_pearson']:.4f} "
              f"S={before['lee32']['lee_spearman']:.4f}", flush=True)

    # ---------------- train
    from sentence_transformers import InputExample

    examples = [InputExample(texts=[s, s]) for s in sentences]
    torch.manual_seed(args.seed)  # dropout masks
    sampler = EpochOrderSampler(len(examples), args.seed, args.epochs, args.out)
    loader = DataLoader(examples, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * args.epochs
    print(f"train: {steps_per_epoch} steps/epoch x {args.epochs} epochs = {total_steps} steps "
          f"(batch {args.batch_size}, drop_last -> {steps_per_epoch * args.batch_size} sentences/epoch)", flush=True)

    log_path = os.path.join(args.out, "train_log.jsonl")
    open(log_path, "w").close()
    state = {"last_print": 0}

    # periodic progress print: piggy-back on the loss records (old_fit has no per-step hook without an evaluator)
    orig_forward = loss_fn.forward

    def forward_with_progress(*a, **kw):
        n = len(loss_fn.records)
        if n and n % args.log_every == 0 and n != state["last_print"] and loss_fn.training:
            state["last_print"] = n
            r = loss_fn.records
            el = r[-1]["t_start"] - r[0]["t_start"]
            print(f"  step {n}/{total_steps} loss {r[-1]['loss']:.4g} "
                  f"avg {el / (n - 1) if n > 1 else 0:.2f}s/step", flush=True)
        return orig_forward(*a, **kw)

    loss_fn.forward = forward_with_progress

    # record the pre-clip global grad norm of every step (old_fit calls torch.nn.utils.clip_grad_norm_ once per step)
    grad_norms = []
    _orig_clip = torch.nn.utils.clip_grad_norm_

    def _logged_clip(*a, **kw):
        n = _orig_clip(*a, **kw)
        grad_norms.append(float(n))
        return n

    torch.nn.utils.clip_grad_norm_ = _logged_clip

    class EpochEval:
        """old_fit calls evaluator(model, output_path, epoch, steps) at the end of every epoch."""

        primary_metric = "lee_pearson"
        greater_is_better = True

        def __init__(self):
            self.results, self.spans = [], []

        def __call__(self, mdl, output_path=None, epoch=-1, steps=-1):
            if epoch + 1 >= args.epochs:  # last epoch: the regular "after" eval does it
                return 0.0
            a, c = time.perf_counter(), time.process_time()
            m = evaluate(mdl, args.eval_max_seq_length)
            m["lee32"] = eval_lee(mdl, 32)
            m["epoch"] = epoch + 1
            self.results.append(m)
            self.spans.append((a, time.perf_counter(), time.process_time() - c))
            print(f"EPOCH {epoch + 1}: {fmt(m)}; Lee@32 P={m['lee32']['lee_pearson']:.4f} "
                  f"S={m['lee32']['lee_spearman']:.4f}", flush=True)
            return m["lee_pearson"]

    epoch_eval = EpochEval() if args.eval_each_epoch and args.epochs > 1 else None

    cpu0, t0 = time.process_time(), time.perf_counter()
    model.old_fit(
        train_objectives=[(loader, loss_fn)],
        epochs=args.epochs,
        scheduler="WarmupLinear",
        warmup_steps=args.warmup_steps,
        optimizer_class=torch.optim.AdamW,
        optimizer_params={"lr": args.lr},
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        use_amp=False,
        show_progress_bar=False,
        evaluator=epoch_eval,
        save_best_model=False,
    )
    train_wall = time.perf_counter() - t0
    train_cpu = time.process_time() - cpu0
    eval_spans = epoch_eval.spans if epoch_eval else []
    train_wall -= sum(b - a for a, b, _ in eval_spans)
    train_cpu -= sum(c for _, _, c in eval_spans)
    if epoch_eval:
        info["epoch_evals"] = epoch_eval.results
    torch.nn.utils.clip_grad_norm_ = _orig_clip
    assert len(grad_norms) == total_steps, len(grad_norms)
    recs = loss_fn.records
    assert len(recs) == total_steps, (len(recs), total_steps)
    t_end = t0 + train_wall + sum(b - a for a, b, _ in eval_spans)

    def step_sec(i):
        a = recs[i]["t_start"]
        b = recs[i + 1]["t_start"] if i + 1 < len(recs) else t_end
        return b - a - sum(e1 - e0 for e0, e1, _ in eval_spans if a <= e0 and e1 <= b)

    with open(log_path, "a") as f:
        for i, r in enumerate(recs):
            lr_used = args.lr * (
                (i + 1) / max(1, args.warmup_steps)
                if i < args.warmup_steps
                else max(0.0, (total_steps - i) / max(1, total_steps - args.warmup_steps))
            )
            f.write(json.dumps({"step": i + 1, "epoch": i // steps_per_epoch, "lr": lr_used, "loss": r["loss"],
                                "width": r["width"], "dropout_on": r["dropout_on"], "grad_norm": grad_norms[i],
                                "sec": round(step_sec(i), 4)}) + "\n")
    step_secs = [step_sec(i) for i in range(len(recs))]
    losses = [r["loss"] for r in recs]
    info["train"] = {
        "steps": total_steps,
        "wall_s": round(train_wall, 2),
        "process_cpu_s": round(train_cpu, 2),
        "steps_per_s": total_steps / train_wall,
        "sentences_per_s": total_steps * args.batch_size / train_wall,
        "median_step_s": float(np.median(step_secs)),
        "loss_first": losses[0],
        "loss_first10_mean": float(np.mean(losses[:10])),
        "loss_last10_mean": float(np.mean(losses[-10:])),
        "widths": {str(w): sum(r["width"] == w for r in recs) for w in sorted({r["width"] for r in recs})},
        "dropout_on_all_steps": all(r["dropout_on"] for r in recs),
        "grad_norm_first": grad_norms[0],
        "grad_norm_median": float(np.median(grad_norms)),
        "grad_norm_max": float(np.max(grad_norms)),
        "steps_clipped": int(sum(g > args.max_grad_norm for g in grad_norms)),
        "loadavg_end": os.getloadavg(),
    }
    print(f"train done: {total_steps} steps in {train_wall:.1f}s wall ({train_cpu:.1f}s cpu) -> "
          f"{info['train']['steps_per_s']:.3f} steps/s, {info['train']['sentences_per_s']:.1f} sent/s; "
          f"loss {losses[0]:.4g} -> last10 {info['train']['loss_last10_mean']:.4g}; "
          f"dropout on at every step: {info['train']['dropout_on_all_steps']}", flush=True)

    model.save(os.path.join(args.out, "model"))
    if args.no_eval_after:
        with open(os.path.join(args.out, "metrics.json"), "w") as f:
            json.dump(info, f, indent=1)
        return
    after = evaluate(model, args.eval_max_seq_length)
    after["lee32"] = eval_lee(model, 32)
    info["after"] = after
    print(f"AFTER:  {fmt(after)}; Lee@32 P={after['lee32']['lee_pearson']:.4f} "
          f"S={after['lee32']['lee_spearman']:.4f}", flush=True)
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
