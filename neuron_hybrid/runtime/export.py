"""``neuron_hybrid.export``: validate a learned current and save it as TorchScript plus metadata.

The file is a normal TorchScript archive (``torch.jit.load`` reads it) holding the module in float64
with ``rates``, ``current`` and ``conductance`` methods, plus extra files read by the C++ bridge:
``nh_meta.txt`` (key=value: format_version, name, n_latent, v_min, v_max, kind, ...),
``nh_user_meta.json`` (free metadata such as training ranges) and, when the graph can be compiled,
``nh_rates_tape.txt`` / ``nh_current_tape.txt`` for the fast engine.
"""

import copy
import json
import os
from pathlib import Path

import torch
from torch import nn

from .compiler import Unsupported, compile_method
from .contract import ContractError, check_numerics, read_attributes

FORMAT_VERSION = 1


class _WithConductance(nn.Module):
    """Export wrapper for modules that provide conductance(v, z) themselves."""

    n_latent: int
    v_min: float
    v_max: float
    kind: str

    def __init__(self, inner, n_latent: int, v_min: float, v_max: float, kind: str):
        super().__init__()
        self.inner = inner
        self.n_latent, self.v_min, self.v_max, self.kind = n_latent, v_min, v_max, kind

    @torch.jit.export
    def rates(self, v: torch.Tensor):
        zinf, tau = self.inner.rates(v)
        return zinf, tau

    @torch.jit.export
    def current(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.inner.current(v, z)

    @torch.jit.export
    def conductance(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.inner.conductance(v, z)

    def forward(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.current(v, z)


class _AutogradConductance(_WithConductance):
    """Export wrapper adding conductance = d current / dv by autograd (one backward pass)."""

    @torch.jit.export
    def conductance(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # needs grad mode on (the bridge enables it for this call)
        vv = v.detach().requires_grad_(True)
        i = self.inner.current(vv, z.detach())
        grads = torch.autograd.grad([i.sum()], [vv], allow_unused=True)
        g = grads[0]
        if g is None:
            return torch.zeros_like(v)
        return g.detach()


def _to_float64(module):
    if isinstance(module, torch.jit.ScriptModule):
        try:
            module = module.double()
        except Exception:  # noqa: BLE001 - some script modules cannot be converted; keep as is
            pass
        return module.eval()
    module = copy.deepcopy(module)
    return module.double().eval()


def script_learned_current(module, where: str = "module"):
    """Wrap and script a conforming module (float64, eval mode) without writing anything."""
    info = read_attributes(module, where)
    inner = _to_float64(module)
    cls = _WithConductance if callable(getattr(module, "conductance", None)) else _AutogradConductance
    wrapper = cls(inner, info.n_latent, info.v_min, info.v_max, info.kind)
    try:
        scripted = torch.jit.script(wrapper)
    except Exception as exc:  # noqa: BLE001
        raise ContractError(
            f"{where} could not be compiled to TorchScript: {exc}\nWrite rates/current with torch operations and "
            "type annotations that torch.jit.script accepts (see the README's contract section)"
        ) from exc
    return scripted.eval(), info


def export(module, path, *, name=None, metadata=None, compile_tapes: bool = True) -> Path:
    """Validate ``module`` against the learned-current contract and save it to ``path``.

    module: an ``nn.Module`` (or ScriptModule) following the contract (README).
    path: output file (conventionally ``.pt``); written atomically.
    name: shown in NEURON error messages (default: the file stem).
    metadata: JSON-serialisable dict stored with the model (e.g. training ranges, data hash).
    compile_tapes: also write the fast-engine tapes when the graph allows it.
    Returns the path. Raises :class:`ContractError` naming the problem.
    """
    path = Path(path)
    where = f"{type(module).__name__} (exporting to {path})"
    scripted, info = script_learned_current(module, where)
    check_numerics(scripted, info, where)
    meta = {
        "format_version": FORMAT_VERSION,
        "name": name or path.stem,
        "n_latent": info.n_latent,
        "v_min": repr(info.v_min),
        "v_max": repr(info.v_max),
        "kind": info.kind,
        "torch_version": torch.__version__,
    }
    extra = {}
    if compile_tapes:
        try:
            frozen = torch.jit.freeze(scripted, preserved_attrs=["rates", "current"])
            extra["nh_rates_tape.txt"] = compile_method(frozen, "rates", info.n_latent, v_example=0.5 * (info.v_min + info.v_max))
            extra["nh_current_tape.txt"] = compile_method(frozen, "current", info.n_latent, v_example=0.5 * (info.v_min + info.v_max))
            meta["tapes"] = "rates,current"
        except Unsupported as exc:
            meta["tapes"] = "none"
            meta["tape_note"] = str(exc).replace("\n", " ")
            extra.pop("nh_rates_tape.txt", None)
            extra.pop("nh_current_tape.txt", None)
        except Exception as exc:  # noqa: BLE001 - the fast engine is optional; torchscript always works
            meta["tapes"] = "none"
            meta["tape_note"] = f"{type(exc).__name__}: {exc}".replace("\n", " ")
            extra.pop("nh_rates_tape.txt", None)
            extra.pop("nh_current_tape.txt", None)
    extra["nh_meta.txt"] = "".join(f"{k}={v}\n" for k, v in meta.items())
    extra["nh_user_meta.json"] = json.dumps(metadata or {}, indent=1, sort_keys=True, default=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.jit.save(scripted, str(tmp), _extra_files=extra)
    os.replace(tmp, path)
    return path


def read_metadata(path) -> tuple[dict, dict]:
    """(nh_meta as dict of strings, user metadata dict) of an exported file."""
    extra = {"nh_meta.txt": "", "nh_user_meta.json": ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    text = {k: v.decode() if isinstance(v, bytes) else v for k, v in extra.items()}
    meta = dict(line.split("=", 1) for line in text["nh_meta.txt"].splitlines() if "=" in line)
    user = json.loads(text["nh_user_meta.json"]) if text["nh_user_meta.json"] else {}
    return meta, user
