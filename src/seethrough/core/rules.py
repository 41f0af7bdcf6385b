"""Backward rules for rectifiers, however the model writes them.

Guided backprop and deconvnet change how gradients pass through ReLU-like
nonlinearities. Captum and Zennit do this with hooks on ``nn.ReLU`` modules and
silently return the plain gradient for ``F.relu``, ``torch.relu``, ``nn.ReLU6``,
``x.clamp(min=0)``… Here a :class:`~torch.overrides.TorchFunctionMode` sees every
call of a rectifier — module, functional, tensor method, in-place, reused module —
and replaces it by an autograd function with the rule's backward. The rule counts
how often it fired, so that a model it never reached raises instead of returning
the plain gradient (DESIGN.md rule 3).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from ..errors import RuleNotAppliedError

__all__ = ["RectifierRule", "RuleKind"]

RuleKind = Literal["guided", "deconvnet"]


@dataclass(frozen=True)
class _Call:
    """A rectifier call: the input, its local derivative's parameters, in-place or not."""

    x: Tensor
    derivative: Callable[[Tensor], Tensor]
    inplace: bool
    # (lo, hi) where the derivative is 1 on lo < x < hi and 0 elsewhere, read as well off
    # the output (relu: (0, inf); hardtanh, relu6: its bounds): the backward then needs no
    # mask from the forward and uses PyTorch's own fused threshold/hardtanh backward.
    interval: tuple[float, float] | None = None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


# Local derivatives follow PyTorch's own backward formulas (boundaries included), so the
# "gradient" part of guided backprop equals the true gradient of each op.
def _relu_like(args: tuple[Any, ...], kwargs: dict[str, Any], inplace: bool) -> _Call:
    return _Call(args[0], lambda x: x > 0, inplace, (0.0, float("inf")))


def _hardtanh(args: tuple[Any, ...], kwargs: dict[str, Any], inplace: bool) -> _Call | None:
    lo = _number(_arg(args, kwargs, 1, "min_val", -1.0))
    hi = _number(_arg(args, kwargs, 2, "max_val", 1.0))
    if lo is None or hi is None:
        return None
    return _Call(args[0], lambda x: (x > lo) & (x < hi), inplace, (lo, hi) if lo < hi else None)


def _leaky_relu(args: tuple[Any, ...], kwargs: dict[str, Any], inplace: bool) -> _Call | None:
    slope = _number(_arg(args, kwargs, 1, "negative_slope", 0.01))
    if slope is None:
        return None
    return _Call(args[0], lambda x: torch.where(x > 0, 1.0, slope).to(x.dtype), inplace)


def _threshold(args: tuple[Any, ...], kwargs: dict[str, Any], inplace: bool) -> _Call | None:
    threshold = _number(_arg(args, kwargs, 1, "threshold", None))
    if threshold is None:
        return None
    return _Call(args[0], lambda x: x > threshold, inplace)


def _prelu(args: tuple[Any, ...], kwargs: dict[str, Any], inplace: bool) -> _Call | None:
    weight = _arg(args, kwargs, 1, "weight", None)
    if not isinstance(weight, Tensor):
        return None
    x = args[0]

    def derivative(v: Tensor) -> Tensor:
        w = weight.detach()
        if w.numel() > 1 and v.dim() > 1:
            w = w.view(1, -1, *([1] * (v.dim() - 2)))
        return torch.where(v > 0, torch.ones_like(v), w.to(v.dtype))

    return _Call(x, derivative, inplace)


def _clamp(args: tuple[Any, ...], kwargs: dict[str, Any], inplace: bool) -> _Call | None:
    # Only a clamp with lower bound exactly 0 is a rectifier (x.clamp(min=0), clamp(x, 0, 6));
    # clamp(min=1e-6) and friends are numerics and are left alone.
    lo = _arg(args, kwargs, 1, "min", None)
    hi = _arg(args, kwargs, 2, "max", None)
    if _number(lo) != 0.0 or (hi is not None and _number(hi) is None):
        return None
    upper = _number(hi)
    if upper is None:
        return _Call(args[0], lambda x: x >= 0, inplace)
    return _Call(args[0], lambda x: (x >= 0) & (x <= upper), inplace)


def _clamp_min(args: tuple[Any, ...], kwargs: dict[str, Any], inplace: bool) -> _Call | None:
    lo = _arg(args, kwargs, 1, "min", None)
    if _number(lo) != 0.0:
        return None
    return _Call(args[0], lambda x: x >= 0, inplace)


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
    F.relu6: (_functional(lambda a, k, i: _hardtanh((a[0], 0.0, 6.0), {}, i)), False),
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


class RectifierRule(TorchFunctionMode):
    """Rewrite the backward pass of every rectifier called inside the ``with`` block.

    Parameters
    ----------
    kind : {"guided", "deconvnet"}
        ``"guided"`` (Springenberg et al., 2015): the op's own local derivative times
        the positive part of the incoming gradient. ``"deconvnet"`` (Zeiler & Fergus,
        2014): the positive part of the incoming gradient, whatever the forward input.

    Notes
    -----
    Rectifiers are ``relu``, ``relu6``, ``hardtanh``, ``leaky_relu``, ``prelu``,
    ``threshold`` and ``clamp``/``clamp_min`` with a lower bound of exactly 0, called as
    modules, functions or tensor methods, in place or not. Other nonlinearities
    (sigmoid, SiLU, GELU, …) keep their gradient and are counted in
    :attr:`others`. TorchScript modules do not call back into Python, so the rule
    cannot reach inside them (it then fires zero times and :meth:`check` raises).
    The backward pass must run after the ``with`` block has exited.
    """

    def __init__(self, kind: RuleKind) -> None:
        super().__init__()
        if kind not in ("guided", "deconvnet"):
            raise ValueError(f"unknown rule kind {kind!r}")
        self.kind: RuleKind = kind
        self.fired = 0
        self.passes = 0
        self.others: Counter[str] = Counter()

    def __enter__(self) -> RectifierRule:
        self.passes += 1
        return super().__enter__()

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
                self.fired += 1
                return _RectifierFunction.apply(
                    call.x, call, lambda: func(*args, **kwargs), self.kind
                )
        elif func in _OTHER_NONLINEARITIES:
            self.others[_OTHER_NONLINEARITIES[func]] += 1
        return func(*args, **kwargs)

    def check(self, method: str) -> None:
        """Raise :class:`RuleNotAppliedError` if the rule never fired."""
        if self.fired:
            return
        if self.others:
            seen = ", ".join(f"{name} ×{count}" for name, count in sorted(self.others.items()))
            raise RuleNotAppliedError(
                f"{method} found no ReLU-like nonlinearity to rewrite (the model uses {seen}); "
                "its result would be the plain gradient — use method 'gradient' instead"
            )
        raise RuleNotAppliedError(
            f"{method} found no ReLU-like nonlinearity to rewrite, so its result would be the "
            "plain gradient; if the model is TorchScript, load it as an nn.Module, "
            "otherwise use method 'gradient'"
        )
