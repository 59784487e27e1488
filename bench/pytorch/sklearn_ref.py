"""scikit-learn references for eval/benches/knn.rs, on the same machine in the same sitting:
brute-force cosine kNN (k 200, distance-weighted as the closest sklearn analogue of the
exp(sim/t) vote, but timed for the neighbour search and vote) on 60,000 x 10,000 x 128, and
(when installed) faiss HNSW on 100,000 x 384.

    pip install scikit-learn numpy faiss-cpu   # in a venv outside the repo
    OMP_NUM_THREADS=2 python3 bench/pytorch/sklearn_ref.py
"""
import json
import time

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

rng = np.random.default_rng(0)
train = rng.uniform(-1, 1, (60_000, 128)).astype(np.float32)
test = rng.uniform(-1, 1, (10_000, 128)).astype(np.float32)
labels = np.arange(60_000) % 10
test_labels = np.arange(10_000) % 10
runs = []
for _ in range(3):
    t = time.perf_counter()
    clf = KNeighborsClassifier(n_neighbors=200, metric="cosine", algorithm="brute", weights="distance", n_jobs=2)
    clf.fit(train, labels)
    acc = (clf.predict(test) == test_labels).mean()
    runs.append(time.perf_counter() - t)
print(json.dumps({"fw": "sklearn", "bench": "knn_k200_60000x10000x128", "median_s": sorted(runs)[1], "min_s": min(runs)}))

try:
    import faiss
except ImportError:
    print(json.dumps({"fw": "faiss", "bench": "hnsw_100000x384", "skipped": "faiss-cpu not installed"}))
else:
    faiss.omp_set_num_threads(2)
    corpus = rng.uniform(-1, 1, (100_000, 384)).astype(np.float32)
    queries = rng.uniform(-1, 1, (1_000, 384)).astype(np.float32)
    faiss.normalize_L2(corpus)
    faiss.normalize_L2(queries)
    index = faiss.IndexHNSWFlat(384, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 100
    index.hnsw.efSearch = 100
    t = time.perf_counter()
    index.add(corpus)
    build = time.perf_counter() - t
    t = time.perf_counter()
    _, found = index.search(queries, 10)
    search = time.perf_counter() - t
    exact = np.argsort(-(queries @ corpus.T), axis=1)[:, :10]
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])
    print(json.dumps({"fw": "faiss", "bench": "hnsw_100000x384", "build_s": build, "search_1000_s": search, "recall_at_10": recall}))
