"""Converts a CSV of quoted SMILES and ids (RDKit's wehi_mols.csv layout: "SMILES","ID" a line)
into a TU Dortmund graph folder, as scripts/fetch-assets does for WEHI10K.

    python3 smiles_to_tu.py wehi_mols.csv OUT_DIR NAME

Needs RDKit (PyPI `rdkit`). Each record is parsed and sanitised by RDKit (default aromaticity
model), hydrogens removed (heavy atoms only), and reduced to its largest fragment (most heavy
atoms; the first on a tie). Node label: the element's index in the shared atom vocabulary below;
edge label: 0 single, 1 double, 2 triple, 3 aromatic; every bond written in both directions,
in RDKit's bond order. Graph labels are 0 (unlabelled). `NAME_graph_sources.tsv` maps each graph
to its source record, id and the canonical SMILES of the whole record.
"""

import csv
import os
import sys

from rdkit import Chem, RDLogger

# Element -> node label, in the order of first appearance over the datasets the vocabulary was
# built from (BZR163, EGFR365, WEHI10K, NCI5K); shared so that graphs of several sets align.
ATOM_VOCAB = [
    "C", "N", "Cl", "O", "Br", "S", "F", "I", "P", "Cu", "Si", "Se", "Hg", "B", "Sb", "Bi", "Ti",
    "As", "Zn", "Ni", "Sn", "Cr", "Cd", "Co", "Mn", "Fe", "Na", "Ce", "Mg", "Th", "V", "Zr", "Pt",
]
BOND_LABEL = {
    Chem.BondType.SINGLE: 0,
    Chem.BondType.DOUBLE: 1,
    Chem.BondType.TRIPLE: 2,
    Chem.BondType.AROMATIC: 3,
}


def largest_fragment(mol):
    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    best = frags[0]
    for f in frags[1:]:
        if f.GetNumAtoms() > best.GetNumAtoms():
            best = f
    return best, len(frags) > 1


def main(src, out, name):
    RDLogger.DisableLog("rdApp.*")
    label = {s: i for i, s in enumerate(ATOM_VOCAB)}
    os.makedirs(out, exist_ok=True)
    files = {k: open(os.path.join(out, f"{name}_{k}.txt"), "w", newline="\n")
             for k in ("A", "edge_labels", "graph_indicator", "graph_labels", "node_labels")}
    sources = open(os.path.join(out, f"{name}_graph_sources.tsv"), "w", newline="\n")
    sources.write("graph_id\tsource_record\tsource_id\tlabel\tcanonical_smiles_full_record\n")
    offset, graphs = 0, 0
    with open(src, newline="") as f:
        for record, row in enumerate(csv.reader(f), start=1):
            if len(row) < 2:
                sys.exit(f"{src}:{record}: expected \"SMILES\",\"ID\"")
            mol = Chem.MolFromSmiles(row[0])
            if mol is None:
                sys.exit(f"{src}:{record}: RDKit cannot parse {row[0]!r}")
            full = Chem.MolToSmiles(mol)
            mol, _ = largest_fragment(Chem.RemoveAllHs(mol))
            graphs += 1
            for atom in mol.GetAtoms():
                symbol = atom.GetSymbol()
                if symbol not in label:
                    sys.exit(f"{src}:{record}: element {symbol} is not in the atom vocabulary")
                files["node_labels"].write(f"{label[symbol]}\n")
                files["graph_indicator"].write(f"{graphs}\n")
            for bond in mol.GetBonds():
                i, j = bond.GetBeginAtomIdx() + 1 + offset, bond.GetEndAtomIdx() + 1 + offset
                kind = BOND_LABEL.get(bond.GetBondType())
                if kind is None:
                    sys.exit(f"{src}:{record}: bond type {bond.GetBondType()} has no edge label")
                files["A"].write(f"{i}, {j}\n{j}, {i}\n")
                files["edge_labels"].write(f"{kind}\n{kind}\n")
            files["graph_labels"].write("0\n")
            sources.write(f"{graphs}\t{record}\t{row[1]}\t0\t{full}\n")
            offset += mol.GetNumAtoms()
    for f in (*files.values(), sources):
        f.close()
    print(f"{name}: {graphs} graphs, {offset} nodes -> {out}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
