"""Compile a learned current's TorchScript methods into a straight-line tape for the C++ fast engine.

The frozen, inlined TorchScript graph of ``rates(v)`` or ``current(v, z)`` is walked node by node with
example inputs of batch size 1 (NEURON evaluates one segment at a time). Shape arithmetic, control
flow on constants and constant sub-expressions are evaluated here; every operation on data becomes a
scalar-vector instruction (elementwise maths, gathers for views and broadcasts, dense ``linear``,
reductions, layer norm). The bridge (``bridge/nh_bridge.cpp``) runs the tape in plain C++ with
forward-mode derivatives, so ``di/dv`` costs one pass. Anything unsupported raises
:class:`Unsupported`; the model then runs on the TorchScript engine only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

TAPE_VERSION = 1


class Unsupported(Exception):
    """The graph uses an operation (or data-dependent control flow) the tape cannot express."""


@dataclass
class TVal:
    """A tensor value during compilation: an example (batch 1) and, unless constant, its tape slot."""

    example: torch.Tensor
    slot: int | None = None  # None: a constant whose value is `example`

    @property
    def const(self) -> bool:
        return self.slot is None


_UNARY = {
    "neg": "neg", "exp": "exp", "log": "log", "tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu",
    "sqrt": "sqrt", "abs": "abs", "sin": "sin", "cos": "cos", "expm1": "expm1", "log1p": "log1p",
    "reciprocal": "recip",
}
_VIEW_OPS = {
    "unsqueeze", "squeeze", "view", "reshape", "flatten", "select", "slice", "narrow", "expand",
    "t", "transpose", "permute", "contiguous", "clone", "detach", "unflatten", "movedim", "repeat",
    "view_as", "reshape_as", "expand_as", "alias", "numpy_T", "mT",
}
_IDENTITY = {"to", "type_as", "dropout", "feature_dropout", "alpha_dropout", "detach"}


class _Compiler:
    def __init__(self, n_latent: int):
        self.n_latent = n_latent
        self.sizes: list[int] = []
        self.code: list[tuple[str, int, list[int], list[int], list[float]]] = []
        self._const_slots: dict[int, int] = {}

    # -- slots and emission ---------------------------------------------------------------
    def new_slot(self, size: int) -> int:
        self.sizes.append(int(size))
        return len(self.sizes) - 1

    def emit(self, op: str, example: torch.Tensor, ins=(), ip=(), dp=()) -> TVal:
        out = self.new_slot(example.numel())
        self.code.append((op, out, list(ins), [int(x) for x in ip], [float(x) for x in dp]))
        return TVal(example, out)

    def slot_of(self, t: TVal) -> int:
        if not t.const:
            return t.slot
        key = id(t)
        if key not in self._const_slots:
            vals = t.example.detach().to(torch.float64).flatten().tolist()
            slot = self.new_slot(len(vals))
            self.code.append(("const", slot, [], [], vals))
            # the dict holds t itself, so its id cannot be reused by another constant while cached (a
            # self-reference, as before, is a cycle the garbage collector frees: a later constant then
            # got this slot, and a tape computed tau with the wrong divisor)
            self._const_slots[key] = (slot, t)
        return self._const_slots[key][0]

    def gather(self, t: TVal, index: torch.Tensor, example: torch.Tensor) -> TVal:
        """Select/reorder elements: result.flat[j] = t.flat[index.flat[j]]."""
        idx = index.flatten()
        if t.const:
            return TVal(t.example.flatten()[idx].reshape(example.shape).clone())
        if idx.numel() == t.example.numel() and torch.equal(idx, torch.arange(idx.numel())):
            return TVal(example, t.slot)  # a pure reshape: alias
        return self.emit("gather", example, [t.slot], idx.tolist())

    def broadcast(self, t: TVal, shape) -> TVal:
        shape = torch.Size(shape)
        if tuple(t.example.shape) == tuple(shape):
            return t
        idx = torch.arange(t.example.numel()).reshape(t.example.shape).expand(shape)
        return self.gather(t, idx, t.example.expand(shape).clone())

    # -- graph walking --------------------------------------------------------------------
    def run_block(self, block, env):
        for node in block.nodes():
            self.run_node(node, env)
        ret = block.return_node() if hasattr(block, "return_node") else block.returnNode()
        return [env[o] for o in ret.inputs()]

    def run_node(self, node, env):
        kind = node.kind()
        outs = list(node.outputs())
        ins = [env[i] for i in node.inputs()]
        if kind == "prim::Constant":
            val = outs[0].toIValue()
            env[outs[0]] = TVal(val.detach().to(torch.float64)) if isinstance(val, torch.Tensor) else val
        elif kind in ("prim::ListConstruct", "prim::TupleConstruct"):
            env[outs[0]] = list(ins) if kind == "prim::ListConstruct" else tuple(ins)
        elif kind in ("prim::ListUnpack", "prim::TupleUnpack"):
            for o, v in zip(outs, ins[0]):
                env[o] = v
        elif kind == "prim::TupleIndex":
            env[outs[0]] = ins[0][ins[1]]
        elif kind == "prim::Uninitialized":
            env[outs[0]] = None
        elif kind == "prim::If":
            cond = ins[0]
            if not isinstance(cond, bool):
                raise Unsupported("data-dependent if/else")
            blocks = list(node.blocks())
            res = self.run_block(blocks[0] if cond else blocks[1], env)
            for o, r in zip(outs, res):
                env[o] = r
        elif kind == "prim::Loop":
            trip, cond, *carried = ins
            if not isinstance(trip, int) or not isinstance(cond, bool):
                raise Unsupported("data-dependent loop")
            body = list(node.blocks())[0]
            binputs = list(body.inputs())
            i = 0
            while cond and i < trip:
                env[binputs[0]] = i
                for b, c in zip(binputs[1:], carried):
                    env[b] = c
                cond, *carried = self.run_block(body, env)
                if not isinstance(cond, bool):
                    raise Unsupported("data-dependent loop condition")
                i += 1
            for o, c in zip(outs, carried):
                env[o] = c
        elif kind == "prim::RaiseException":
            raise Unsupported("the method raises an exception on the traced path")
        elif kind.startswith("aten::") or kind.startswith("prim::"):
            res = self.run_op(kind, node, ins)
            if len(outs) == 1:
                env[outs[0]] = res
            else:
                for o, r in zip(outs, res):
                    env[o] = r
        else:
            raise Unsupported(f"unsupported operation {kind}")

    # -- operations -----------------------------------------------------------------------
    @staticmethod
    def _static(x):
        """Python value of a static operand (None if it depends on data)."""
        if isinstance(x, TVal):
            return x.example if x.const else None
        if isinstance(x, (list, tuple)):
            vals = [_Compiler._static(v) for v in x]
            if any(v is None and isinstance(o, TVal) for v, o in zip(vals, x)):
                return None
            return type(x)(vals)
        return x

    def run_op(self, kind: str, node, ins):
        name = kind.split("::")[1]
        static = [self._static(x) for x in ins]
        dynamic = any(
            (isinstance(x, TVal) and not x.const) or (isinstance(x, (list, tuple)) and any(isinstance(y, TVal) and not y.const for y in x))
            for x in ins
        )
        if not dynamic:
            try:
                op = getattr(torch.ops.aten, name) if kind.startswith("aten::") else None
                if op is None:
                    raise Unsupported(kind)
                res = self._call_with_schema(node, op, static)
            except Unsupported:
                raise
            except Exception as exc:  # noqa: BLE001
                raise Unsupported(f"could not evaluate constant {kind}: {exc}") from exc
            return TVal(res.detach().to(torch.float64) if res.is_floating_point() else res) if isinstance(res, torch.Tensor) else res
        if name.endswith("_") and name not in ("__and__",):
            raise Unsupported(f"in-place operation {kind}")
        handler = getattr(self, f"op_{name}", None)
        if handler is not None:
            return handler(ins, static)
        if name in _UNARY:
            return self.unary(_UNARY[name], ins[0])
        if name in _VIEW_OPS:
            return self.view_op(name, ins)
        if name in _IDENTITY:
            return ins[0]
        raise Unsupported(f"unsupported operation {kind}")

    @staticmethod
    def _call_with_schema(node, op, values):
        """Call an aten op with the node's arguments, keyword-only ones passed by name."""
        try:
            schema = torch._C.parse_schema(node.schema())
        except Exception:  # noqa: BLE001 - no schema: positional call
            return op(*values)
        args, kwargs = [], {}
        for arg, val in zip(schema.arguments, values):
            if arg.kwarg_only:
                kwargs[arg.name] = val
            else:
                args.append(val)
        return op(*args, **kwargs)

    def example_args(self, ins):
        def ex(x):
            if isinstance(x, TVal):
                return x.example
            if isinstance(x, (list, tuple)):
                return type(x)(ex(y) for y in x)
            return x
        return [ex(x) for x in ins]

    def view_op(self, name, ins):
        t = ins[0]
        args = self.example_args(ins)
        op = getattr(torch.ops.aten, name)
        example = op(*args)
        index = op(torch.arange(t.example.numel()).reshape(t.example.shape), *args[1:])
        return self.gather(t, index, example.clone())

    def unary(self, op, t: TVal, dp=()):
        return self.emit(op, self._apply_unary_example(op, t.example, dp), [self.slot_of(t)], dp=dp)

    @staticmethod
    def _apply_unary_example(op, x, dp):
        fns = {
            "neg": torch.neg, "exp": torch.exp, "log": torch.log, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
            "relu": torch.relu, "sqrt": torch.sqrt, "abs": torch.abs, "sin": torch.sin, "cos": torch.cos,
            "expm1": torch.expm1, "log1p": torch.log1p, "recip": torch.reciprocal,
        }
        if op in fns:
            return fns[op](x)
        if op == "powc":
            return x ** dp[0]
        if op == "scale":
            return dp[0] * x + dp[1]
        if op == "clamp":
            return torch.clamp(x, dp[0], dp[1])
        if op == "softplus":
            return torch.nn.functional.softplus(x, dp[0], dp[1])
        raise Unsupported(op)

    def _as_tval(self, x, like: TVal) -> TVal:
        if isinstance(x, TVal):
            return x
        return TVal(torch.tensor(float(x), dtype=torch.float64))

    def binary(self, op: str, a, b) -> TVal:
        a = self._as_tval(a, b)
        b = self._as_tval(b, a)
        shape = torch.broadcast_shapes(a.example.shape, b.example.shape)
        a2, b2 = self.broadcast(a, shape), self.broadcast(b, shape)
        fn = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "pow": torch.pow,
              "maximum": torch.maximum, "minimum": torch.minimum}[op]
        example = fn(a2.example, b2.example)
        return self.emit(op, example, [self.slot_of(a2), self.slot_of(b2)])

    @staticmethod
    def _scalar(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    def op_add(self, ins, static):
        a, b = ins[0], ins[1]
        alpha = ins[2] if len(ins) > 2 else 1
        if self._scalar(b):
            return self.unary("scale", a, (1.0, float(b) * alpha))
        if alpha != 1:
            b = self.binary("mul", b, alpha)
        return self.binary("add", a, b)

    def op_sub(self, ins, static):
        a, b = ins[0], ins[1]
        alpha = ins[2] if len(ins) > 2 else 1
        if self._scalar(b):
            return self.unary("scale", a, (1.0, -float(b) * alpha))
        if alpha != 1:
            b = self.binary("mul", b, alpha)
        return self.binary("sub", a, b)

    def op_rsub(self, ins, static):
        a, b = ins[0], ins[1]  # b - alpha * a
        alpha = ins[2] if len(ins) > 2 else 1
        if self._scalar(b):
            return self.unary("scale", a, (-float(alpha), float(b)))
        if alpha != 1:
            a = self.binary("mul", a, alpha)
        return self.binary("sub", b, a)

    def op_mul(self, ins, static):
        a, b = ins[0], ins[1]
        if self._scalar(b):
            return self.unary("scale", a, (float(b), 0.0))
        if self._scalar(a):
            return self.unary("scale", b, (float(a), 0.0))
        return self.binary("mul", a, b)

    def op_div(self, ins, static):
        if len(ins) > 2 and ins[2] is not None:
            raise Unsupported("div with rounding_mode")
        return self.binary("div", ins[0], ins[1])

    op_true_divide = op_div

    def op_pow(self, ins, static):
        a, b = ins[0], ins[1]
        if self._scalar(b):
            return self.unary("powc", a, (float(b),))
        if isinstance(b, TVal) and b.const and b.example.numel() == 1 and isinstance(a, TVal) and not a.const:
            return self.unary("powc", a, (float(b.example.item()),))
        return self.binary("pow", a, b)

    def op_square(self, ins, static):
        return self.unary("powc", ins[0], (2.0,))

    def op_rsqrt(self, ins, static):
        return self.unary("powc", ins[0], (-0.5,))

    def op_maximum(self, ins, static):
        return self.binary("maximum", ins[0], ins[1])

    def op_minimum(self, ins, static):
        return self.binary("minimum", ins[0], ins[1])

    def op_clamp(self, ins, static):
        lo, hi = (ins[1] if len(ins) > 1 else None), (ins[2] if len(ins) > 2 else None)
        if isinstance(lo, TVal) or isinstance(hi, TVal):
            raise Unsupported("clamp with tensor bounds")
        return self.unary("clamp", ins[0], (-math.inf if lo is None else float(lo), math.inf if hi is None else float(hi)))

    def op_clamp_min(self, ins, static):
        return self.unary("clamp", ins[0], (float(ins[1]), math.inf))

    def op_clamp_max(self, ins, static):
        return self.unary("clamp", ins[0], (-math.inf, float(ins[1])))

    def op_hardtanh(self, ins, static):
        return self.unary("clamp", ins[0], (float(ins[1]), float(ins[2])))

    def op_softplus(self, ins, static):
        beta = float(ins[1]) if len(ins) > 1 else 1.0
        thr = float(ins[2]) if len(ins) > 2 else 20.0
        return self.unary("softplus", ins[0], (beta, thr))

    def op_silu(self, ins, static):
        return self.binary("mul", ins[0], self.unary("sigmoid", ins[0]))

    def op_mish(self, ins, static):
        return self.binary("mul", ins[0], self.unary("tanh", self.unary("softplus", ins[0], (1.0, 20.0))))

    def op_linear(self, ins, static):
        x, w = ins[0], ins[1]
        b = ins[2] if len(ins) > 2 else None
        if not (isinstance(w, TVal) and w.const) or (b is not None and not (isinstance(b, TVal) and b.const)):
            raise Unsupported("linear with non-constant weights")
        W = w.example.to(torch.float64)
        if W.dim() != 2:
            raise Unsupported("linear weight must be 2-D")
        M, Kin = W.shape
        example = torch.nn.functional.linear(x.example, W, None if b is None else b.example)
        R = x.example.numel() // Kin
        dp = W.flatten().tolist() + ([] if b is None else b.example.flatten().tolist())
        return self.emit("linear", example, [self.slot_of(x)], [R, Kin, M, 0 if b is None else 1], dp)

    def op_matmul(self, ins, static):
        a, b = ins[0], ins[1]
        if a.example.dim() > 2 or b.example.dim() > 2:
            raise Unsupported("matmul of tensors with more than 2 dimensions")
        if b.const and b.example.dim() == 2 and not a.const:
            return self.op_linear([a, TVal(b.example.t().contiguous())], None)
        example = torch.matmul(a.example, b.example)
        A = a.example if a.example.dim() == 2 else a.example.unsqueeze(0)
        B = b.example if b.example.dim() == 2 else b.example.unsqueeze(1)
        return self.emit("matmul", example, [self.slot_of(a), self.slot_of(b)], [A.shape[0], A.shape[1], B.shape[1]])

    op_mm = op_matmul

    def _reduce(self, op, ins):
        x = ins[0]
        dims = ins[1] if len(ins) > 1 else None
        keep = bool(ins[2]) if len(ins) > 2 and isinstance(ins[2], bool) else False
        shape = x.example.shape
        nd = len(shape)
        if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
            dims = list(range(nd))
        if isinstance(dims, int):
            dims = [dims]
        dims = sorted(d % nd for d in dims)
        fn = torch.sum if op == "sumg" else torch.prod
        if op == "sumg":
            example = torch.sum(x.example, dim=dims, keepdim=keep)
        else:
            example = x.example
            for d in reversed(dims):
                example = torch.prod(example, dim=d, keepdim=True)
            if not keep:
                for d in reversed(dims):
                    example = example.squeeze(d)
        out_shape_keep = [1 if i in dims else s for i, s in enumerate(shape)]
        pos = torch.arange(int(torch.tensor(out_shape_keep).prod())).reshape(out_shape_keep).expand(shape)
        del fn
        return self.emit(op, example, [self.slot_of(x)], pos.flatten().tolist())

    def op_sum(self, ins, static):
        return self._reduce("sumg", ins)

    def op_prod(self, ins, static):
        if len(ins) > 1 and isinstance(ins[1], int):
            return self._reduce("prodg", [ins[0], [ins[1]], ins[2] if len(ins) > 2 else False])
        return self._reduce("prodg", [ins[0]])

    def op_mean(self, ins, static):
        s = self._reduce("sumg", ins)
        count = ins[0].example.numel() // max(1, s.example.numel())
        return self.unary("scale", s, (1.0 / count, 0.0))

    def op_layer_norm(self, ins, static):
        x, shape, w, b, eps = ins[0], ins[1], ins[2], ins[3], ins[4]
        if len(shape) != 1:
            raise Unsupported("layer_norm over more than the last dimension")
        C = shape[0]
        R = x.example.numel() // C
        affine = isinstance(w, TVal)
        if affine and not (w.const and isinstance(b, TVal) and b.const):
            raise Unsupported("layer_norm with non-constant affine parameters")
        example = torch.nn.functional.layer_norm(x.example, [C], w.example if affine else None, b.example if affine else None, eps)
        dp = [float(eps)] + (w.example.flatten().tolist() + b.example.flatten().tolist() if affine else [])
        return self.emit("layernorm", example, [self.slot_of(x)], [R, C, 1 if affine else 0], dp)

    def _concat(self, tensors, dim, stack: bool):
        slots = [self.slot_of(t) for t in tensors]
        sizes = [t.example.numel() for t in tensors]
        examples = [t.example for t in tensors]
        example = torch.stack(examples, dim) if stack else torch.cat(examples, dim)
        joined = self.emit("concat", torch.empty(sum(sizes)), slots)
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        idx = [torch.arange(s).reshape(e.shape) + o for s, e, o in zip(sizes, examples, offsets)]
        index = torch.stack(idx, dim) if stack else torch.cat(idx, dim)
        return self.gather(joined, index, example.clone())

    def op_cat(self, ins, static):
        return self._concat(list(ins[0]), ins[1] if len(ins) > 1 else 0, False)

    op_concat = op_cat

    def op_stack(self, ins, static):
        return self._concat(list(ins[0]), ins[1] if len(ins) > 1 else 0, True)

    def op_dtype(self, ins, static):  # prim::dtype: static metadata of a dynamic tensor
        return ins[0].example.dtype

    def op_device(self, ins, static):
        return ins[0].example.device

    def op_size(self, ins, static):
        shape = list(ins[0].example.shape)
        return shape if len(ins) == 1 else shape[ins[1]]

    def op_dim(self, ins, static):
        return ins[0].example.dim()

    def op_numel(self, ins, static):
        return ins[0].example.numel()

    def op_len(self, ins, static):
        x = ins[0]
        return x.example.shape[0] if isinstance(x, TVal) else len(x)

    def op___getitem__(self, ins, static):
        seq, i = ins
        if isinstance(seq, (list, tuple)):
            return seq[i]
        raise Unsupported("tensor __getitem__")

    def op_zeros_like(self, ins, static):
        return TVal(torch.zeros_like(ins[0].example))

    def op_ones_like(self, ins, static):
        return TVal(torch.ones_like(ins[0].example))

    def op_full_like(self, ins, static):
        return TVal(torch.full_like(ins[0].example, float(ins[1])))

    def _compare(self, op, a, b):
        a = self._as_tval(a, b)
        b = self._as_tval(b, a)
        shape = torch.broadcast_shapes(a.example.shape, b.example.shape)
        a2, b2 = self.broadcast(a, shape), self.broadcast(b, shape)
        fn = {"lt": torch.lt, "gt": torch.gt, "le": torch.le, "ge": torch.ge, "eq": torch.eq, "ne": torch.ne}[op]
        return self.emit(op, fn(a2.example, b2.example), [self.slot_of(a2), self.slot_of(b2)])

    def op_lt(self, ins, static):
        return self._compare("lt", ins[0], ins[1])

    def op_gt(self, ins, static):
        return self._compare("gt", ins[0], ins[1])

    def op_le(self, ins, static):
        return self._compare("le", ins[0], ins[1])

    def op_ge(self, ins, static):
        return self._compare("ge", ins[0], ins[1])

    def op_eq(self, ins, static):
        return self._compare("eq", ins[0], ins[1])

    def op_ne(self, ins, static):
        return self._compare("ne", ins[0], ins[1])

    def op_where(self, ins, static):
        if len(ins) != 3:
            raise Unsupported("where with one argument")
        c, a, b = ins
        vals = [x if isinstance(x, TVal) else TVal(torch.tensor(float(x), dtype=torch.float64)) for x in (c, a, b)]
        shape = torch.broadcast_shapes(*(x.example.shape for x in vals))
        c2, a2, b2 = (self.broadcast(x, shape) for x in vals)
        example = torch.where(c2.example.bool(), a2.example, b2.example)
        return self.emit("where", example, [self.slot_of(c2), self.slot_of(a2), self.slot_of(b2)])


def _format(compiler: _Compiler, outputs: list[int]) -> str:
    lines = [f"nh_tape {TAPE_VERSION}", f"slots {len(compiler.sizes)}", "sizes " + " ".join(map(str, compiler.sizes)),
             f"outputs {len(outputs)} " + " ".join(map(str, outputs))]
    for op, out, ins, ip, dp in compiler.code:
        lines.append(
            f"instr {op} {out} {len(ins)} {' '.join(map(str, ins))} {len(ip)} {' '.join(map(str, ip))} "
            f"{len(dp)} {' '.join(repr(float(x)) for x in dp)}"
        )
    return "\n".join(lines) + "\n"


def compile_method(frozen, method: str, n_latent: int, v_example: float = -65.0) -> str:
    """Tape text for ``rates`` (outputs z_inf, tau) or ``current`` (output i) of a frozen module.

    Raises :class:`Unsupported` if the graph cannot be expressed as a tape.
    """
    graph = getattr(frozen, method).graph.copy()
    torch._C._jit_pass_inline(graph)
    c = _Compiler(n_latent)
    env = {}
    inputs = list(graph.inputs())
    v = c.emit("in_v", torch.tensor([v_example], dtype=torch.float64))
    args = [v]
    if method == "current":
        z_example = torch.linspace(0.1, 0.9, max(n_latent, 1), dtype=torch.float64)[:n_latent].reshape(1, n_latent)
        args.append(c.emit("in_z", z_example))
    params = inputs[1:]
    if len(params) != len(args):
        raise Unsupported(f"{method} takes {len(params)} tensor arguments, expected {len(args)}")
    env[inputs[0]] = None  # self (frozen: attributes are constants)
    for p, a in zip(params, args):
        env[p] = a
    result = c.run_block(graph, env)[0]
    outs = list(result) if isinstance(result, (tuple, list)) else [result]
    expected = 2 if method == "rates" else 1
    if len(outs) != expected or not all(isinstance(o, TVal) for o in outs):
        raise Unsupported(f"{method} must return {expected} tensor(s)")
    # each output needs its own materialised slot of the right size
    out_slots = []
    for o in outs:
        want = n_latent if method == "rates" else 1
        if o.example.numel() != want:
            raise Unsupported(f"{method} output has {o.example.numel()} elements for one voltage, expected {want}")
        out_slots.append(c.slot_of(o))
    return _format(c, out_slots)
