"""Morphology import, section lists, nseg rules and clear errors (no compiled mechanisms)."""
import hashlib

import pytest
from neuron import h

from neuron_hybrid.cells import (MorphologyError, lambda_f, load_morphology, morphology_dir,
                                 morphology_path, nseg_d_lambda, set_nseg_d_lambda)

# counts from morphologies/SOURCES.md (NEURON 9.0.2 Import3d, no axon replacement)
EXPECTED = {
    "ball_and_stick.swc": (1, 1, 0, 0, (200, 0, 0)),
    "c91662.swc": (1, 58, 134, 1, (4805, 9966, 558)),
    "Hay2011_cell1.asc": (1, 84, 109, 1, (5134, 7441, 45)),
    "Scnn1a_473845048_m.swc": (1, 80, 39, 3, (3105, 1485, 126)),
    "Pvalb_470522102_m.swc": (1, 36, 0, 1, (2332, 0, 76)),
    "bluepyopt_simple.swc": (1, 0, 0, 0, (0, 0, 0)),
}


def test_morphology_dir_has_sources():
    d = morphology_dir()
    assert (d / "SOURCES.md").is_file()
    text = (d / "SOURCES.md").read_text()
    for name in EXPECTED:
        assert name in text
        digest = hashlib.sha256((d / name).read_bytes()).hexdigest()
        assert digest in text, f"sha256 of {name} not listed in SOURCES.md"


@pytest.mark.parametrize("fname", list(EXPECTED))
def test_section_counts(fname):
    n_soma, n_dend, n_apic, n_axon, lengths = EXPECTED[fname]
    cell = load_morphology(morphology_path(fname))
    c = cell.section_counts()
    assert (c["somatic"], c["basal"], c["apical"], c["axonal"]) == (n_soma, n_dend, n_apic, n_axon)
    assert c["all"] == n_soma + n_dend + n_apic + n_axon == cell.n_sections
    assert cell.all[0] is cell.soma
    for lst, L in zip(("basal", "apical", "axonal"), lengths):
        assert cell.total_length_um(lst) == pytest.approx(L, abs=1.0)
    assert cell.morphology_sha256 == hashlib.sha256(morphology_path(fname).read_bytes()).hexdigest()
    assert cell.morphology_path.endswith(fname)
    assert cell.n_segments == cell.n_sections  # nseg = 1 before any rule
    # every non-somatic root attaches to the soma, at 0.5 for these files
    kids = cell.soma_children()
    assert all(k.parent_x == 0.5 and k.child_x == 0 for k in kids)
    roots = [s for s in cell.all if s not in cell.somatic
             and h.SectionRef(sec=s).parent in cell.somatic]
    assert {k.section for k in kids} == set(roots)


def test_section_names_and_owner():
    cell = load_morphology(morphology_path("ball_and_stick.swc"), name="bs")
    assert cell.soma.name().startswith(cell.label + ".soma")
    assert cell.soma.cell().cell is cell
    assert "bs" in repr(cell)


def test_soma_child_axial_resistance():
    cell = load_morphology(morphology_path("c91662.swc"))
    for s in cell.all:
        s.Ra = 100
        s.cm = 1
    set_nseg_d_lambda(cell, 0.1, 100)
    kids = {k.section.name().split(".")[-1]: k for k in cell.soma_children()}
    assert len(kids) == 5
    # reduction_feasibility.md: dend[31] 0.23 MOhm, axon first segment 107 MOhm
    assert kids["dend[31]"].ri_MOhm == pytest.approx(0.23, abs=0.01)
    assert kids["axon[0]"].ri_MOhm == pytest.approx(107, rel=0.01)
    assert kids["axon[0]"].first_segment.x == pytest.approx(0.5 / kids["axon[0]"].section.nseg)


def test_d_lambda_rule_matches_stdlib_and_is_odd():
    h.load_file("stdlib.hoc")
    cell = load_morphology(morphology_path("c91662.swc"))
    for s in cell.all:
        s.Ra, s.cm = 100, 1
    for s in cell.all[:40]:
        assert lambda_f(s, 100) == pytest.approx(h.lambda_f(100, sec=s), rel=1e-12)
    total = set_nseg_d_lambda(cell, d_lambda=0.1, freq_hz=100)
    assert total == cell.n_segments == 1108          # reduction_feasibility.md
    assert all(s.nseg % 2 == 1 for s in cell.all)
    split = {n: sum(s.nseg for s in getattr(cell, n)) for n in ("somatic", "basal", "apical", "axonal")}
    assert split == {"somatic": 1, "basal": 350, "apical": 720, "axonal": 37}
    assert nseg_d_lambda(cell.soma, 0.1, 100) == 1


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name, text, words", [
    ("garbage.swc", "garbage line here\n1 2 3\n", ["not a valid SWC", "line 1", "could not parse"]),
    ("orphan.swc", "1 1 0 0 0 5 -1\n2 3 0 10 0 1 7\n", ["line 2", "parent id 7"]),
    ("dup.swc", "1 1 0 0 0 5 -1\n1 3 0 10 0 1 1\n", ["duplicate"]),
    ("nosoma.swc", "1 3 0 0 0 1 -1\n2 3 0 10 0 1 1\n", ["no soma"]),
    ("comments.swc", "# only a header\n\n", ["no SWC data"]),
    ("bad.asc", "(foo (bar\n", ["did not load", "Import3d said"]),
    ("empty.swc", "", ["is empty"]),
    ("cell.xyz", "1 1 0 0 0 5 -1\n", ["unknown format", ".swc", ".asc"]),
])
def test_corrupt_files_give_clear_errors(tmp_path, name, text, words):
    p = write(tmp_path, name, text)
    with pytest.raises(MorphologyError) as e:
        load_morphology(p)
    msg = str(e.value)
    assert str(p) in msg
    for w in words:
        assert w in msg, (w, msg)


def test_missing_file(tmp_path):
    with pytest.raises(MorphologyError, match="does not exist") as e:
        load_morphology(tmp_path / "nope.swc")
    assert "nope.swc" in str(e.value)
    with pytest.raises(MorphologyError, match="not a regular file"):
        load_morphology(tmp_path)


def test_valid_minimal_swc_and_fmt_override(tmp_path):
    p = write(tmp_path, "tiny.txt", "# c\n1 1 0 0 0 5 -1\n2 3 0 5 0 1 1\n3 3 0 50 0 1 2\n")
    cell = load_morphology(p, fmt="swc")
    assert cell.section_counts()["basal"] == 1
    assert cell.soma.L == pytest.approx(10.0)
