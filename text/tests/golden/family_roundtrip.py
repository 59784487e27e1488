"""Loads the folders that `simcse` exported from the tiny RoBERTa, XLM-RoBERTa and MPNet
fixtures with sentence-transformers and prints, for each, the largest difference between its
vectors and ours (`ours.json`, written beside each export) for the same sentences.

    SAVE_EXPORTS_TO=/tmp/exports cargo test -p contrastive-examples --test cli simcse_trains_and_exports
    python3 text/tests/golden/family_roundtrip.py /tmp/exports   (sentence-transformers 6.3.0)
"""
import json
import os
import sys

import numpy as np
from sentence_transformers import SentenceTransformer

root = sys.argv[1]
for name in sorted(os.listdir(root)):
    folder = os.path.join(root, name)
    ours = json.load(open(os.path.join(folder, "ours.json")))
    model = SentenceTransformer(folder, device="cpu")
    theirs = model.encode(ours["sentences"], convert_to_numpy=True)
    diff = float(np.abs(theirs - np.array(ours["vectors"], dtype=np.float32)).max())
    arch = type(model[0].auto_model).__name__
    print(json.dumps({"folder": name, "model": arch, "rows": len(theirs), "max_abs_diff": diff}))
