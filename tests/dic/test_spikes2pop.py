"""The spikes2pop command on a small input: CSV in, populations out, bad rows reported."""
import argparse
import csv

import numpy as np
import pytest

from neuron_hybrid import cli_dic
from neuron_hybrid.dic import STG, dics
from neuron_hybrid.dic.spikes2pop import Spikes2PopConfig, read_spike_csv, spikes_to_population

TONIC = [round(100.0 + 65.0 * k, 2) for k in range(30)]  # 15 Hz tonic
BURSTS = [round(100.0 + 170.0 * b + 7.0 * k, 2) for b in range(10) for k in range(8)]  # 8-spike bursts


def _write(path, rows, col="spike_times_ms"):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", col])
        w.writerows(rows)


def _run_cli(argv):
    p = argparse.ArgumentParser(prog="neuron-hybrid")
    sub = p.add_subparsers(dest="command", required=True)
    cli_dic.add_subcommands(sub)
    args = p.parse_args(argv)
    return args.func(args)


def test_command_end_to_end(tmp_path, capsys):
    src = tmp_path / "spikes.csv"
    _write(src, [("tonic", str(TONIC)), ("burst", str(BURSTS)), ("garbage", "[1.0, abc"),
                 ("two", "[1.0, 2.0]"), ("empty", "")])
    out = tmp_path / "pop.csv"
    rc = _run_cli(["spikes2pop", str(src), "--model", "stg", "--n", "40", "--out", str(out), "--quiet"])
    assert rc == 0
    err = capsys.readouterr().err
    for rid in ("garbage", "two", "empty"):
        assert f"ID '{rid}'" in err  # every bad row is named
    assert "at least 3" in err and "unparsable" in err
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["ID", *STG.columns, "g_s", "g_u", "class"]
    assert {r["ID"] for r in rows} == {"tonic", "burst"}
    by_id = {rid: [r for r in rows if r["ID"] == rid] for rid in ("tonic", "burst")}
    assert by_id["tonic"][0]["class"] == "spiking" and by_id["burst"][0]["class"] == "bursting"
    assert float(by_id["burst"][0]["g_s"]) < 0 < float(by_id["tonic"][0]["g_s"])
    for rid, rs in by_id.items():
        assert 10 <= len(rs) <= 40
        g = {c: float(rs[0][c]) for c in STG.columns}
        assert min(g.values()) >= 0
        _, gs, gu = dics("stg", g, -51.0)  # each member has the predicted DICs
        assert gs == pytest.approx(float(rs[0]["g_s"]), abs=0.2)
        assert gu == pytest.approx(float(rs[0]["g_u"]), abs=0.2)
    # same seed, same output
    out2 = tmp_path / "pop2.csv"
    assert _run_cli(["spikes2pop", str(src), "--n", "40", "--out", str(out2), "--quiet"]) == 0
    assert out2.read_text() == out.read_text()


def test_spike2pop_column_name_and_report(tmp_path):
    src = tmp_path / "app.csv"
    _write(src, [("a", str(BURSTS)), ("b", str(TONIC))], col="spiking_times")
    rows, skipped = read_spike_csv(src)
    assert [r for r, _ in rows] == ["a", "b"] and not skipped
    cfg = Spikes2PopConfig(n=20, report_ids=2, report_members=2, sim_tstop_ms=800.0, sim_transient_ms=300.0,
                           sim_dt_ms=0.1)
    res = spikes_to_population(src, tmp_path / "out.csv", cfg, report_dir=tmp_path / "rep", progress=False)
    text = res.report.read_text()
    assert "Predicted DICs" in text and "ID a" in text
    for name in ("dics.png", "conductances_a.png", "traces_a.png", "summary.json"):
        assert (tmp_path / "rep" / name).stat().st_size > 0


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,times\nx,[1,2,3]\n")
    with pytest.raises(ValueError, match="spike_times_ms"):
        read_spike_csv(bad)
    assert _run_cli(["spikes2pop", str(bad), "--out", str(tmp_path / "o.csv"), "--quiet"]) == 2
    with pytest.raises(FileNotFoundError):
        read_spike_csv(tmp_path / "missing.csv")


def test_da_command_with_shipped_weights(tmp_path):
    """The shipped DA network: a 4 Hz pacemaker is classified as spiking, an 8-spike burst pattern as
    bursting, and every generated DA model has the predicted DICs at V_th = -55.5 mV."""
    from neuron_hybrid.dic import DA

    src = tmp_path / "da.csv"
    pace = [round(200.0 + 250.0 * k, 2) for k in range(12)]
    bursts = [round(200.0 + 1500.0 * b + 25.0 * k, 2) for b in range(4) for k in range(8)]
    _write(src, [("pace", str(pace)), ("burst", str(bursts))])
    out = tmp_path / "pop.csv"
    assert _run_cli(["spikes2pop", str(src), "--model", "da", "--n", "20", "--out", str(out), "--quiet"]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["ID", *DA.columns, "g_s", "g_u", "class"]
    first = {r["ID"]: r for r in reversed(rows)}
    assert first["pace"]["class"] == "spiking" and first["burst"]["class"] == "bursting"
    for r in rows[:3]:
        g = {c: float(r[c]) for c in DA.columns}
        _, gs, gu = dics("da", g, -55.5)
        assert gs == pytest.approx(float(r["g_s"]), abs=0.2)
        assert gu == pytest.approx(float(r["g_u"]), abs=0.2)
