"""Where the morphology files shipped with neuron_hybrid live."""
from __future__ import annotations

import os
from pathlib import Path


def morphology_dir() -> Path:
    """The folder holding the built-in cells' morphology files.

    Looks, in order, at ``$NEURON_HYBRID_MORPHOLOGIES``, the repository's ``morphologies/``
    (source or editable installs) and the package data ``neuron_hybrid/_data/morphologies``
    (wheel installs).
    """
    here = Path(__file__).resolve()
    candidates = []
    env = os.environ.get("NEURON_HYBRID_MORPHOLOGIES")
    if env:
        candidates.append(Path(env))
    candidates += [here.parents[2] / "morphologies", here.parents[1] / "_data" / "morphologies"]
    for c in candidates:
        if (c / "SOURCES.md").is_file() or (c / "ball_and_stick.swc").is_file():
            return c
    raise FileNotFoundError(
        "neuron_hybrid's morphologies folder was not found; looked in "
        + ", ".join(str(c) for c in candidates) + " (reinstall the package or set "
        "NEURON_HYBRID_MORPHOLOGIES)")


def morphology_path(filename: str) -> Path:
    """Path of a shipped morphology file, e.g. ``morphology_path("c91662.swc")``."""
    p = morphology_dir() / filename
    if not p.is_file():
        available = sorted(q.name for q in morphology_dir().iterdir()
                           if q.suffix.lower() in (".swc", ".asc"))
        raise FileNotFoundError(f"no shipped morphology {filename!r} in {morphology_dir()}; "
                                f"available: {', '.join(available)}")
    return p
