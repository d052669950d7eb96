"""``ReducedCell``: a one-compartment NEURON cell (the soma's own channels) plus a learned axial current.

Model directory (written by ``neuron_hybrid.reduce``)::

    model_dir/
      axial_current.pt   learned axial current (TorchScript, learned-current contract, kind "point", nA)
      soma.json          soma geometry, mechanisms and parameters, ions, celsius, v_init
      metadata.json      format version, source cell, training data hash and ranges, config, metrics
"""
import json
from pathlib import Path

from neuron_hybrid.runtime import ContractError, LearnedCurrent, load_mechanisms

from .soma import build_soma

FORMAT_VERSION = 1
MODEL_FILE, SOMA_FILE, META_FILE = "axial_current.pt", "soma.json", "metadata.json"


class ModelDirError(ValueError):
    """A reduced-model directory is missing, incomplete or corrupt."""


def read_json(path: Path, what: str) -> dict:
    """A JSON file of a model directory, or a ModelDirError naming what is missing or corrupt."""
    if not path.is_file():
        raise ModelDirError(f"{path.parent} is not a complete reduced model: {path.name} ({what}) is missing; "
                            "re-run `neuron-hybrid reduce` for it")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{path} is corrupt ({exc}); re-run `neuron-hybrid reduce`") from exc


class ReducedCell:
    """One NEURON section ``soma`` with the full cell's somatic mechanisms and a learned axial current.

    ``red.soma`` is a normal ``h.Section`` (IClamp, recording and NetCon work); ``red.axial`` is the
    point process (``NhPointK4`` for 3-4 latents) carrying the axial current (nA, leaving the soma); ``red.learned`` its
    :class:`~neuron_hybrid.LearnedCurrent`.
    """

    def __init__(self, model_dir, soma_desc: dict, metadata: dict, learned: LearnedCurrent, name: str = "reduced"):
        self.model_dir = Path(model_dir)
        self.soma_description = soma_desc
        self.metadata = metadata
        self.learned = learned
        self.name = name
        self.soma = build_soma(soma_desc, name=f"{name}_soma")
        self.axial = learned.insert(self.soma(0.5))
        self.somatic, self.all = [self.soma], [self.soma]
        self.basal, self.apical, self.axonal = [], [], []
        self.params = {"soma": soma_desc, "source_cell": metadata.get("cell")}

    @classmethod
    def load(cls, model_dir, engine: str = "auto", on_out_of_range: str = "clamp", name: str = "reduced") -> "ReducedCell":
        d = Path(model_dir)
        if not d.is_dir():
            raise ModelDirError(f"reduced-model directory {d} does not exist; create it with `neuron-hybrid reduce`")
        meta = read_json(d / META_FILE, "metadata")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelDirError(f"{d / META_FILE} has format_version {meta.get('format_version')!r}; this version of "
                                f"neuron-hybrid reads {FORMAT_VERSION}")
        soma = read_json(d / SOMA_FILE, "soma description")
        for key in ("L_um", "diam_um", "mechanisms", "ions", "celsius_degC"):
            if key not in soma:
                raise ModelDirError(f"{d / SOMA_FILE} lacks {key!r}; the model directory is incomplete")
        if not (d / MODEL_FILE).is_file():
            raise ModelDirError(f"{d} is not a complete reduced model: {MODEL_FILE} is missing")
        load_mechanisms(extra_mod_dirs=meta.get("mod_dirs", []), verbose=False)
        try:
            learned = LearnedCurrent.load(d / MODEL_FILE, engine=engine, on_out_of_range=on_out_of_range)
        except ContractError as exc:
            raise ModelDirError(f"{d / MODEL_FILE} is not a valid learned current: {exc}") from exc
        if learned.kind != "point":
            raise ModelDirError(f"{d / MODEL_FILE} must be a point current (nA), it is {learned.kind!r}")
        return cls(d, soma, meta, learned, name=name)

    # -- the Cell interface used by stimuli and simulations ----------------------------------
    @property
    def v_init_mV(self) -> float:
        return float(self.soma_description.get("v_init_mV", -65.0))

    @property
    def n_segments(self) -> int:
        return 1

    @property
    def label(self) -> str:
        return self.name

    def apply_globals(self) -> None:
        from neuron import h

        h.celsius = self.soma_description["celsius_degC"]

    def soma_children(self):
        return []

    def latent_refs(self):
        """NEURON pointers to the latents of the axial current (for h.Vector().record)."""
        return self.learned.latent_refs(self.axial)

    def __repr__(self):
        return f"ReducedCell({str(self.model_dir)!r}, engine={self.learned.engine})"
