#!/usr/bin/env python
"""Plain-PyTorch reference implementation of GraphCL (You et al., NeurIPS 2020),
unsupervised TU setting (cf. Shen-Lab/GraphCL, unsupervised_TU/gsimclr.py).

No torch_geometric: GIN message passing is an index_add_ over a block-diagonal
(batched) edge list, sum pooling is an index_add_ over the node->graph vector.

Pipeline
  TU reader  -> list of graphs (node labels, undirected edge list)
  augment    -> per graph, per view (numpy RNG)
  collate    -> block-diagonal batch: x [N,33] float, edge_index [2,E] (both directions),
                batch [N] graph id in 0..B-1
  encoder    -> GIN x3 (hidden 32): h = BN(ReLU(MLP(h + sum_{j in N(i)} h_j))), MLP = Lin-ReLU-Lin
                readout = concat_l sum_pool(h_l) -> 96-d
  proj head  -> Lin(96,96)-ReLU-Lin(96,96)
  loss       -> GraphCL loss_cal (NT-Xent, T=0.2, positive excluded from denominator, one direction)
  eval       -> frozen encoder (eval mode, running BN stats), 96-d readout of the *un-augmented*
                graphs -> SVC, C in {1e-3..1e3} by inner 5-fold GridSearchCV, outer 10-fold
                stratified CV (GraphCL evaluate_embedding.svc_classify, search=True).

The choices and the differences from the official code are written beside each function below.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

NUM_ATOM_TYPES = 33  # shared vocabulary (atom_vocab.json)

from paths import ASSETS, REPO

# Names for the shipped BZR163 and the fetched WEHI10K (`scripts/fetch-assets wehi10k`); any other
# TU folder is given by its path.
DATA_DIRS = {
    'BZR163': os.path.join(REPO, 'graph', 'data', 'BZR163'),
    'WEHI10K': os.path.join(ASSETS, 'WEHI10K'),
}


# ----------------------------------------------------------------------------------------
# TU reader
# ----------------------------------------------------------------------------------------
class Graph:
    __slots__ = ('labels', 'edges', 'y')

    def __init__(self, labels, edges, y):
        self.labels = labels  # int64 [n] node label (atom type 0..32)
        self.edges = edges    # int64 [m,2] undirected edges, local ids, u < v, each once
        self.y = y            # int graph label

    @property
    def n(self):
        return self.labels.shape[0]


def read_tu(path_or_name):
    path = DATA_DIRS.get(path_or_name, path_or_name)
    ds = os.path.basename(os.path.normpath(path))
    f = lambda s: os.path.join(path, '%s_%s.txt' % (ds, s))
    A = np.loadtxt(f('A'), delimiter=',', dtype=np.int64).reshape(-1, 2) - 1  # 0-based global
    gi = np.loadtxt(f('graph_indicator'), dtype=np.int64) - 1                 # 0-based graph id
    nl = np.loadtxt(f('node_labels'), dtype=np.int64)
    gl = np.loadtxt(f('graph_labels'), dtype=np.int64).reshape(-1)
    G = gl.shape[0]
    assert gi.max() + 1 == G and nl.shape[0] == gi.shape[0]
    assert nl.min() >= 0 and nl.max() < NUM_ATOM_TYPES
    # node offsets per graph (graph_indicator is sorted / contiguous in TU format)
    assert np.all(np.diff(gi) >= 0)
    counts = np.bincount(gi, minlength=G)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # undirected edges: keep u<v once (file lists both directions)
    und = A[A[:, 0] < A[:, 1]]
    eg = gi[und[:, 0]]
    assert np.all(eg == gi[und[:, 1]]), 'cross-graph edge'
    order = np.argsort(eg, kind='stable')
    und, eg = und[order], eg[order]
    ecounts = np.bincount(eg, minlength=G)
    estart = np.concatenate([[0], np.cumsum(ecounts)[:-1]])
    graphs = []
    for g in range(G):
        s, n = start[g], counts[g]
        e = und[estart[g]:estart[g] + ecounts[g]] - s
        graphs.append(Graph(nl[s:s + n].copy(), np.ascontiguousarray(e), int(gl[g])))
    return ds, graphs


# ----------------------------------------------------------------------------------------
# Augmentations (operate on one graph; return (feat [n',33] float32, edges [m',2] local))
# ----------------------------------------------------------------------------------------
def onehot(labels):
    x = np.zeros((labels.shape[0], NUM_ATOM_TYPES), dtype=np.float32)
    x[np.arange(labels.shape[0]), labels] = 1.0
    return x


def _induced(g, keep_sorted):
    """Induced subgraph on the kept node ids (sorted), relabelled 0..k-1."""
    remap = -np.ones(g.n, dtype=np.int64)
    remap[keep_sorted] = np.arange(keep_sorted.shape[0])
    e = remap[g.edges] if g.edges.shape[0] else g.edges
    e = e[(e >= 0).all(axis=1)] if e.shape[0] else e
    return onehot(g.labels[keep_sorted]), e


def aug_none(g, ratio, rng, args):
    return onehot(g.labels), g.edges


def aug_drop_nodes(g, ratio, rng, args):
    # drop int(ratio*n) nodes uniformly without replacement, with their incident edges
    n = g.n
    k_drop = int(n * ratio)
    if k_drop == 0:
        return aug_none(g, ratio, rng, args)
    keep = np.sort(rng.permutation(n)[k_drop:])
    return _induced(g, keep)


def aug_perm_edges(g, ratio, rng, args):
    # remove int(ratio*m) undirected edges uniformly without replacement (symmetric);
    # with --pedges-add additionally add the same number of random new undirected
    # non-self-loop edges (uniform node pairs, not already present). Nodes are all kept.
    m = g.edges.shape[0]
    k = int(m * ratio)
    x = onehot(g.labels)
    if k == 0:
        return x, g.edges
    e = g.edges[np.sort(rng.permutation(m)[k:])]
    if args.pedges_add and g.n > 1:
        n = g.n
        existing = set(map(tuple, g.edges.tolist()))
        add = []
        tries = 0
        while len(add) < k and tries < 100 * k:
            tries += 1
            u, v = rng.integers(0, n, size=2)
            if u == v:
                continue
            u, v = (u, v) if u < v else (v, u)
            if (u, v) in existing:
                continue
            existing.add((u, v))
            add.append((u, v))
        if add:
            e = np.concatenate([e, np.asarray(add, dtype=np.int64)], 0)
    return x, e


def aug_subgraph(g, ratio, rng, args):
    # neighbour expansion ("random-walk" subgraph in GraphCL): start at a uniform random
    # node; repeatedly add a uniformly chosen node from the frontier (neighbours of the
    # current set not yet in it) until int(ratio*n)+1 nodes (official count:
    # `while len(idx_sub) <= sub_num`) or the frontier is empty. Induced subgraph is kept.
    n = g.n
    target = min(n, int(n * ratio) + 1)
    adj = [[] for _ in range(n)]
    for u, v in g.edges.tolist():
        adj[u].append(v)
        adj[v].append(u)
    start = int(rng.integers(n))
    sel = [start]
    in_sel = {start}
    frontier = set(adj[start])
    while len(sel) < target and frontier:
        fl = sorted(frontier)
        v = fl[int(rng.integers(len(fl)))]
        frontier.discard(v)
        sel.append(v)
        in_sel.add(v)
        for w in adj[v]:
            if w not in in_sel:
                frontier.add(w)
    return _induced(g, np.sort(np.asarray(sel, dtype=np.int64)))


def aug_mask_nodes(g, ratio, rng, args):
    # official unsupervised_TU: int(ratio*n) nodes get their whole feature vector replaced
    # by i.i.d. N(mean=0.5, std=0.5) noise; graph structure unchanged
    n = g.n
    x = onehot(g.labels)
    k = int(n * ratio)
    if k:
        idx = rng.permutation(n)[:k]
        x[idx] = rng.normal(0.5, 0.5, size=(k, NUM_ATOM_TYPES)).astype(np.float32)
    return x, g.edges


AUGS = {
    'none': [aug_none],
    'dnodes': [aug_drop_nodes],
    'pedges': [aug_perm_edges],
    'subgraph': [aug_subgraph],
    'mask_nodes': [aug_mask_nodes],
    # GraphCL unsupervised_TU: random2 = {NodeDrop, Subgraph}, random3 = + EdgePert,
    # random4 = + AttrMask; one of them drawn uniformly per graph per view
    'random2': [aug_drop_nodes, aug_subgraph],
    'random3': [aug_drop_nodes, aug_perm_edges, aug_subgraph],
    'random4': [aug_drop_nodes, aug_perm_edges, aug_subgraph, aug_mask_nodes],
}


def augment(g, aug, ratio, rng, args):
    fns = AUGS[aug]
    fn = fns[int(rng.integers(len(fns)))] if len(fns) > 1 else fns[0]
    return fn(g, ratio, rng, args)


# ----------------------------------------------------------------------------------------
# Block-diagonal batching
# ----------------------------------------------------------------------------------------
def collate(items):
    """items: list of (x [n,33] float32, edges [m,2] local undirected).
    Returns x [N,33], edge_index [2,2M] (both directions, global ids), batch [N]."""
    xs, es, bs = [], [], []
    off = 0
    for gid, (x, e) in enumerate(items):
        n = x.shape[0]
        assert n >= 1
        xs.append(x)
        if e.shape[0]:
            es.append(e + off)
        bs.append(np.full(n, gid, dtype=np.int64))
        off += n
    x = torch.from_numpy(np.concatenate(xs, 0))
    if es:
        e = np.concatenate(es, 0)
        ei = np.concatenate([e.T, e[:, ::-1].T], 1)  # (u->v) and (v->u)
    else:
        ei = np.zeros((2, 0), dtype=np.int64)
    return x, torch.from_numpy(np.ascontiguousarray(ei)), torch.from_numpy(np.concatenate(bs))


# ----------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------
class GINEncoder(nn.Module):
    def __init__(self, in_dim=NUM_ATOM_TYPES, hidden=32, layers=3):
        super().__init__()
        self.mlps = nn.ModuleList()
        self.bns = nn.ModuleList()
        for i in range(layers):
            d = in_dim if i == 0 else hidden
            self.mlps.append(nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden)))
            self.bns.append(nn.BatchNorm1d(hidden))  # eps 1e-5, momentum 0.1, affine

    def forward(self, x, edge_index, batch, num_graphs):
        src, dst = edge_index[0], edge_index[1]
        pooled = []
        h = x
        for mlp, bn in zip(self.mlps, self.bns):
            agg = h.clone().index_add_(0, dst, h[src])       # GIN, eps = 0: h_i + sum_j h_j
            h = bn(torch.relu(mlp(agg)))                      # conv -> ReLU -> BN (official order)
            pooled.append(torch.zeros(num_graphs, h.shape[1], dtype=h.dtype).index_add_(0, batch, h))
        return torch.cat(pooled, 1)                           # [B, layers*hidden]


class GraphCL(nn.Module):
    def __init__(self, in_dim=NUM_ATOM_TYPES, hidden=32, layers=3):
        super().__init__()
        self.encoder = GINEncoder(in_dim, hidden, layers)
        d = hidden * layers
        self.proj_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        # official init_emb: xavier_uniform_ on every Linear weight (encoder + head), bias 0
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x, edge_index, batch, num_graphs):
        return self.proj_head(self.encoder(x, edge_index, batch, num_graphs))


def loss_cal(x, x_aug, T=0.2):
    """GraphCL unsupervised_TU loss_cal: x anchors (rows), x_aug candidates (cols);
    positive = diagonal, excluded from the denominator; mean over the batch."""
    B = x.shape[0]
    sim = (x @ x_aug.t()) / torch.outer(x.norm(dim=1), x_aug.norm(dim=1))
    sim = torch.exp(sim / T)
    pos = sim[torch.arange(B), torch.arange(B)]
    return -torch.log(pos / (sim.sum(dim=1) - pos)).mean()


# ----------------------------------------------------------------------------------------
# Training / embedding
# ----------------------------------------------------------------------------------------
def make_views(graphs, args, rng):
    if args.views == 'orig-aug':   # official unsupervised_TU code: view 1 is the original graph
        v1 = [aug_none(g, 0.0, rng, args) for g in graphs]
    else:                           # paper: both views augmented independently
        v1 = [augment(g, args.aug, args.aug_ratio, rng, args) for g in graphs]
    v2 = [augment(g, args.aug, args.aug_ratio, rng, args) for g in graphs]
    return collate(v1), collate(v2)


def train_step(model, opt, graphs, args, rng):
    (x1, e1, b1), (x2, e2, b2) = make_views(graphs, args, rng)
    B = len(graphs)
    opt.zero_grad()
    z1 = model(x1, e1, b1, B)
    z2 = model(x2, e2, b2, B)
    loss = loss_cal(z1, z2, args.temperature)
    loss.backward()
    opt.step()
    with torch.no_grad():  # in-batch top-1: is each anchor's nearest candidate its positive?
        c = (z1 / z1.norm(dim=1, keepdim=True)) @ (z2 / z2.norm(dim=1, keepdim=True)).t()
        top1 = (c.argmax(dim=1) == torch.arange(B)).float().mean().item()
    return loss.item(), top1


def pretrain(model, graphs, args, rng, log=print, eval_cb=None):
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    N = len(graphs)
    hist, hist_top1 = [], []
    for ep in range(1, args.epochs + 1):
        model.train()
        perm = rng.permutation(N)  # reshuffled every epoch; last partial batch kept
        tot, tot1, cnt, t0 = 0.0, 0.0, 0, time.time()
        for i in range(0, N, args.batch_size):
            idx = perm[i:i + args.batch_size]
            if len(idx) < 2:
                continue  # loss undefined for a single graph
            l, t1 = train_step(model, opt, [graphs[j] for j in idx], args, rng)
            tot += l * len(idx)
            tot1 += t1 * len(idx)
            cnt += len(idx)
        hist.append(tot / cnt)
        hist_top1.append(tot1 / cnt)
        log('  epoch %2d  loss %.4f  top1 %.3f  (%.1fs)' % (ep, tot / cnt, tot1 / cnt, time.time() - t0))
        if eval_cb is not None and args.eval_every and ep % args.eval_every == 0 and ep != args.epochs:
            eval_cb(ep)
    return hist, hist_top1


@torch.no_grad()
def embed(encoder, graphs, bs=512):
    encoder.eval()
    out = []
    for i in range(0, len(graphs), bs):
        chunk = graphs[i:i + bs]
        x, e, b = collate([(onehot(g.labels), g.edges) for g in chunk])
        out.append(encoder(x, e, b, len(chunk)).numpy())
    return np.concatenate(out, 0).astype(np.float64)


def baseline_features(graphs):
    """33 node-label counts + [n, m, deg mean, deg std, deg min, deg max, #deg=1..4, #deg>=5]."""
    F = []
    for g in graphs:
        hist = np.bincount(g.labels, minlength=NUM_ATOM_TYPES).astype(np.float64)
        deg = np.bincount(g.edges.reshape(-1), minlength=g.n).astype(np.float64)
        dc = [np.sum(deg == d) for d in (1, 2, 3, 4)] + [np.sum(deg >= 5)]
        F.append(np.concatenate([hist, [g.n, g.edges.shape[0], deg.mean(), deg.std(), deg.min(), deg.max()], dc]))
    return np.asarray(F)


# ----------------------------------------------------------------------------------------
# SVC evaluation (GraphCL evaluate_embedding.svc_classify with search=True)
# ----------------------------------------------------------------------------------------
def svc_eval(X, y, seed, scale=False):
    import warnings
    from sklearn.model_selection import StratifiedKFold, GridSearchCV
    from sklearn.svm import SVC
    from sklearn.preprocessing import StandardScaler
    from sklearn.pipeline import make_pipeline
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score
    Cs = [1e-3, 1e-2, 1e-1, 1, 10, 100, 1000]
    outer = StratifiedKFold(n_splits=10, shuffle=True, random_state=seed)
    accs, baccs, aucs, chosen = [], [], [], []
    classes = np.unique(y)
    for tr, te in outer.split(X, y):
        if scale:
            est, grid = make_pipeline(StandardScaler(), SVC()), {'svc__C': Cs}
        else:
            est, grid = SVC(), {'C': Cs}
        # inner CV: sklearn default for classifiers = StratifiedKFold(5), no shuffle
        clf = GridSearchCV(est, grid, cv=5, scoring='accuracy')
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            clf.fit(X[tr], y[tr])
        pred = clf.predict(X[te])
        accs.append(accuracy_score(y[te], pred))
        baccs.append(balanced_accuracy_score(y[te], pred))
        chosen.append(list(clf.best_params_.values())[0])
        # ranking quality of the same fitted SVC (no extra fits): binary ROC-AUC of
        # decision_function; multi-class: mean over classes of one-vs-rest AUC of the
        # 'ovr' decision values (classes with no positive in the test fold skipped)
        dec = clf.decision_function(X[te])
        if len(classes) == 2:
            aucs.append(roc_auc_score(y[te] == classes[1], dec))
        else:
            per = [roc_auc_score(y[te] == c, dec[:, k]) for k, c in enumerate(clf.classes_)
                   if 0 < np.sum(y[te] == c) < len(te)]
            aucs.append(float(np.mean(per)))
    return float(np.mean(accs)), float(np.std(accs)), chosen, float(np.mean(baccs)), float(np.mean(aucs))


def summarize(vals):
    a = np.asarray(vals)
    return {'mean': float(a.mean()), 'std': float(a.std()), 'n': int(a.size), 'values': [float(v) for v in a]}


# ----------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------
def timing(graphs, args, log):
    rng = np.random.default_rng(args.seeds[0])
    torch.manual_seed(args.seeds[0])
    model = GraphCL(NUM_ATOM_TYPES, args.hidden, args.layers)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    model.train()
    B = args.batch_size
    res = {}
    # (a) full step: augmentation + collation + fwd(2 views) + loss + bwd + Adam
    # (b) compute only: same, on pre-built batches
    batches = []
    for i in range(args.timing_warmup + args.timing_steps):
        idx = rng.choice(len(graphs), B, replace=False)
        batches.append([graphs[j] for j in idx])
    full, aug_t = [], []
    for i, gb in enumerate(batches):
        t0 = time.perf_counter()
        (x1, e1, b1), (x2, e2, b2) = make_views(gb, args, rng)
        t1 = time.perf_counter()
        opt.zero_grad()
        loss = loss_cal(model(x1, e1, b1, B), model(x2, e2, b2, B), args.temperature)
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if i >= args.timing_warmup:
            full.append(t2 - t0)
            aug_t.append(t1 - t0)
    views = [make_views(gb, args, rng) for gb in batches]
    comp = []
    for i, ((x1, e1, b1), (x2, e2, b2)) in enumerate(views):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = loss_cal(model(x1, e1, b1, B), model(x2, e2, b2, B), args.temperature)
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        if i >= args.timing_warmup:
            comp.append(t1 - t0)
    n1 = np.mean([v[0][0].shape[0] for v in views])
    n2 = np.mean([v[1][0].shape[0] for v in views])
    e1 = np.mean([v[0][1].shape[1] for v in views])
    # embedding throughput (eval forward only, un-augmented, batch B)
    emb = []
    for i, gb in enumerate(batches):
        t0 = time.perf_counter()
        embed(model.encoder, gb, bs=B)
        t1 = time.perf_counter()
        if i >= args.timing_warmup:
            emb.append(t1 - t0)
    med = lambda a: float(np.median(a))
    res = {
        'batch_size': B, 'steps': args.timing_steps, 'warmup': args.timing_warmup,
        'threads': torch.get_num_threads(),
        'deterministic_algorithms': torch.are_deterministic_algorithms_enabled(),
        'avg_nodes_view1': float(n1), 'avg_nodes_view2': float(n2), 'avg_directed_edges_view1': float(e1),
        'full_step_median_s': med(full), 'full_step_graphs_per_s': B / med(full),
        'augment_collate_median_s': med(aug_t),
        'compute_step_median_s': med(comp), 'compute_step_graphs_per_s': B / med(comp),
        'embed_median_s': med(emb), 'embed_graphs_per_s': B / med(emb),
    }
    log(json.dumps(res, indent=1))
    return res


# ----------------------------------------------------------------------------------------
def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--pretrain', default='BZR163', help='dataset name (see DATA_DIRS) or TU folder')
    p.add_argument('--eval', default=None, help='labelled dataset for SVC eval (default: --pretrain)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    p.add_argument('--epochs', type=int, default=20)
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--lr', type=float, default=0.01)
    p.add_argument('--hidden', type=int, default=32)
    p.add_argument('--layers', type=int, default=3)
    p.add_argument('--temperature', type=float, default=0.2)
    p.add_argument('--aug', default='random2', choices=sorted(AUGS))
    p.add_argument('--aug-ratio', type=float, default=0.2)
    p.add_argument('--pedges-add', action='store_true', help='edge perturbation also adds edges')
    p.add_argument('--views', default='aug-aug', choices=['aug-aug', 'orig-aug'])
    p.add_argument('--eval-every', type=int, default=0, help='extra SVC evals every k epochs')
    p.add_argument('--scale', action='store_true', help='also report StandardScaler+SVC')
    p.add_argument('--untrained', action='store_true', help='also evaluate random-init encoder')
    p.add_argument('--baseline', action='store_true', help='also evaluate label-hist+degree baseline')
    p.add_argument('--no-pretrain', action='store_true', help='skip GraphCL training')
    p.add_argument('--timing', action='store_true', help='only run the timing benchmark on --pretrain')
    p.add_argument('--timing-steps', type=int, default=20)
    p.add_argument('--timing-warmup', type=int, default=5)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--nondeterministic', action='store_true',
                   help='do not call torch.use_deterministic_algorithms(True) (with 2 threads the '
                        'default index_add_/index backward kernels are run-to-run nondeterministic)')
    p.add_argument('--out', default=None, help='write JSON results here')
    p.add_argument('--score-embeddings', nargs='+', default=None, metavar='FILE',
                   help='only score these safetensors files (`embeddings` (N, D), `labels` (N), as the '
                        'graphcl example writes per seed) with svc_eval, seed i for file i, then exit')
    args = p.parse_args()
    if args.score_embeddings:
        from safetensors.numpy import load_file
        accs = []
        for seed, path in enumerate(args.score_embeddings):
            t = load_file(path)
            acc, std, _, bacc, auc = svc_eval(t['embeddings'].astype(np.float64), t['labels'], seed)
            print(json.dumps({'file': path, 'seed': seed, 'acc': acc, 'std': std, 'bacc': bacc, 'auc': auc}))
            accs.append(acc)
        print(json.dumps({'acc_mean': float(np.mean(accs)), 'acc_std': float(np.std(accs))}))
        return

    torch.set_num_threads(args.threads)
    if not args.nondeterministic:
        torch.use_deterministic_algorithms(True)
    log = lambda s: print(s, flush=True)
    log('args: ' + json.dumps(vars(args)))
    t_start = time.time()

    pre_name, pre_graphs = read_tu(args.pretrain)
    log('pretrain set %s: %d graphs, %d nodes, %d undirected edges' % (
        pre_name, len(pre_graphs), sum(g.n for g in pre_graphs), sum(g.edges.shape[0] for g in pre_graphs)))
    out = {'args': vars(args), 'torch': torch.__version__, 'pretrain': pre_name}

    if args.timing:
        out['timing'] = timing(pre_graphs, args, log)
    else:
        ev_name, ev_graphs = (pre_name, pre_graphs) if args.eval in (None, pre_name) else read_tu(args.eval)
        y = np.asarray([g.y for g in ev_graphs])
        log('eval set %s: %d graphs, label counts %s, majority rate %.4f' % (
            ev_name, len(ev_graphs), np.bincount(y).tolist(), np.bincount(y).max() / len(y)))
        out['eval'] = ev_name
        out['majority_rate'] = float(np.bincount(y).max() / len(y))
        scales = [False, True] if args.scale else [False]
        key = lambda s: 'svc_scaled' if s else 'svc'

        def ev(X, seed):
            r = {}
            for s in scales:
                m, sd, C, bacc, auc = svc_eval(X, y, seed, scale=s)
                r[key(s)] = {'acc': m, 'fold_std': sd, 'C': C, 'bal_acc': bacc, 'auc': auc}
            return r

        if args.baseline:
            Xb = baseline_features(ev_graphs)
            out['baseline'] = [ev(Xb, s) for s in args.seeds]
            for s in scales:
                acc = [r[key(s)]['acc'] for r in out['baseline']]
                out.setdefault('summary', {})['baseline_' + key(s)] = summarize(acc)
                out['summary']['baseline_' + key(s)]['bal_acc_mean'] = float(np.mean([r[key(s)]['bal_acc'] for r in out['baseline']]))
                out['summary']['baseline_' + key(s)]['auc_mean'] = float(np.mean([r[key(s)]['auc'] for r in out['baseline']]))
                log('baseline %s: %.4f +- %.4f (over CV seeds)' % (key(s), np.mean(acc), np.std(acc)))

        runs = []
        for seed in args.seeds:
            log('== seed %d' % seed)
            torch.manual_seed(seed)
            rng = np.random.default_rng(seed)
            model = GraphCL(NUM_ATOM_TYPES, args.hidden, args.layers)
            run = {'seed': seed}
            if args.untrained:
                run['untrained'] = ev(embed(model.encoder, ev_graphs), seed)
                log('  untrained: ' + json.dumps({k: [round(v['acc'], 4), round(v['auc'], 4)] for k, v in run['untrained'].items()}))
            if not args.no_pretrain:
                inter = {}

                def cb(ep):
                    inter[ep] = ev(embed(model.encoder, ev_graphs), seed)
                    log('  epoch %d eval: %s' % (ep, json.dumps({k: [round(v['acc'], 4), round(v['auc'], 4)] for k, v in inter[ep].items()})))
                    model.train()

                t0 = time.time()
                run['loss'], run['top1'] = pretrain(model, pre_graphs, args, rng, log, cb)
                run['train_s'] = time.time() - t0
                run['graphcl'] = ev(embed(model.encoder, ev_graphs), seed)
                run['intermediate'] = inter
                log('  graphcl (epoch %d): %s' % (args.epochs, json.dumps({k: [round(v['acc'], 4), round(v['auc'], 4)] for k, v in run['graphcl'].items()})))
            runs.append(run)
        out['runs'] = runs
        summ = out.setdefault('summary', {})
        for what in ('untrained', 'graphcl'):
            for s in scales:
                acc = [r[what][key(s)]['acc'] for r in runs if what in r]
                if acc:
                    summ[what + '_' + key(s)] = summarize(acc)
                    fs = [r[what][key(s)]['fold_std'] for r in runs if what in r]
                    summ[what + '_' + key(s)]['mean_fold_std'] = float(np.mean(fs))
                    summ[what + '_' + key(s)]['bal_acc_mean'] = float(np.mean([r[what][key(s)]['bal_acc'] for r in runs if what in r]))
                    summ[what + '_' + key(s)]['auc_mean'] = float(np.mean([r[what][key(s)]['auc'] for r in runs if what in r]))
        for k, v in summ.items():
            log('SUMMARY %-24s acc %.4f +- %.4f  (n=%d)  bal_acc %.4f  auc %.4f' % (
                k, v['mean'], v['std'], v['n'], v.get('bal_acc_mean', float('nan')), v.get('auc_mean', float('nan'))))
    out['wall_s'] = time.time() - t_start
    log('wall %.1fs' % out['wall_s'])
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(out, f, indent=1)


if __name__ == '__main__':
    main()
