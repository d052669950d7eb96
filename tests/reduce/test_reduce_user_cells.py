"""Users' own cells through reduce and benchmark: a hoc template with its own MOD file (command line, in
a fresh process, as a user runs it), the recorded cell source, and clear errors for incomplete input."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from neuron_hybrid.cells import CellError
from neuron_hybrid.cells.builders import (HocTemplateBuilder, MorphologyBuilder, builder_from_source, builder_source,
                                          function_spec, import_function)
from neuron_hybrid.cli import main

ROOT = Path(__file__).resolve().parents[2]

USERLEAK_MOD = (  # the same text as the user-MOD test of the CLI: one cached library serves both
    "NEURON { SUFFIX userleak NONSPECIFIC_CURRENT i RANGE g, e }\n"
    "PARAMETER { g = 0.001 (S/cm2) e = -70 (mV) }\n"
    "ASSIGNED { v (mV) i (mA/cm2) }\n"
    "BREAKPOINT { i = g*(v - e) }\n"
)

BALL_STICK_HOC = """
begintemplate BallStickNH
public soma, dend, all, somatic, basal
create soma, dend[1]
objref all, somatic, basal
proc init() {
    all = new SectionList()  somatic = new SectionList()  basal = new SectionList()
    soma { L = 20 diam = 20 nseg = 1 insert userleak g_userleak = $1 e_userleak = -65 all.append() somatic.append() }
    dend[0] { L = 400 diam = 2 nseg = 9 insert pas g_pas = 5e-5 e_pas = -65 all.append() basal.append() }
    forall { cm = 1 Ra = 150 }
    connect dend[0](0), soma(1)
}
endtemplate BallStickNH
"""


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "neuron_hybrid.cli", *args], capture_output=True, text=True,
                          timeout=900, cwd=cwd)


def test_hoc_template_with_its_mod_file_reduces_and_benchmarks(tmp_path):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "userleak.mod").write_text(USERLEAK_MOD)
    (tmp_path / "cell.hoc").write_text(BALL_STICK_HOC)
    res = _cli("reduce", "--hoc", "cell.hoc", "--template", "BallStickNH", "--template-arg", "0.0002",
               "--mod-dir", "mods", "--out", "model", "--size", "small", "--latents", "2", "--epochs", "60",
               "--lbfgs-iters", "20", "--workers", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    meta = json.loads((tmp_path / "model" / "metadata.json").read_text())
    # the torch twin cannot step a user's mechanism: the (optional) closed loop is skipped, said before training
    assert "closed loop will be skipped: the soma's userleak has no definition" in res.stdout + res.stderr
    assert meta["training"]["closed_loop"] == {"skipped": "no torch definition of the soma mechanism(s) userleak"}
    assert meta["cell"] == "BallStickNH"
    assert meta["cell_source"] == {"kind": "hoc", "path": str(tmp_path / "cell.hoc"), "template": "BallStickNH",
                                   "args": [0.0002], "mod_dirs": [str(tmp_path / "mods")]}
    soma = json.loads((tmp_path / "model" / "soma.json").read_text())
    assert "userleak" in json.dumps(soma) and "0.0002" in json.dumps(soma)  # the template argument reached the soma
    # the benchmark rebuilds the hoc cell (with its MOD file) from the metadata alone
    res = _cli("benchmark", "model", "--repeats", "1", "--workers", "1", "--report", "report", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["cell"] == "BallStickNH" and metrics["summary"]["n_segments_full"] == 10
    for p in metrics["protocols"]:  # held-out protocols: the passive reduced soma follows the full one
        assert p["subthreshold_rmse_mV"] < 1.0, p["protocol"]
        assert not p["runaway"]


def test_user_cell_options_give_clear_errors(tmp_path, capsys):
    out = str(tmp_path / "m")
    assert main(["reduce", "--hoc", str(tmp_path / "cell.hoc"), "--out", out]) == 2
    assert "needs --template NAME" in capsys.readouterr().err
    assert main(["reduce", "--hoc", str(tmp_path / "missing.hoc"), "--template", "X", "--out", out]) == 2
    assert "missing.hoc does not exist" in capsys.readouterr().err
    assert main(["reduce", "--morphology", str(ROOT / "morphologies" / "c91662.swc"), "--out", out]) == 2
    assert "needs --biophysics module:function" in capsys.readouterr().err
    assert main(["reduce", "--morphology", str(ROOT / "morphologies" / "c91662.swc"), "--biophysics",
                 "no_such_module_nh:f", "--out", out]) == 2
    assert "cannot import 'no_such_module_nh'" in capsys.readouterr().err
    assert main(["reduce", "--cell", "ball_and_stick", "--param", "passive", "--out", out]) == 2
    assert "expected NAME=VALUE" in capsys.readouterr().err
    assert not Path(out).exists()


def insert_hh_everywhere(cell):
    """Biophysics of the round-trip test (module level, so importable by its spec)."""
    for sec in cell.all:
        sec.insert("hh")


def test_cell_sources_round_trip(h, tmp_path):
    assert builder_source("ca1_pospischil") == {"kind": "builtin", "name": "ca1_pospischil"}
    assert builder_from_source(builder_source("ca1_pospischil")) == "ca1_pospischil"
    morph = MorphologyBuilder(ROOT / "morphologies" / "ball_and_stick.swc", insert_hh_everywhere)
    src = builder_source(morph)
    assert src["kind"] == "morphology" and src["biophysics"] == function_spec(insert_hh_everywhere)
    again = builder_from_source(json.loads(json.dumps(src)))
    assert again.source() == src and again.biophysics is insert_hh_everywhere
    cell = again()
    assert all(h.ismembrane("hh", sec=sec) for sec in cell.all)
    hoc = HocTemplateBuilder(__file__, "AnyTemplate", mod_dirs=[tmp_path], args=[1, "x"])
    assert builder_from_source(builder_source(hoc)).source() == hoc.source()
    assert builder_source(lambda **p: None) is None
    with pytest.raises(CellError, match="pass it explicitly"):
        builder_from_source(None)
    with pytest.raises(CellError, match="has no function"):
        builder_from_source({"kind": "function", "function": "neuron_hybrid.cells:no_such_builder"})


def test_biophysics_module_in_the_current_folder_is_found(tmp_path, monkeypatch):
    """The console script does not search the current folder; `--biophysics mycells:f` run there must still work."""
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mybio_nh_test.py").write_text("def insert(cell):\n    return 'inserted'\n")
    assert import_function("mybio_nh_test:insert")(None) == "inserted"
    with pytest.raises(CellError, match="has no function 'nope'"):
        import_function("mybio_nh_test:nope")
    with pytest.raises(CellError, match="expected module:function"):
        import_function("mybio_nh_test")
