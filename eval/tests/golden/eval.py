"""Golden values for eval/tests/golden.rs from scikit-learn, scipy, lightly and Wang and Isola's code.

    pip install torch lightly scikit-learn scipy    # in a venv outside the repo
    python3 eval/tests/golden/eval.py
"""
import math
import numpy as np
import torch
import torch.nn.functional as F
from lightly.utils.benchmarking import knn_predict
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.neighbors import KNeighborsClassifier

train = np.array([[math.sin(0.3 * i * (d + 1) + 0.2 * (i % 4)) + 0.5 * ((i % 4) == d) for d in range(6)] for i in range(40)])
train_labels = np.array([i % 4 for i in range(40)])
test = np.array([[math.cos(0.7 * i + 0.4 * d) + 0.5 * ((i % 4) == d) for d in range(6)] for i in range(12)])
test_labels = np.array([i % 4 for i in range(12)])

clf = KNeighborsClassifier(n_neighbors=5, metric="cosine", algorithm="brute").fit(train, train_labels)
pred = clf.predict(test)
print("majority_k5_pred", pred.tolist(), "acc", (pred == test_labels).mean())

f = F.normalize(torch.tensor(test), dim=1)
bank = F.normalize(torch.tensor(train), dim=1).t()
scores = knn_predict(f, bank, torch.tensor(train_labels), num_classes=4, knn_k=10, knn_t=0.1)
print("weighted_k10_t01_top1", scores[:, 0].tolist(), "acc", (scores[:, 0].numpy() == test_labels).mean())

x = [0.1, 0.4, 0.4, 0.9, 1.3, 1.3, 1.3, 2.0, 0.05, 0.7]
y = [1.0, 0.8, 1.1, 2.5, 2.4, 3.0, 2.4, 4.1, 0.2, 0.9]
print("pearson", repr(pearsonr(x, y)[0]), "spearman", repr(spearmanr(x, y)[0]))

a = [0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 0]
b = [1, 1, 0, 0, 2, 2, 2, 3, 3, 3, 1, 1]
print("nmi", repr(normalized_mutual_info_score(a, b)), "ari", repr(adjusted_rand_score(a, b)))

z1, z2 = F.normalize(torch.tensor(train[:12]), dim=1), F.normalize(torch.tensor(test), dim=1)
print("alignment_a2", repr((z1 - z2).norm(p=2, dim=1).pow(2).mean().item()))
print("uniformity_t2", repr(torch.pdist(F.normalize(torch.tensor(train), dim=1), p=2).pow(2).mul(-2).exp().mean().log().item()))

# Linear probe: StandardScaler then multinomial LogisticRegression, C = 0.5, run to convergence.
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
scaler = StandardScaler().fit(train)
lr = LogisticRegression(C=0.5, tol=1e-12, max_iter=100000).fit(scaler.transform(train), train_labels)
print("logreg_c05_coef00_13", repr(lr.coef_[0, 0]), repr(lr.coef_[1, 3]), "intercept2", repr(lr.intercept_[2]))
print("logreg_c05_pred", lr.predict(scaler.transform(test)).tolist(), "train_acc", lr.score(scaler.transform(train), train_labels))

# k-means on three well separated blobs: scikit-learn's optimum.
from sklearn.cluster import KMeans
centres = [[0, 0, 0], [5, 5, 0], [0, 5, 5]]
blobs = np.array([[centres[i % 3][d] + 0.8 * math.sin(1.7 * i + 2.3 * d) for d in range(3)] for i in range(30)])
km = KMeans(n_clusters=3, n_init=10, random_state=0).fit(blobs)
print("kmeans_inertia", repr(km.inertia_), "labels", km.labels_.tolist())

# Retrieval: test rows query the train rows; relevant = same label. Ranks by cosine, ties to the
# lower index (np.lexsort), then the textbook definitions.
qn = test / np.linalg.norm(test, axis=1, keepdims=True)
cn = train / np.linalg.norm(train, axis=1, keepdims=True)
sims = qn @ cn.T
recalls = {k: [] for k in (1, 5, 10)}
rr, ap = [], []
for q in range(len(test)):
    order = np.lexsort((np.arange(len(train)), -sims[q]))
    rel = train_labels[order] == test_labels[q]
    hits = np.flatnonzero(rel) + 1
    for k in recalls:
        recalls[k].append(rel[:k].sum() / rel.sum())
    rr.append(1.0 / hits[0])
    ap.append(np.mean(np.arange(1, len(hits) + 1) / hits))
print("retrieval", {k: repr(float(np.mean(v))) for k, v in recalls.items()}, "mrr", repr(float(np.mean(rr))), "map", repr(float(np.mean(ap))))
