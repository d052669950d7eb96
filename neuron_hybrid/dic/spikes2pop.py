"""Spike times -> (g_s, g_u) -> degenerate populations: the ``neuron-hybrid spikes2pop`` pipeline.

Input CSV: columns ``ID`` and ``spike_times_ms`` (Spike2Pop's ``spiking_times`` also accepted),
one recording per row, the times (ms) as a bracketed list ``"[12.5, 80.1, ...]"``. Rows that
cannot be parsed or have fewer than 3 spikes are reported (stderr, the return value, the report)
and skipped.

Output CSV: one row per population member: ``ID``, one column per maximal conductance
(``g_<name>``, mS/cm2, e.g. STG ``g_Na, g_Kd, g_CaT, g_CaS, g_KCa, g_A, g_H, g_leak``), then the
predicted ``g_s``, ``g_u`` (leak-normalised DICs at V_th) and ``class`` (spiking/bursting) of
that ID. Optional report folder: ``report.md`` with the predicted DICs, conductance
distributions, and simulated traces of a few members next to the input spike raster.
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .dics import get_model
from .network import SpikeDICNet, load_pretrained
from .population import generate_population
from .spikes import parse_spike_list

__all__ = ["Spikes2PopConfig", "Spikes2PopResult", "read_spike_csv", "spikes_to_population", "SPIKE_COLUMNS"]

SPIKE_COLUMNS = ("spike_times_ms", "spiking_times")


@dataclass(frozen=True)
class Spikes2PopConfig:
    """``model`` ("stg"/"da"); ``n`` models sampled per ID (non-physical ones are discarded, so
    fewer may be written); ``seed``; ``iterations`` of the iterative compensation (None: model
    default); ``weights``: network file (None: the shipped one); report settings:
    ``report_ids`` IDs shown, ``report_members`` simulated members per ID, ``sim_tstop_ms``,
    ``sim_transient_ms``, ``sim_dt_ms``."""

    model: str = "stg"
    n: int = 200
    seed: int = 0
    iterations: int | None = None
    weights: str | None = None
    report_ids: int = 4
    report_members: int = 3
    sim_tstop_ms: float = 4000.0
    sim_transient_ms: float = 2000.0
    sim_dt_ms: float = 0.05


@dataclass
class Spikes2PopResult:
    """``predictions``: ``{ID: (g_s, g_u, class)}``; ``sizes``: ``{ID: models written}``;
    ``skipped``: ``[(row number, ID, reason)]``; ``out``: output path; ``report``: report path."""

    predictions: dict
    sizes: dict
    skipped: list
    out: Path
    report: Path | None = None


def read_spike_csv(path) -> tuple[list[tuple[str, np.ndarray]], list[tuple[int, str, str]]]:
    """``(rows, skipped)``: ``rows`` = [(ID, spike times ms)], ``skipped`` = [(row number, ID,
    reason)] for unparsable rows or fewer than 3 spikes. Raises ``ValueError`` if the file lacks
    the required columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"spike CSV {path} not found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        col = next((c for c in SPIKE_COLUMNS if c in cols), None)
        if "ID" not in cols or col is None:
            raise ValueError(f"{path}: expected columns 'ID' and 'spike_times_ms' (or 'spiking_times'), found "
                             f"{cols}; each row: ID,\"[t1, t2, ...]\" with times in ms")
        rows, skipped, seen = [], [], set()
        for k, row in enumerate(reader, start=2):  # row 1 is the header
            rid = (row.get("ID") or "").strip()
            if not rid:
                skipped.append((k, "", "empty ID"))
                continue
            if rid in seen:
                skipped.append((k, rid, "duplicate ID (first occurrence kept)"))
                continue
            try:
                s = parse_spike_list(row.get(col) or "")
            except ValueError as e:
                skipped.append((k, rid, f"unparsable spike times: {e}"))
                continue
            if s.size < 3:
                skipped.append((k, rid, f"only {s.size} spike(s): at least 3 are needed (silent recording)"))
                continue
            seen.add(rid)
            rows.append((rid, s))
    return rows, skipped


def _member_seed(seed: int, k: int) -> int:
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def spikes_to_population(csv_in, csv_out, config: Spikes2PopConfig = Spikes2PopConfig(), *,
                         report_dir=None, net: SpikeDICNet | None = None, progress: bool = True) -> Spikes2PopResult:
    """Run the whole pipeline; see the module docstring."""
    model = get_model(config.model)
    if config.n < 1:
        raise ValueError("the population size n must be >= 1")
    rows, skipped = read_spike_csv(csv_in)
    for k, rid, why in skipped:
        print(f"spikes2pop: skipped row {k} (ID {rid!r}): {why}", file=sys.stderr)
    if net is None:
        net = SpikeDICNet.load(config.weights) if config.weights else load_pretrained(model.name)
    meta_model = getattr(net, "meta", {}).get("model")
    if meta_model is not None and meta_model != model.name:
        raise ValueError(f"the network was trained for model {meta_model!r}, not {model.name!r}")
    gs, gu, cls = net.predict([s for _, s in rows]) if rows else (np.zeros(0), np.zeros(0), [])
    predictions = {rid: (float(a), float(b), c) for (rid, _), a, b, c in zip(rows, gs, gu, cls)}
    pops = {}
    from tqdm.auto import tqdm
    for k, (rid, _) in enumerate(tqdm(rows, desc="populations", disable=not progress or len(rows) < 2)):
        a, b, _ = predictions[rid]
        pops[rid] = generate_population(model, a, b, config.n, seed=_member_seed(config.seed, k),
                                        iterations=config.iterations)
    csv_out = Path(csv_out)
    csv_out.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", *model.columns, "g_s", "g_u", "class"])
        for rid, pop in pops.items():
            a, b, c = predictions[rid]
            for row in pop.gbar:
                w.writerow([rid, *[repr(float(x)) for x in row], repr(a), repr(b), c])
    sizes = {rid: len(p.gbar) for rid, p in pops.items()}
    for rid, n in sizes.items():
        if n == 0:
            print(f"spikes2pop: ID {rid!r}: no physical model for (g_s, g_u) = "
                  f"({predictions[rid][0]:.2f}, {predictions[rid][1]:.2f}); nothing written", file=sys.stderr)
    result = Spikes2PopResult(predictions, sizes, skipped, csv_out)
    if report_dir is not None:
        from .report import write_report
        result.report = write_report(report_dir, model, rows, pops, predictions, skipped, config)
    return result
