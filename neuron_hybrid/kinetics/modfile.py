"""Reading what channel-curves needs from an NMODL file (without translating it).

:func:`parse_mod` finds the mechanism name (``SUFFIX``), the ions it uses, its STATE variables, its
PARAMETER defaults, the integration ``METHOD`` and, where the BREAKPOINT block writes the current
in the usual ``gbar * x^p * y^q * (v - e)`` form, each gate's exponent, ion/current and the
conductance parameter. It is a light parser of the NMODL subset found in channel models; anything
it cannot read is left out (``None``) rather than guessed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ModInfo", "CurrentInfo", "ModParseError", "parse_mod", "parse_mod_text"]

#: concentration names of an ion ``x``: ``xi``, ``xo`` are STATEs of ion mechanisms, not gates
_CONC_RE = re.compile(r"^[a-z]+[io]$")


class ModParseError(ValueError):
    """The file is not a usable NMODL channel (message names the problem and the fix)."""


@dataclass
class CurrentInfo:
    """One current written by the mechanism: ``variable = gbar * prod(x**p) * (v - reversal)``."""

    variable: str  # ina, ik, ica, or the NONSPECIFIC_CURRENT name
    ion: str | None  # "na", "k", "ca", ... or None (nonspecific)
    powers: dict[str, int] = field(default_factory=dict)  # gate -> exponent
    gbar: str | None = None  # name of the maximal-conductance PARAMETER (S/cm2)
    reversal: str | None = None  # ek, ena, or a PARAMETER name (mV)
    gates: list[str] = field(default_factory=list)  # every gate in the expression (also those without a found power)


@dataclass
class ModInfo:
    """What :func:`parse_mod` found in a MOD file."""

    path: Path | None
    text: str
    suffix: str
    point_process: bool
    states: list[str]
    gates: list[str]  # states that are not ion concentrations
    method: str | None  # cnexp, derivimplicit, euler, sparse, ... (SOLVE ... METHOD)
    kinetic: bool  # has a KINETIC block (Markov scheme)
    ions: dict[str, dict[str, list[str]]]  # ion -> {"read": [...], "write": [...]}
    nonspecific: list[str]
    parameters: dict[str, float]
    currents: list[CurrentInfo]

    @property
    def reads_cai(self) -> bool:
        """True if the mechanism reads an intracellular concentration (e.g. ``cai``)."""
        return any(n.endswith("i") and n != f"e{ion}" and not n.startswith("i")
                   for ion, rw in self.ions.items() for n in rw["read"])

    @property
    def read_concentrations(self) -> list[str]:
        """Concentrations the mechanism reads, e.g. ``["cai"]``."""
        out = []
        for ion, rw in self.ions.items():
            for n in rw["read"]:
                if n in (f"{ion}i", f"{ion}o"):
                    out.append(n)
        return out

    def gate_current(self, gate: str) -> CurrentInfo | None:
        """The current whose conductance uses ``gate`` (the first one), or None."""
        for c in self.currents:
            if gate in c.powers or gate in c.gates:
                return c
        return None


def _strip_comments(text: str) -> str:
    from ..runtime.includes import without_comment_blocks

    text = without_comment_blocks(text)
    text = re.sub(r"(?ms)\bVERBATIM\b.*?\bENDVERBATIM\b", "", text)
    return "\n".join(line.split(":", 1)[0] for line in text.splitlines())


def _block(text: str, name: str) -> str | None:
    """Body of the first top-level block ``NAME [args] { ... }`` (braces matched)."""
    m = re.search(r"(?m)^\s*" + name + r"\b[^{\n]*\{", text)
    if not m:
        return None
    depth, i = 1, m.end()
    while i < len(text) and depth:
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
        i += 1
    return text[m.end():i - 1]


def _names(s: str) -> list[str]:
    return [n for n in re.split(r"[\s,]+", s.strip()) if n]


def parse_mod(path) -> ModInfo:
    """Parse the MOD file at ``path`` (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MOD file {path} does not exist; pass the path of a channel's .mod file "
                                "(or the name of a loaded mechanism such as hh)")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        text = path.read_bytes().decode("latin-1")
    return parse_mod_text(text, path)


def parse_mod_text(text: str, path: Path | None = None) -> ModInfo:
    where = str(path) if path else "MOD text"
    clean = _strip_comments(text)
    neuron = _block(clean, "NEURON")
    if neuron is None:
        raise ModParseError(f"{where} has no NEURON {{ }} block: it is not an NMODL mechanism file")
    m = re.search(r"\b(SUFFIX|POINT_PROCESS|ARTIFICIAL_CELL)\s+(\w+)", neuron)
    if not m:
        raise ModParseError(f"{where}: the NEURON block names no SUFFIX or POINT_PROCESS")
    suffix, point = m.group(2), m.group(1) != "SUFFIX"
    ions: dict[str, dict[str, list[str]]] = {}
    kw = r"(?=\b(?:SUFFIX|POINT_PROCESS|ARTIFICIAL_CELL|USEION|NONSPECIFIC_CURRENT|ELECTRODE_CURRENT|RANGE|GLOBAL|" \
         r"THREADSAFE|POINTER|BBCOREPOINTER|EXTERNAL)\b)"
    statements = [st.strip() for st in re.split(kw, neuron) if st.strip()]
    for line in statements:
        um = re.match(r"\s*USEION\s+(\w+)(.*)", line, re.S)
        if um:
            rest = re.sub(r"VALENCE\s+[-+\d.]+", "", um.group(2))
            rd = re.search(r"READ\s+(.*?)(?=WRITE|$)", rest, re.S)
            wr = re.search(r"WRITE\s+(.*?)(?=READ|$)", rest, re.S)
            ions[um.group(1)] = {"read": _names(rd.group(1)) if rd else [], "write": _names(wr.group(1)) if wr else []}
    nonspecific = []
    for st in statements:
        if st.startswith("NONSPECIFIC_CURRENT"):
            nonspecific += _names(st[len("NONSPECIFIC_CURRENT"):])
    state_body = _block(clean, "STATE") or ""
    state_body = re.sub(r"\([^)]*\)", " ", state_body)  # units
    state_body = re.sub(r"\bFROM\s+\S+\s+TO\s+\S+", " ", state_body)
    states = [n for n in re.findall(r"[A-Za-z_]\w*", state_body)]
    concentrations = {n for rw in ions.values() for n in rw["read"] + rw["write"]}
    gates = [s for s in states if s not in concentrations]
    meth = re.search(r"SOLVE\s+\w+\s+METHOD\s+(\w+)", clean)
    params: dict[str, float] = {}
    # several "name = value (units)" may share a line
    for pm in re.finditer(r"(?<![\w.])([A-Za-z_]\w*)\s*=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)",
                          _block(clean, "PARAMETER") or ""):
        try:
            params[pm.group(1)] = float(pm.group(2))
        except ValueError:
            pass
    info = ModInfo(path=path, text=text, suffix=suffix, point_process=point, states=states, gates=gates,
                   method=meth.group(1) if meth else None, kinetic=_block(clean, "KINETIC") is not None,
                   ions=ions, nonspecific=nonspecific, parameters=params, currents=[])
    info.currents = _currents(clean, info)
    return info


def _currents(clean: str, info: ModInfo) -> list[CurrentInfo]:
    """Exponents from the BREAKPOINT assignments (sympy), best effort."""
    import sympy

    body = _block(clean, "BREAKPOINT")
    if body is None:
        return []
    body = _inline_procedures(clean, body)
    targets = {f"i{ion}": ion for ion, rw in info.ions.items() for w in rw["write"] if w == f"i{ion}"}
    targets.update({n: None for n in info.nonspecific})
    env: dict[str, object] = {}
    locs = {"exp": sympy.exp, "pow": sympy.Pow, "fabs": sympy.Abs, "log": sympy.log, "sqrt": sympy.sqrt}
    out = []
    # statements: NMODL needs no separator, so "SOLVE states METHOD cnexp ik = gbar*n*(v - ek)" or
    # "gk = gbar*n*n  ik = gk*(v - ek)" may share a line; split before every "name =" (not ==, <=, >=, !=)
    body = re.sub(r"\bSOLVE\s+\w+(?:\s+(?:METHOD|STEADYSTATE)\s+\w+)*", "\n", body)
    pieces = [p.strip() for line in body.splitlines() for p in re.split(r"(?=\b[A-Za-z_]\w*\s*=(?!=))", line)]
    for line in pieces:
        am = re.match(r"^(\w+)\s*=\s*(.+)$", line)
        if not am or line.startswith(("if", "else")):
            continue
        lhs, rhs = am.group(1), am.group(2).replace("^", "**")
        names = {}
        for k in re.findall(r"[A-Za-z_]\w*", rhs):
            if k not in locs:  # a FUNCTION of the file (e.g. ghk(v, cai, cao)) stays an opaque factor
                names[k] = sympy.Function(k) if re.search(r"\b" + k + r"\s*\(", rhs) else sympy.Symbol(k)
        try:
            expr = sympy.sympify(rhs, locals={**locs, **names})
            expr = expr.subs({sympy.Symbol(k): e for k, e in env.items()})
        except (sympy.SympifyError, TypeError, SyntaxError, AttributeError):
            env.pop(lhs, None)
            continue
        env[lhs] = expr
        if lhs in targets:
            out.append(_current_info(lhs, targets[lhs], expr, info))
    return out


def _inline_procedures(clean: str, body: str, depth: int = 3) -> str:
    """``body`` with each call of an argument-free PROCEDURE (``iassign()``) replaced by that PROCEDURE's body,
    as in MOD files that assign their currents in a procedure called from BREAKPOINT and INITIAL."""
    def sub(m):
        proc = _block(clean, r"PROCEDURE\s+" + m.group(1) + r"(?=\s*\(\s*\))")
        return "\n" + proc + "\n" if proc is not None else m.group(0)

    for _ in range(depth):  # procedures calling procedures
        new = re.sub(r"\b(\w+)\s*\(\s*\)", sub, body)
        if new == body:
            break
        body = new
    return body


def _current_info(variable: str, ion: str | None, expr, info: ModInfo) -> CurrentInfo:
    import sympy

    c = CurrentInfo(variable=variable, ion=ion)
    c.gates = [g for g in info.gates if sympy.Symbol(g) in expr.free_symbols]
    rest = expr
    for g in info.gates:
        s = sympy.Symbol(g)
        if s not in expr.free_symbols:
            continue
        try:
            poly = sympy.Poly(sympy.expand(expr), s)
        except sympy.PolynomialError:
            continue
        monoms = poly.monoms()
        if len(monoms) == 1 and monoms[0][0] >= 1:
            c.powers[g] = int(monoms[0][0])
            rest = rest / s ** c.powers[g]
    rest = sympy.factor(sympy.simplify(rest))
    v = sympy.Symbol("v")
    for f in sympy.Mul.make_args(rest):
        fs = f.free_symbols
        if v in fs and len(fs) == 2:  # (v - e)
            other = next(iter(fs - {v}))
            if sympy.simplify(f - (v - other)) == 0:
                c.reversal = str(other)
        elif len(fs) == 1 and str(next(iter(fs))) in info.parameters:
            c.gbar = str(next(iter(fs)))
    return c
