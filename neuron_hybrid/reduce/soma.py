"""The soma of a detailed cell as a stand-alone compartment: extract its description, rebuild it.

The description (a JSON-ready dict) holds the geometry (um; the 3-D points when the soma has them,
so the area is exactly the full cell's), cm (uF/cm2), every density mechanism
inserted in the soma with its PARAMETER values (read with NEURON's MechanismStandard), the ions'
reversal potentials and concentrations, the ion-concentration globals, celsius and v_init.
"""
from neuron_hybrid.runtime.build import DENSITY_SUFFIXES

_ION_GLOBAL_FIELDS = ("{ion}i0_{ion}_ion", "{ion}o0_{ion}_ion")


def _parameters(seg, mech_name: str) -> dict:
    from neuron import h

    ms = h.MechanismStandard(mech_name, 1)
    getattr(ms, "in")(seg)
    out = {}
    for i in range(int(ms.count())):
        ref = h.ref("")
        ms.name(ref, i)
        out[ref[0]] = float(ms.get(ref[0]))
    return out


def describe_soma(cell) -> dict:
    """Description of `cell.soma` (must be a single-segment section) for :func:`build_soma`."""
    from neuron import h

    soma = cell.soma
    if soma.nseg != 1:
        raise ValueError(f"{soma.name()} has nseg = {soma.nseg}; the reduction keeps a one-segment soma "
                         "(set soma.nseg = 1 in the cell's builder)")
    seg = soma(0.5)
    mechs, ions = {}, {}
    for mech in seg:
        name = mech.name()
        if name in DENSITY_SUFFIXES:
            continue
        if mech.is_ion():
            ion = name[: -len("_ion")]
            vals = {}
            for field in (f"e{ion}", f"{ion}i", f"{ion}o"):
                if hasattr(seg, field):
                    vals[field] = float(getattr(seg, field))
            ions[ion] = vals
        else:
            mechs[name] = _parameters(seg, name)
    ion_globals = {}
    for ion in ions:
        for f in _ION_GLOBAL_FIELDS:
            key = f.format(ion=ion)
            if hasattr(h, key):
                ion_globals[key] = float(getattr(h, key))
    # rate tables of mechanisms that have them (e.g. built-in hh): on or off for the whole session
    usetable = {name: float(getattr(h, f"usetable_{name}")) for name in mechs if hasattr(h, f"usetable_{name}")}
    pt3d = [[soma.x3d(i), soma.y3d(i), soma.z3d(i), soma.diam3d(i)] for i in range(int(soma.n3d()))]
    return {
        "name": soma.name(),
        "pt3d_um": pt3d,
        "L_um": float(soma.L), "diam_um": float(soma.diam), "area_um2": float(seg.area()),
        "cm_uF_per_cm2": float(seg.cm), "Ra_ohm_cm": float(soma.Ra),
        "mechanisms": mechs, "ions": ions, "ion_globals": ion_globals, "usetable": usetable,
        "celsius_degC": float(h.celsius),
        "v_init_mV": float(cell.v_init_mV) if cell.v_init_mV is not None else -65.0,
    }


def build_soma(desc: dict, name: str = "soma"):
    """A new one-segment Section with the described geometry, mechanisms and ions. Sets h.celsius."""
    from neuron import h

    sec = h.Section(name=name)
    sec.nseg = 1
    if desc.get("pt3d_um"):
        for x, y, z, d in desc["pt3d_um"]:  # same 3-D outline, hence the same area as the full cell's soma
            h.pt3dadd(x, y, z, d, sec=sec)
    else:
        sec.L, sec.diam = desc["L_um"], desc["diam_um"]
    sec.cm = desc["cm_uF_per_cm2"]
    sec.Ra = desc["Ra_ohm_cm"]
    for mech, params in desc["mechanisms"].items():
        try:
            sec.insert(mech)
        except ValueError as exc:
            raise RuntimeError(f"mechanism {mech!r} of the soma is not loaded; load the cell's MOD files "
                               "(neuron_hybrid.load_mechanisms(extra_mod_dirs=[...]))") from exc
        for pname, value in params.items():
            setattr(sec(0.5), pname, value)
    for key, value in desc.get("ion_globals", {}).items():
        setattr(h, key, value)
    for mech, value in desc.get("usetable", {}).items():
        setattr(h, f"usetable_{mech}", value)
    seg = sec(0.5)
    for ion, vals in desc["ions"].items():
        for field, value in vals.items():
            if hasattr(seg, field):
                setattr(seg, field, value)
    h.celsius = desc["celsius_degC"]
    area = sec(0.5).area()
    if abs(area - desc["area_um2"]) > 1e-6 * desc["area_um2"]:
        raise RuntimeError(f"rebuilt soma has area {area} um2, the description says {desc['area_um2']} um2")
    return sec
