"""Backward rules for rectifiers, however the model writes them.

Guided backprop and deconvnet change how gradients pass through the network's
rectifiers. Captum and Zennit hook ``nn.ReLU`` modules and silently return the plain
gradient for ``F.relu``, ``torch.relu``, ``nn.ReLU6``, ``x.clamp(min=0)``… Here a
:class:`~torch.overrides.TorchFunctionMode` sees every call of the forward pass —
module, functional, tensor method, in-place, reused module — and replaces each
rectifier by an autograd function with the rule's backward. The rule counts how often
it fired, so that a model it never reached raises instead of returning the plain
gradient (DESIGN.md rule 3).

What counts as a rectifier
--------------------------
A call is rewritten when both of these hold.

1. **The op is ReLU-like**: piecewise linear, with its kink at 0 and slope 1 just
   above 0 — ``relu``, ``relu6``, ``hardtanh(0, b)`` and ``clamp(0, b)`` with
   ``b > 0`` (``nn.ReLU6`` is ``hardtanh(0, 6)``), ``clamp(min=0)``, ``clamp_min(0)``,
   ``threshold(0, 0)``, ``leaky_relu`` and ``prelu``. The same functions with other
   bounds are not rectifiers: ``hardtanh(-1, 1)`` or ``threshold(0.5, 0)`` keep their
   gradient and are listed in :attr:`RectifierRule.others`, as are the smooth
   nonlinearities (sigmoid, tanh, SiLU, GELU, ELU, …), which are never rewritten.
   Clamps with another lower bound (``clamp(min=1e-6)``) are numerics, not listed.
2. **Its argument is an activation, not the model input.** A clamp that a model
   applies to its own input — ``net(x.clamp(0, 1))``, as robust models do — or to a
   parameter-free function of it (normalised with buffers, resized, …) is
   preprocessing, and keeps its plain gradient; it is listed in ``others`` with the
   suffix ``" (input)"``. The rule follows every op of the forward pass to know which
   tensors are *input-only*: the model input (the tensor the gradient is taken for:
   a leaf that requires grad and is not an ``nn.Parameter``) and every result of an op
   whose arguments are input-only tensors and constants (buffers, numbers, new
   tensors) — no ``nn.Parameter``, nothing computed from one, no activation. Every
   other tensor that requires grad is an activation — also one whose origin the rule
   cannot see (say, the output of a TorchScript submodule), so that doubt never drops
   a rectifier.

The rewritten backward uses each op's own local derivative as PyTorch computes it,
boundaries included: relu and hardtanh pass nothing at their bounds, and a clamp's
convention there, which changed between PyTorch releases, is read off the installed
one.

Limitation: a layer whose weights are buffers or plain tensors rather than
``nn.Parameter`` is taken for preprocessing, and the rectifiers right after it are
left alone (listed as ``" (input)"``); pass ``rectifiers="all"`` for such models.

``rectifiers`` overrides the second condition: ``"auto"`` (the default) applies it,
``"all"`` rewrites every ReLU-like op wherever it is applied (the input's too), a
collection of module names rewrites exactly the ReLU-like ops called by those modules
or their submodules, and a predicate decides for each :class:`RectifierCall`.
"""

from __future__ import annotations

import functools
import sys
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..errors import InvalidOptionError, RuleNotAppliedError, suggest

__all__ = [
    "RECTIFIER_MODES",
    "RectifierCall",
    "RectifierRule",
    "Rectifiers",
    "RuleKind",
    "check_rectifiers",
]

RuleKind = Literal["guided", "deconvnet"]
RECTIFIER_MODES = ("auto", "all")


@dataclass(frozen=True)
class RectifierCall:
    """One call of a ReLU-like op, as a ``rectifiers`` predicate sees it.

    Attributes
    ----------
    op : str
        The op and its bounds: ``"relu"``, ``"relu6"``, ``"hardtanh(0, 6)"``
        (``nn.ReLU6``), ``"clamp(0, 1)"``, ``"clamp(min=0)"``, ``"clamp_min(0)"``,
        ``"threshold(0, 0)"``, ``"leaky_relu(0.01)"``, ``"prelu"``.
    module : str
        Dotted name of the innermost module whose ``forward`` made the call (``""``:
        the model itself).
    on_input : bool
        Its argument is the model input or a parameter-free function of it (see the
        module docstring); ``"auto"`` rewrites the call exactly when this is False.
    index : int
        Its position among the ReLU-like calls of the forward pass, from 0.
    """

    op: str
    module: str
    on_input: bool
    index: int


Rectifiers = str | tuple[str, ...] | Callable[[RectifierCall], bool]


def check_rectifiers(value: Any) -> Rectifiers:
    """The ``rectifiers`` option, validated: ``"auto"``, ``"all"``, a predicate, or a
    collection of module names (returned as a sorted tuple)."""
    valid = (
        "valid: 'auto', 'all', a collection of module names, or a function taking a "
        "RectifierCall and returning True to rewrite it"
    )
    if isinstance(value, str):
        if value in RECTIFIER_MODES:
            return value
        raise InvalidOptionError(
            f"unknown rectifiers {value!r}{suggest(value, RECTIFIER_MODES)} ({valid}; "
            "put a single module name in a list)"
        )
    if callable(value):
        return value
    names = value if isinstance(value, (list, tuple, set, frozenset)) else ()
    if names and all(isinstance(name, str) for name in names):
        return tuple(sorted(set(names)))
    raise InvalidOptionError(f"rectifiers must be one of these, got {value!r} ({valid})")


@dataclass(frozen=True)
class _Call:
    """A call of a ReLU-shaped function: the input, its local derivative, in-place or not."""

    x: Any
    derivative: Callable[[Tensor], Tensor]
    inplace: bool
    op: str
    # (lo, hi) where the derivative is 1 on lo < x < hi and 0 elsewhere, read as well off
    # the output (relu: (0, inf); hardtanh, relu6: its bounds): the backward then needs no
    # mask from the forward and uses PyTorch's own fused threshold/hardtanh backward.
    interval: tuple[float, float] | None = None
    # False for the same functions with other bounds (hardtanh(-1, 1)): not rewritten.
    rectifier: bool = True


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _x(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return _arg(args, kwargs, 0, "input", None)


# Local derivatives follow PyTorch's own backward formulas (boundaries included), so the
# "gradient" part of guided backprop equals the true gradient of each op.
def _relu_like(args: tuple[Any, ...], kwargs: dict[str, Any], inplace: bool) -> _Call:
    return _Call(_x(args, kwargs), lambda x: x > 0, inplace, "relu", (0.0, float("inf")))


def _relu6(args: tuple[Any, ...], kwargs: dict[str, Any], inplace: bool) -> _Call:
    derivative = lambda x: (x > 0) & (x < 6)  # noqa: E731
    return _Call(_x(args, kwargs), derivative, inplace, "relu6", (0.0, 6.0))


def _hardtanh(args: tuple[Any, ...], kwargs: dict[str, Any], inplace: bool) -> _Call | None:
    lo = _number(_arg(args, kwargs, 1, "min_val", -1.0))
    hi = _number(_arg(args, kwargs, 2, "max_val", 1.0))
    if lo is None or hi is None:
        return None
    rectifier = lo == 0.0 and hi > 0.0
    return _Call(
        _x(args, kwargs),
        lambda x: (x > lo) & (x < hi),
        inplace,
        f"hardtanh({lo:g}, {hi:g})",
        (lo, hi) if lo < hi else None,
        rectifier,
    )


def _leaky_relu(args: tuple[Any, ...], kwargs: dict[str, Any], inplace: bool) -> _Call | None:
    slope = _number(_arg(args, kwargs, 1, "negative_slope", 0.01))
    if slope is None:
        return None
    derivative = lambda x: torch.where(x > 0, 1.0, slope).to(x.dtype)  # noqa: E731
    return _Call(_x(args, kwargs), derivative, inplace, f"leaky_relu({slope:g})")


def _threshold(args: tuple[Any, ...], kwargs: dict[str, Any], inplace: bool) -> _Call | None:
    threshold = _number(_arg(args, kwargs, 1, "threshold", None))
    value = _number(_arg(args, kwargs, 2, "value", None))
    if threshold is None or value is None:
        return None
    op = f"threshold({threshold:g}, {value:g})"
    rectifier = threshold == 0.0 and value == 0.0
    return _Call(_x(args, kwargs), lambda x: x > threshold, inplace, op, rectifier=rectifier)


def _prelu(args: tuple[Any, ...], kwargs: dict[str, Any], inplace: bool) -> _Call | None:
    weight = _arg(args, kwargs, 1, "weight", None)
    if not isinstance(weight, Tensor):
        return None

    def derivative(v: Tensor) -> Tensor:
        w = weight.detach()
        if w.numel() > 1 and v.dim() > 1:
            w = w.view(1, -1, *([1] * (v.dim() - 2)))
        return torch.where(v > 0, torch.ones_like(v), w.to(v.dtype))

    return _Call(_x(args, kwargs), derivative, inplace, "prelu")


@functools.cache
def _clamp_passes_its_bounds() -> bool:
    """Whether PyTorch's clamp backward passes the gradient at ``x == min`` and
    ``x == max``: it did up to some 2.x releases and does not in recent ones (it then
    agrees with relu and hardtanh). Read off PyTorch once, so that a clamp's local
    derivative here is PyTorch's, boundaries included."""
    with torch.inference_mode(False), torch.enable_grad():
        x = torch.zeros(1, requires_grad=True)
        (grad,) = torch.autograd.grad(x.clamp(min=0.0).sum(), x)
    return bool(grad.item() == 1.0)


def _clamp_call(x: Any, inplace: bool, op: str, upper: float | None) -> _Call:
    hi = float("inf") if upper is None else upper
    if not _clamp_passes_its_bounds():  # as relu/hardtanh: read off the output
        return _Call(x, lambda v: (v > 0) & (v < hi), inplace, op, (0.0, hi))
    return _Call(x, lambda v: (v >= 0) & (v <= hi), inplace, op)


def _clamp(args: tuple[Any, ...], kwargs: dict[str, Any], inplace: bool) -> _Call | None:
    # Only a clamp with lower bound exactly 0 and no upper bound or a positive one is
    # ReLU-shaped (x.clamp(min=0), clamp(x, 0, 6)); clamp(min=1e-6) and friends are
    # numerics and are ignored.
    lo = _arg(args, kwargs, 1, "min", None)
    hi = _arg(args, kwargs, 2, "max", None)
    upper = _number(hi)
    if _number(lo) != 0.0 or (hi is not None and (upper is None or upper <= 0.0)):
        return None
    op = "clamp(min=0)" if upper is None else f"clamp(0, {upper:g})"
    return _clamp_call(_x(args, kwargs), inplace, op, upper)


def _clamp_min(args: tuple[Any, ...], kwargs: dict[str, Any], inplace: bool) -> _Call | None:
    lo = _arg(args, kwargs, 1, "min", None)
    if _number(lo) != 0.0:
        return None
    return _clamp_call(_x(args, kwargs), inplace, "clamp_min(0)", None)


def _functional(parse: Callable[..., _Call | None]) -> Callable[..., _Call | None]:
    """Adapt a parser for ``F.xxx(input, ..., inplace=False)`` signatures."""

    def parse_functional(args: tuple[Any, ...], kwargs: dict[str, Any], _: bool) -> _Call | None:
        inplace = bool(kwargs.get("inplace", False))
        positional = [a for a in args if not isinstance(a, bool)]
        if len(args) > len(positional):  # inplace given positionally as the last argument
            inplace = bool(args[-1])
        rest = {k: v for k, v in kwargs.items() if k != "inplace"}
        return parse(tuple(positional), rest, inplace)

    return parse_functional


_PARSERS: dict[Any, tuple[Callable[..., _Call | None], bool]] = {
    F.relu: (_functional(_relu_like), False),
    torch.relu: (_relu_like, False),
    torch.relu_: (_relu_like, True),
    Tensor.relu: (_relu_like, False),
    Tensor.relu_: (_relu_like, True),
    F.relu6: (_functional(_relu6), False),
    F.hardtanh: (_functional(_hardtanh), False),
    F.hardtanh_: (_hardtanh, True),
    F.leaky_relu: (_functional(_leaky_relu), False),
    F.leaky_relu_: (_leaky_relu, True),
    F.threshold: (_functional(_threshold), False),
    torch.threshold: (_threshold, False),
    torch.threshold_: (_threshold, True),
    F.prelu: (_prelu, False),
    torch.prelu: (_prelu, False),
    torch.clamp: (_clamp, False),
    torch.clip: (_clamp, False),
    torch.clamp_: (_clamp, True),
    torch.clip_: (_clamp, True),
    Tensor.clamp: (_clamp, False),
    Tensor.clip: (_clamp, False),
    Tensor.clamp_: (_clamp, True),
    Tensor.clip_: (_clamp, True),
    torch.clamp_min: (_clamp_min, False),
    torch.clamp_min_: (_clamp_min, True),
    Tensor.clamp_min: (_clamp_min, False),
    Tensor.clamp_min_: (_clamp_min, True),
}

# Nonlinearities the rules leave alone; counted so the result can say what was not rewritten.
_OTHER_NONLINEARITIES = {
    f: f.__name__.rstrip("_")
    for f in (
        torch.sigmoid,
        Tensor.sigmoid,
        F.sigmoid,
        torch.tanh,
        Tensor.tanh,
        F.tanh,
        F.gelu,
        F.silu,
        F.elu,
        F.selu,
        F.celu,
        F.softplus,
        F.mish,
        F.hardswish,
        F.hardsigmoid,
        F.logsigmoid,
        F.softsign,
        F.rrelu,
        F.glu,
    )
}


class _RectifierFunction(torch.autograd.Function):
    """Forward: the original op. Backward: the rule's gradient."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        call: _Call,
        run: Callable[[], Tensor],
        kind: str,
    ) -> Tensor:
        ctx.kind = kind
        ctx.interval = None
        if kind == "guided" and call.interval is not None and not call.inplace:
            out = run()
            ctx.interval = call.interval
            ctx.save_for_backward(out)
            return out
        # in place, the input is overwritten: take the local derivative from it first
        derivative = call.derivative(x.detach()) if kind == "guided" else None
        out = run()
        if call.inplace:
            ctx.mark_dirty(x)
        if derivative is not None:
            ctx.save_for_backward(derivative)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        positive = grad.clamp(min=0)  # a new tensor: safe to scale in place
        if ctx.kind == "deconvnet":
            return positive, None, None, None
        if ctx.interval is not None:
            (out,) = ctx.saved_tensors
            lo, hi = ctx.interval
            if hi == float("inf"):
                return torch.ops.aten.threshold_backward(positive, out, lo), None, None, None
            return torch.ops.aten.hardtanh_backward(positive, out, lo, hi), None, None, None
        (derivative,) = ctx.saved_tensors
        return positive.mul_(derivative), None, None, None


# Where a tensor of the forward pass comes from (see the module docstring).
_CONSTANT, _INPUT, _LEARNED, _ACTIVATION = range(4)


def _tensors(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Tensor]:
    """The tensors among a call's arguments, one level into lists (``torch.cat``)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, Tensor))


def _results(func: Any, args: tuple[Any, ...], out: Any) -> tuple[Tensor, ...]:
    if isinstance(out, Tensor):
        return (out,)
    if isinstance(out, (list, tuple)):
        return tuple(v for v in out if isinstance(v, Tensor))
    if func is Tensor.__setitem__ and args and isinstance(args[0], Tensor):
        return (args[0],)  # written in place
    return ()


class RectifierRule(TorchFunctionMode):
    """Rewrite the backward pass of every rectifier called inside the ``with`` block.

    Parameters
    ----------
    kind : {"guided", "deconvnet"}
        ``"guided"`` (Springenberg et al., 2015): the op's own local derivative times
        the positive part of the incoming gradient. ``"deconvnet"`` (Zeiler & Fergus,
        2014): the positive part of the incoming gradient, whatever the forward input.
    rectifiers : "auto", "all", collection of str, or callable
        Which ReLU-like calls to rewrite (see the module docstring): ``"auto"`` those
        applied to activations, ``"all"`` every one, module names those called by
        these modules or their submodules, a predicate those for which it returns True
        given a :class:`RectifierCall`.
    model : nn.Module or None
        The model, to name modules; needed for module names and predicates.

    Attributes
    ----------
    fired : int
        Calls rewritten, over all passes (``passes``: how many ``with`` blocks).
    rewritten : Counter
        ``op -> count`` of the rewritten calls, over all passes (ops as in
        :attr:`RectifierCall.op`).
    others : Counter
        Nonlinearities left alone: smooth ones, ReLU-shaped functions with other bounds,
        ReLU-like calls on the input (``"clamp(0, 1) (input)"``) or excluded by
        ``rectifiers`` (``"relu (excluded)"``).

    Notes
    -----
    TorchScript modules do not call back into Python, so the rule cannot reach inside
    them (it then fires zero times and :meth:`check` raises). The backward pass must
    run after the ``with`` block has exited.

    Deviation from Springenberg et al. (2015), who define the rule for ReLU: other
    ReLU-like ops use their own local derivative (ReLU6: 0 above 6; leaky ReLU, PReLU:
    the negative slope) times the positive part of the incoming gradient.
    """

    def __init__(
        self, kind: RuleKind, rectifiers: Any = "auto", model: nn.Module | None = None
    ) -> None:
        super().__init__()
        if kind not in ("guided", "deconvnet"):
            raise ValueError(f"unknown rule kind {kind!r}")
        self.kind: RuleKind = kind
        self.rectifiers = check_rectifiers(rectifiers)
        self.fired = 0
        self.passes = 0
        self.rewritten: Counter[str] = Counter()
        self.others: Counter[str] = Counter()
        self._names = (
            {id(m): name for name, m in model.named_modules()} if model is not None else {}
        )
        if isinstance(self.rectifiers, tuple):
            self._check_names(self.rectifiers, model)
        self._input_only: dict[int, weakref.ref[Tensor]] = {}
        self._learned: dict[int, weakref.ref[Tensor]] = {}
        self._index = 0

    @staticmethod
    def _check_names(names: tuple[str, ...], model: nn.Module | None) -> None:
        if model is None:
            raise ValueError("rectifiers given as module names need the model")
        known = dict(model.named_modules())
        for name in names:
            if name not in known:
                raise InvalidOptionError(
                    f"rectifiers names {name!r}, which is not a module of the model"
                    f"{suggest(name, [n for n in known if n])}"
                )

    def __enter__(self) -> RectifierRule:
        self.passes += 1
        self._index = 0
        self._input_only.clear()
        self._learned.clear()
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._input_only.clear()
        self._learned.clear()
        super().__exit__(*exc)

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        entry = _PARSERS.get(func)
        if entry is not None:
            parse, inplace = entry
            call = parse(args, kwargs, inplace)
            if call is not None and isinstance(call.x, Tensor) and call.x.requires_grad:
                if not call.rectifier:
                    self.others[call.op] += 1
                else:
                    on_input = self._origin(call.x) == _INPUT
                    if self._chosen(call, on_input):
                        self.fired += 1
                        self.rewritten[call.op] += 1
                        out = _RectifierFunction.apply(
                            call.x, call, lambda: func(*args, **kwargs), self.kind
                        )
                        self._mark((out,), _INPUT if on_input else _ACTIVATION)
                        return out
                    self.others[f"{call.op} ({'input' if on_input else 'excluded'})"] += 1
        elif func in _OTHER_NONLINEARITIES:
            self.others[_OTHER_NONLINEARITIES[func]] += 1
        out = func(*args, **kwargs)
        self._track(func, args, kwargs, out)
        return out

    def _chosen(self, call: _Call, on_input: bool) -> bool:
        """Whether ``rectifiers`` rewrites this ReLU-like call."""
        index, self._index = self._index, self._index + 1
        if self.rectifiers == "auto":
            return not on_input
        if self.rectifiers == "all":
            return True
        module = self._calling_module()
        if isinstance(self.rectifiers, tuple):
            return any(n in ("", module) or module.startswith(n + ".") for n in self.rectifiers)
        assert callable(self.rectifiers)
        chosen = self.rectifiers(RectifierCall(call.op, module, on_input, index))
        if not isinstance(chosen, bool):
            raise InvalidOptionError(
                f"the rectifiers function must return True or False, got {chosen!r}"
            )
        return chosen

    def _calling_module(self) -> str:
        """The innermost module of the model whose ``forward`` is on the call stack."""
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            owner = frame.f_locals.get("self")
            name = self._names.get(id(owner)) if owner is not None else None
            if name is not None:
                return name
            frame = frame.f_back
        return ""

    def _origin(self, t: Tensor) -> int:
        if isinstance(t, nn.Parameter):
            return _LEARNED
        for marks, origin in ((self._input_only, _INPUT), (self._learned, _LEARNED)):
            ref = marks.get(id(t))
            if ref is not None and ref() is t:
                return origin
        if t.requires_grad:
            return _INPUT if t.grad_fn is None else _ACTIVATION
        return _CONSTANT

    def _track(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        """Mark the results of a call input-only, learned or neither."""
        results = _results(func, args, out)
        if not results:
            return
        origin = _CONSTANT
        for t in _tensors(args, kwargs):
            found = self._origin(t)
            if found in (_LEARNED, _ACTIVATION):
                origin = _LEARNED
                break
            if found == _INPUT:
                origin = _INPUT
        self._mark(results, origin)

    def _mark(self, results: tuple[Tensor, ...], origin: int) -> None:
        for t in results:
            key = id(t)
            self._input_only.pop(key, None)
            self._learned.pop(key, None)
            if origin == _INPUT:
                self._input_only[key] = weakref.ref(t)
            elif origin == _LEARNED and not t.requires_grad:
                # computed from a parameter without the input (weight.detach(), a
                # standardised weight): a layer, not preprocessing, when it meets the input
                self._learned[key] = weakref.ref(t)

    def check(self, method: str) -> None:
        """Raise :class:`RuleNotAppliedError` if the rule never fired."""
        if self.fired:
            return
        if self.others:
            seen = ", ".join(f"{name} ×{count}" for name, count in sorted(self.others.items()))
            hint = (
                "; ReLU-like ops marked (input) act on the model input, not on an "
                "activation, and (excluded) ones were left out by rectifiers= — pass "
                "rectifiers='all' to rewrite them anyway"
                if any(name.endswith((" (input)", " (excluded)")) for name in self.others)
                else ""
            )
            raise RuleNotAppliedError(
                f"{method} found no ReLU-like nonlinearity to rewrite (the model uses {seen}); "
                f"its result would be the plain gradient — use method 'gradient' instead{hint}"
            )
        raise RuleNotAppliedError(
            f"{method} found no ReLU-like nonlinearity to rewrite, so its result would be the "
            "plain gradient; if the model is TorchScript, load it as an nn.Module, "
            "otherwise use method 'gradient'"
        )
