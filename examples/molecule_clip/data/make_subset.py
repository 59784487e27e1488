#!/usr/bin/env python3
"""Writes WEHI1200: the first 1,200 molecules of WEHI10K (`scripts/fetch-assets wehi10k`), in the
same TU layout (with the graph_sources.tsv that holds each molecule's SMILES), for the
molecule_clip example's --quick run in CI. Usage, from the repository's root:
python3 examples/molecule_clip/data/make_subset.py ~/.cache/contrastive/WEHI10K examples/molecule_clip/data/WEHI1200"""
import os
import sys

src, out = sys.argv[1], sys.argv[2]
N = 1200
name_in, name_out = "WEHI10K", os.path.basename(out.rstrip("/"))
os.makedirs(out, exist_ok=True)
read = lambda s: open(os.path.join(src, f"{name_in}_{s}")).read().splitlines()
indicator = [int(x) for x in read("graph_indicator.txt")]
keep_nodes = sum(1 for g in indicator if g <= N)  # graphs are contiguous and in order
write = lambda s, lines: open(os.path.join(out, f"{name_out}_{s}"), "w").write("\n".join(lines) + "\n")
write("graph_indicator.txt", [str(g) for g in indicator[:keep_nodes]])
write("node_labels.txt", read("node_labels.txt")[:keep_nodes])
edges = read("A.txt")
edge_labels = read("edge_labels.txt")
kept = [i for i, e in enumerate(edges) if int(e.split(",")[0]) <= keep_nodes]
assert all(int(edges[i].split(",")[1]) <= keep_nodes for i in kept)
write("A.txt", [edges[i] for i in kept])
write("edge_labels.txt", [edge_labels[i] for i in kept])
write("graph_labels.txt", read("graph_labels.txt")[:N])
write("graph_sources.tsv", read("graph_sources.tsv")[: N + 1])
