"""DeepLIFT's rescale rule, reached wherever the model applies a nonlinearity.

Shrikumar, Greenside & Kundaje (2017), "Learning Important Features Through Propagating
Activation Differences" (ICML), explain the difference ``f(x) − f(x')`` between an input
and a reference input by propagating *multipliers* instead of gradients. Linear ops keep
their gradient; at an elementwise nonlinearity ``y = g(z)`` the rescale rule (§3.5.2)
replaces ``g'(z)`` by ``Δy/Δz = (g(z) − g(z')) / (z − z')``. With Ancona et al. (2018,
"Towards better understanding of gradient-based attribution methods") this is a
gradient pass with the nonlinearities' local derivatives rewritten, and the
attributions ``(x − x') ⊙ m`` add up to ``f(x) − f(x')`` exactly
(*summation-to-delta*).

Here input and reference run as one doubled batch, inputs in the first half and their
references in the second, and a :class:`~torch.overrides.TorchFunctionMode` sees every
call of the forward pass — module, functional, tensor method, in-place, reused module —
as :mod:`seethrough.core.rules` does for guided backprop (it reuses that module's op
parsers and nonlinearity table). What happens to a call whose arguments depend on the
input:

* **an elementwise function of one activation** — the ReLU family (``relu``, ``relu6``,
  ``hardtanh``, ``clamp``, ``threshold``, ``leaky_relu``, ``prelu``) with any bounds,
  the smooth ones (``sigmoid``, ``tanh``, ``silu``, ``gelu``, ``softplus``, ``elu``,
  ``selu``, ``celu``, ``mish``, ``hardswish``, ``hardsigmoid``, ``logsigmoid``,
  ``softsign``, …), ``exp``, ``log``, ``sqrt``, ``abs``, ``pow`` by a constant,
  ``maximum``/``minimum`` with a constant: the rescale rule. Where ``|Δz|`` is below
  ``eps`` (default 1e-10, as Captum's ``DeepLift``) the multiplier is the op's own local
  derivative at the input, as PyTorch computes it.
* **max pooling** (``max_pool1d/2d/3d``, ``adaptive_max_pool1d/2d/3d``): Captum's rule
  (``captum.attr._core.deep_lift.maxpool``). Each pooling window's difference
  ``Δy = y − y'`` is split in two: ``max(y, y') − y'`` goes to the position where the
  input has its maximum, ``y − max(y, y')`` to the one where the reference has its; the
  multiplier of an input position is what it received divided by its ``Δz`` (the
  gradient where ``|Δz| < eps``). Deviation from Captum: what windows route to one
  position is *added* (Captum writes it back with ``max_unpool``, where overlapping
  windows — ResNet's 3×3 stride-2 pool — overwrite each other and summation-to-delta
  breaks); on non-overlapping windows the two agree.
* **linear ops** (convolutions, linear layers, batch norm in eval mode, average pooling,
  additions, concatenation, reshaping, padding, interpolation, products with a constant
  or a parameter): untouched — their gradient is their multiplier.
* **a selection by a mask, an index or a detached value computed from the input**
  (``torch.where(x > 0, x, 0)``, ``x[x < 0] = 0``, ``x * mask``): linear for a pair where
  that tensor is the same for the input and its reference, refused where it differs.
* **anything else that is nonlinear in the activations raises**
  :class:`~seethrough.errors.RuleNotAppliedError` naming the op and the module, rather
  than return a silently wrong multiplier: a product, quotient or matrix product of two
  activations (gating, squeeze-excitation, attention: Shrikumar et al. define no rule;
  we chose none), softmax, layer/group/instance norm, batch norm with batch statistics,
  max/min/sort reductions. The refusal is raised after the pass, once the scores were
  checked (a NaN score is reported as such first); meanwhile the op runs as it is.

Gradients are seeded on the input rows only; the reference rows' gradient is zero at
every rewritten op (their multipliers are the same by construction, and the maxpool rule
uses the input rows' gradient for both halves, which is what Captum's doubled seed gives).

Not implemented: the RevealCancel rule (§3.5.3), and rules for products of activations.
"""

from __future__ import annotations

import functools
import inspect
import sys
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..errors import RuleNotAppliedError
from .budget import Budget
from .rules import _OTHER_NONLINEARITIES, _PARSERS, _Call, _results, _tensors
from .targets import Target, logits_of

__all__ = ["DEEPLIFT_EPS", "DeepLiftRule", "PairChunk", "rescale_chunks"]

DEEPLIFT_EPS = 1e-10
"""Below this ``|Δz|`` a multiplier is the local derivative (Captum's ``eps``)."""

_EXTRA_ELEMENTWISE = (
    torch.exp,
    torch.Tensor.exp,
    torch.exp_,
    torch.Tensor.exp_,
    torch.exp2,
    torch.expm1,
    torch.Tensor.expm1,
    torch.log,
    torch.Tensor.log,
    torch.log2,
    torch.log10,
    torch.log1p,
    torch.Tensor.log1p,
    torch.sqrt,
    torch.Tensor.sqrt,
    torch.rsqrt,
    torch.Tensor.rsqrt,
    torch.square,
    torch.Tensor.square,
    torch.abs,
    torch.Tensor.abs,
    torch.Tensor.__abs__,
    torch.abs_,
    torch.Tensor.abs_,
    torch.reciprocal,
    torch.Tensor.reciprocal,
    torch.sin,
    torch.cos,
    torch.atan,
    torch.erf,
    torch.Tensor.erf,
    torch.sigmoid_,
    torch.Tensor.sigmoid_,
    torch.tanh_,
    torch.Tensor.tanh_,
    torch.special.expit,
    F.relu6,
    F.hardshrink,
    F.softshrink,
    F.tanhshrink,
    F.elu_,
    F.rrelu_,
    torch.pow,
    torch.Tensor.pow,
    torch.Tensor.__pow__,
    torch.Tensor.pow_,
    torch.Tensor.__ipow__,
    torch.maximum,
    torch.minimum,
    torch.fmax,
    torch.fmin,
    torch.clamp_max,
    torch.Tensor.clamp_max,
    torch.clamp_max_,
    torch.Tensor.clamp_max_,
)

# Elementwise functions of one activation: the rescale rule.
_ELEMENTWISE = (
    set(_PARSERS) | {f for f in _OTHER_NONLINEARITIES if f is not F.glu} | set(_EXTRA_ELEMENTWISE)
)

_MAX_POOLS: dict[Any, Callable[..., Any]] = {
    F.max_pool1d: F.max_pool1d_with_indices,
    F.max_pool2d: F.max_pool2d_with_indices,
    F.max_pool3d: F.max_pool3d_with_indices,
    F.max_pool1d_with_indices: F.max_pool1d_with_indices,
    F.max_pool2d_with_indices: F.max_pool2d_with_indices,
    F.max_pool3d_with_indices: F.max_pool3d_with_indices,
    torch.max_pool1d: F.max_pool1d_with_indices,
    torch.max_pool2d: F.max_pool2d_with_indices,
    torch.max_pool3d: F.max_pool3d_with_indices,
    F.adaptive_max_pool1d: F.adaptive_max_pool1d_with_indices,
    F.adaptive_max_pool2d: F.adaptive_max_pool2d_with_indices,
    F.adaptive_max_pool3d: F.adaptive_max_pool3d_with_indices,
    F.adaptive_max_pool1d_with_indices: F.adaptive_max_pool1d_with_indices,
    F.adaptive_max_pool2d_with_indices: F.adaptive_max_pool2d_with_indices,
    F.adaptive_max_pool3d_with_indices: F.adaptive_max_pool3d_with_indices,
}
_WITH_INDICES = set(_MAX_POOLS.values())

# Ops that multiply their tensor arguments: linear in each, not in two activations.
_PRODUCTS = {
    torch.mul,
    torch.multiply,
    torch.Tensor.mul,
    torch.Tensor.mul_,
    torch.Tensor.__mul__,
    torch.Tensor.__rmul__,
    torch.Tensor.__imul__,
    torch.matmul,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
    torch.Tensor.__rmatmul__,
    torch.mm,
    torch.bmm,
    torch.Tensor.bmm,
    torch.einsum,
    torch.addmm,
    torch.addbmm,
    torch.baddbmm,
    torch.addcmul,
    torch.Tensor.addcmul,
    torch.Tensor.addcmul_,
    torch.tensordot,
    torch.outer,
    torch.kron,
    torch.dot,
    torch.inner,
    F.linear,
    F.bilinear,
    F.conv1d,
    F.conv2d,
    F.conv3d,
    F.conv_transpose1d,
    F.conv_transpose2d,
    F.conv_transpose3d,
}
# Division: linear in the numerator, not in the divisor (its position among the args).
_DIVISORS = {
    torch.div: 1,
    torch.divide: 1,
    torch.true_divide: 1,
    torch.Tensor.div: 1,
    torch.Tensor.div_: 1,
    torch.Tensor.__truediv__: 1,
    torch.Tensor.__itruediv__: 1,
    torch.Tensor.__rtruediv__: 0,
    torch.Tensor.__rdiv__: 0,
    torch.addcdiv: 2,
    torch.Tensor.addcdiv: 2,
}

# Nonlinear and not elementwise: no rescale rule.
_NO_RULE = {
    F.softmax: "softmax",
    F.log_softmax: "log_softmax",
    F.softmin: "softmin",
    torch.softmax: "softmax",
    torch.log_softmax: "log_softmax",
    torch.Tensor.softmax: "softmax",
    torch.Tensor.log_softmax: "log_softmax",
    F.glu: "glu",
    F.layer_norm: "layer_norm",
    F.group_norm: "group_norm",
    F.instance_norm: "instance_norm",
    F.local_response_norm: "local_response_norm",
    F.normalize: "normalize",
    F.lp_pool1d: "lp_pool1d",
    F.lp_pool2d: "lp_pool2d",
    F.scaled_dot_product_attention: "scaled_dot_product_attention",
    torch.norm: "norm",
    torch.Tensor.norm: "norm",
    torch.linalg.norm: "norm",
    torch.linalg.vector_norm: "vector_norm",
    torch.std: "std",
    torch.Tensor.std: "std",
    torch.var: "var",
    torch.Tensor.var: "var",
    torch.std_mean: "std_mean",
    torch.var_mean: "var_mean",
    torch.logsumexp: "logsumexp",
    torch.Tensor.logsumexp: "logsumexp",
    torch.max: "max",
    torch.Tensor.max: "max",
    torch.min: "min",
    torch.Tensor.min: "min",
    torch.amax: "amax",
    torch.Tensor.amax: "amax",
    torch.amin: "amin",
    torch.Tensor.amin: "amin",
    torch.topk: "topk",
    torch.Tensor.topk: "topk",
    torch.sort: "sort",
    torch.Tensor.sort: "sort",
    torch.kthvalue: "kthvalue",
    torch.median: "median",
    torch.Tensor.median: "median",
    torch.quantile: "quantile",
    torch.cummax: "cummax",
    torch.cummin: "cummin",
    torch.prod: "prod",
    torch.Tensor.prod: "prod",
    torch.cumprod: "cumprod",
    torch.Tensor.__rpow__: "pow with an activation exponent",
    torch.Tensor.__floordiv__: "floor division",
    torch.floor_divide: "floor division",
}
if hasattr(F, "rms_norm"):
    _NO_RULE[F.rms_norm] = "rms_norm"

# Results that carry no value of their arguments (shapes, fresh tensors).
_VALUE_FREE = {
    torch.zeros_like,
    torch.ones_like,
    torch.empty_like,
    torch.full_like,
    torch.rand_like,
    torch.randn_like,
    torch.Tensor.new_zeros,
    torch.Tensor.new_ones,
    torch.Tensor.new_empty,
    torch.Tensor.new_full,
    torch.Tensor.new_tensor,
}

_SOFTMAX_HINT = (
    "; explain the logits (the model without its final softmax): DeepLIFT's authors "
    "recommend explaining the pre-softmax scores"
)
_PRODUCT_HINT = (
    "; the rescale rule of Shrikumar et al. (2017) is defined for elementwise "
    "nonlinearities of one activation, and a product of activations (gating, "
    "squeeze-excitation, attention) would get a silently wrong multiplier — explain this "
    "model with integrated_gradients or expected_gradients, whose completeness holds for "
    "any differentiable model"
)


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or repr(func)
    return {"__pow__": "pow", "__abs__": "abs", "__ipow__": "pow_"}.get(name, name.strip("_"))


@functools.cache
def _inplace_position(func: Any) -> int | None:
    """Where ``inplace`` sits among ``func``'s positional parameters (None: it has none)."""
    try:
        names = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return None
    return names.index("inplace") if "inplace" in names else None


def _is_inplace(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    name = getattr(func, "__name__", "")
    if (name.endswith("_") and not name.endswith("__")) or name.startswith("__i"):
        return True
    if "inplace" in kwargs:
        return bool(kwargs["inplace"])
    position = _inplace_position(func)
    return position is not None and len(args) > position and bool(args[position])


Position = int | str


def _arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[tuple[Position, Any]]:
    """Each top-level argument with its position (an index or a keyword)."""
    yield from enumerate(args)
    yield from kwargs.items()


def _substitute(
    args: tuple[Any, ...], kwargs: dict[str, Any], changes: dict[Position, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    new_args = tuple(changes.get(i, a) for i, a in enumerate(args))
    new_kwargs = {k: changes.get(k, v) for k, v in kwargs.items()}
    return new_args, new_kwargs


_SPARSE = 16
"""Below 1/16 of the elements, a pointwise local derivative is evaluated at those alone."""


def _upper_zeroed(values: Tensor, result: Tensor) -> Tensor:
    """``result`` (2n rows, its values ignored) holding ``values`` in its first n rows and
    zeros in the rest (the reference rows, whose gradient is not used)."""
    result[: len(values)] = values
    result[len(values) :].zero_()
    return result


def _interval_slope(y: Tensor, interval: tuple[float, float]) -> Tensor:
    """The local derivative of a clamp to ``interval`` (1 strictly inside, 0 elsewhere,
    PyTorch's convention), read off its output ``y`` in one pass."""
    lo, hi = interval
    ones = torch.ones((), dtype=y.dtype, device=y.device).expand_as(y)
    if hi == float("inf"):
        return torch.ops.aten.threshold_backward(ones, y, lo)
    return torch.ops.aten.hardtanh_backward(ones, y, lo, hi)


class _Rescale(torch.autograd.Function):
    """Forward: the op on the doubled batch. Backward: the rescale multiplier on the
    input rows, zero on the reference rows."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        run: Callable[[], Tensor],
        slope: Callable[[Tensor], Tensor],
        kind: tuple[float, float] | str,
        inplace: bool,
        half: int,
        eps: float,
    ) -> Tensor:
        before = x.detach()
        dx = before[:half] - before[half:]
        small = dx.abs() < eps
        # The local derivative where the input barely moved, read before an in-place op
        # overwrites the input (``kind``: a clamp's interval, read off the output instead;
        # "pointwise", the rest of the ReLU family, or "autograd"). Off the CPU a
        # pointwise one is evaluated everywhere (counting would wait for the device);
        # else only if needed, at those elements alone when they are few.
        where: tuple[Tensor, ...] | None = None
        local = None
        if not isinstance(kind, tuple):
            on_device = kind == "pointwise" and small.device.type != "cpu"
            count = -1 if on_device else int(small.count_nonzero())
            if kind == "pointwise" and 0 < count <= small.numel() // _SPARSE:
                where = small.nonzero(as_tuple=True)
                local = slope(before[:half][where])
            elif count:
                local = slope(before[:half])
        out = run()
        if inplace:
            ctx.mark_dirty(x)
        after = out.detach()
        multiplier = torch.sub(after[:half], after[half:]).div_(dx)
        if isinstance(kind, tuple) and (small.device.type != "cpu" or bool(small.any())):
            local = _interval_slope(after[:half], kind)
        if local is not None and where is not None:
            multiplier[where] = local.to(multiplier.dtype)
        elif local is not None:
            multiplier = torch.where(small, local, multiplier)
        ctx.save_for_backward(multiplier)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (multiplier,) = ctx.saved_tensors
        half = len(multiplier)
        result = torch.empty_like(grad)
        torch.mul(grad[:half], multiplier, out=result[:half])
        result[half:].zero_()
        return result, None, None, None, None, None, None


class _MaxPool(torch.autograd.Function):
    """Forward: max pooling on the doubled batch. Backward: Captum's maxpool rule on the
    input rows (window differences routed to both argmax positions, added up), zero on
    the reference rows."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        pool: Callable[[Tensor], tuple[Tensor, Tensor]],
        half: int,
        eps: float,
        indices: bool,
    ) -> Tensor | tuple[Tensor, Tensor]:
        out, where = pool(x)
        before = x.detach()
        dx = before[:half] - before[half:]
        top = torch.maximum(out[:half], out[half:])
        ctx.save_for_backward(where, top.sub(out[half:]), torch.sub(out[:half], top), dx)
        ctx.eps, ctx.shape = eps, x.shape
        if indices:
            ctx.mark_non_differentiable(where)
            return out, where
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        where, up, down, dx = ctx.saved_tensors
        half = len(dx)
        g = grad[:half]
        n, c = g.shape[0], g.shape[1]
        flat = (n, c, -1)

        def spread(pairs: list[tuple[Tensor, Tensor]]) -> Tensor:
            """Each value added at its input position (overlapping windows add up)."""
            total = g.new_zeros(n, c, dx[0, 0].numel())
            for values, positions in pairs:
                total.scatter_add_(2, positions.reshape(flat), values.reshape(flat))
            return total.view(dx.shape)

        routed = spread([(g * up, where[:half]), (g * down, where[half:])]).div_(dx)
        small = dx.abs() < ctx.eps
        if bool(small.any()):  # there, the plain gradient
            routed = torch.where(small, spread([(g, where[:half])]), routed)
        return _upper_zeroed(routed, grad.new_empty(ctx.shape)), None, None, None, None


class DeepLiftRule(TorchFunctionMode):
    """Rewrite the backward pass of a doubled batch (inputs, then their references) by
    DeepLIFT's rescale rule; see the module docstring for what each op gets.

    Use :meth:`pass_over` for each forward pass::

        rule = DeepLiftRule(model)
        pair = torch.cat([x, reference]).requires_grad_()
        with rule.pass_over(pair):
            out = model(pair)
        # gradients of out[:len(x)] are now DeepLIFT multipliers; run backward after the block

    Parameters
    ----------
    model : nn.Module or None
        The model, to name modules in error messages.
    eps : float
        Below this ``|Δz|`` a multiplier is the op's local derivative (default 1e-10,
        Captum's).

    Attributes
    ----------
    fired : int
        Calls rewritten, over all passes (``passes``: how many ``with`` blocks).
    rewritten : Counter
        ``op -> count`` of the rewritten calls over all passes (``"relu"``,
        ``"hardtanh(0, 6)"`` for ``nn.ReLU6``, ``"sigmoid"``, ``"max_pool2d"``, …).
    seen : int
        Calls whose arguments depend on the input, over all passes.

    Notes
    -----
    Run it with the model's parameters not requiring gradients (as
    :func:`~seethrough.core.guard.guarded` arranges): a tensor that requires gradients
    and whose origin the rule did not see is taken to depend on the input, so that doubt
    never drops a nonlinearity. TorchScript modules do not call back into Python and are
    not reached (:meth:`check` raises when nothing was).
    """

    def __init__(self, model: nn.Module | None = None, eps: float = DEEPLIFT_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.fired = 0
        self.passes = 0
        self.seen = 0
        self.rewritten: Counter[str] = Counter()
        self._model = model
        self._names = (
            {id(m): name for name, m in model.named_modules()} if model is not None else {}
        )
        self._half = 0
        self.refusal: str | None = None
        self._refused: Tensor | None = None  # the pairs it concerns (None: all)
        # id -> (tensor, depends on the input) for tensors whose dependence differs from
        # what requires_grad says: masks and indices computed from activations (True),
        # results of ops on parameters alone that require grad (False)
        self._marks: dict[int, tuple[weakref.ref[Tensor], bool]] = {}

    def pass_over(self, pair: Tensor) -> DeepLiftRule:
        """Prepare for one forward pass of ``pair``: inputs in its first half, their
        references in the second; returns the rule, to use in a ``with`` statement."""
        if len(pair) % 2:
            raise ValueError(f"a pass needs inputs and references, 2n rows, got {len(pair)}")
        self._half = len(pair) // 2
        return self

    def __enter__(self) -> DeepLiftRule:
        if not self._half:
            raise RuntimeError("call pass_over(pair) before entering the rule")
        self.passes += 1
        self.refusal, self._refused = None, None
        self._marks.clear()
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._marks.clear()
        self._half = 0
        super().__exit__(*exc)

    # ------------------------------------------------------------------ dependence

    def _dependent(self, t: Tensor) -> bool:
        if isinstance(t, nn.Parameter):
            return False
        mark = self._marks.get(id(t))
        if mark is not None and mark[0]() is t:
            return mark[1]
        return t.requires_grad

    def _track(self, func: Any, args: tuple[Any, ...], out: Any, dependent: bool) -> None:
        dependent = dependent and func not in _VALUE_FREE
        for t in _results(func, args, out):
            self._marks.pop(id(t), None)
            if t.requires_grad != dependent:
                self._marks[id(t)] = (weakref.ref(t), dependent)

    # ------------------------------------------------------------------ dispatch

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        dependent = [t for t in _tensors(args, kwargs) if self._dependent(t)]
        if not dependent:
            out = func(*args, **kwargs)
            self._track(func, args, out, False)
            return out
        self.seen += 1
        if func in _ELEMENTWISE:
            return self._rescale(func, args, kwargs)
        if func in _MAX_POOLS:
            return self._max_pool(func, args, kwargs)
        self._refuse(func, args, kwargs, dependent)
        out = self._plain(func, args, kwargs)
        fixed = [t for t in dependent if not t.requires_grad]
        if fixed and isinstance(out, Tensor) and out.is_floating_point():
            self._check_selection(func, fixed)
        return out

    def _check_selection(self, func: Any, fixed: list[Tensor]) -> None:
        """An op that reads a tensor computed from the input but outside the gradient (a
        mask, an index, a detached value) is linear for a pair where that tensor is the
        same for the input and its reference (``torch.where(x > 0, ...)`` choosing the
        same branches); it is refused for the pairs where it differs."""
        half = self._half
        differ = torch.zeros(half, dtype=torch.bool, device=fixed[0].device)
        for t in fixed:
            if t.dim() and len(t) == 2 * half:
                differ |= (t[:half] != t[half:]).reshape(half, -1).any(1)
            else:
                differ[:] = True
        if bool(differ.any()):
            self._no_rule(
                _op_name(func),
                " with a mask, index or detached value computed from activations",
                "; where it differs between an input and its reference, the selection is "
                "a nonlinearity without a rescale rule (write it as relu, clamp or max "
                "pooling)",
                differ,
            )

    def _plain(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The op as it is, its results marked as depending on the input."""
        out = func(*args, **kwargs)
        self._track(func, args, out, True)
        return out

    def _refuse(
        self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], dependent: list[Tensor]
    ) -> None:
        """Refuse ops that are nonlinear in the activations and have no rule."""
        activations = sum(1 for t in dependent if t.is_floating_point() and t.requires_grad)
        if func in _NO_RULE:
            name = _NO_RULE[func]
            hint = _SOFTMAX_HINT if "softmax" in name else ""
            self._no_rule(name, "", "; it is not an elementwise function of one activation" + hint)
        if func in _PRODUCTS and activations >= 2:
            self._no_rule(_op_name(func), " of two activations", _PRODUCT_HINT)
        position = _DIVISORS.get(func)
        divisor = args[position] if position is not None and len(args) > position else None
        if isinstance(divisor, Tensor) and self._dependent(divisor):
            self._no_rule(_op_name(func), " by an activation", _PRODUCT_HINT)
        if func is F.batch_norm and bool(kwargs.get("training", len(args) > 5 and args[5])):
            self._no_rule(
                "batch_norm",
                " with batch statistics",
                "; they mix the inputs with their references — call model.eval() first",
            )

    def _no_rule(self, op: str, what: str, hint: str, pairs: Tensor | None = None) -> None:
        """Note an op without a rule (the pass's first is named), for ``pairs`` (a mask
        over the pass's pairs; None: all). :meth:`raise_refusal` raises after the pass,
        so that a non-finite score can be reported first; the op runs as it is."""
        if self.refusal is None:
            module = self._calling_module()
            where = f" in module {module!r}" if module else " in the model's forward"
            self.refusal = f"deeplift has no rule for {op}{what}{where}{hint}"
        if pairs is None:
            pairs = torch.ones(self._half, dtype=torch.bool)
        pairs = pairs.cpu()
        self._refused = pairs if self._refused is None else self._refused | pairs

    def raise_refusal(self, spared: Tensor | None = None) -> None:
        """Raise :class:`RuleNotAppliedError` naming the last pass's first op without a
        rule, unless every pair it concerns is in ``spared`` (a mask over the pairs: those
        whose score is not finite, already reported)."""
        if self.refusal is None or self._refused is None:
            return
        if spared is not None and not bool((self._refused & ~spared.cpu()).any()):
            return
        raise RuleNotAppliedError(self.refusal)

    def _calling_module(self) -> str:
        """The innermost module of the model whose ``forward`` is on the call stack."""
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            owner = frame.f_locals.get("self")
            name = self._names.get(id(owner)) if owner is not None else None
            if name is not None:
                return name or type(self._model).__name__
            frame = frame.f_back
        return ""

    def _batched(self, x: Tensor, op: str) -> bool:
        """Whether ``x`` holds the pass's inputs and references along its first
        dimension (else the op is refused)."""
        if x.dim() and x.shape[0] == 2 * self._half:
            return True
        self._no_rule(
            op,
            f" on a tensor of shape {tuple(x.shape)}",
            f": DeepLIFT pairs each input with its reference along the batch dimension, "
            f"which has {2 * self._half} rows here; it needs a model that keeps the batch "
            "in the first dimension of its activations",
        )
        return False

    # ------------------------------------------------------------------ rules

    def _rescale(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        found = [
            (p, v)
            for p, v in _arguments(args, kwargs)
            if isinstance(v, Tensor) and v.is_floating_point() and self._dependent(v)
        ]
        op = _op_name(func)
        if len(found) != 1 or (func in (torch.pow, torch.Tensor.pow) and found[0][0] != 0):
            self._no_rule(op, " of two activations or of an activation exponent", _PRODUCT_HINT)
            return self._plain(func, args, kwargs)
        position, x = found[0]
        inplace = _is_inplace(func, args, kwargs)
        if inplace and position != 0:
            self._no_rule(op, " in place on a constant", "")
            return self._plain(func, args, kwargs)
        call = self._rectifier(func, args, kwargs, x)
        if call is not None:
            op = call.op
        if not self._batched(x, op) or (call is None and self._broadcasts(x, op, args, kwargs)):
            return self._plain(func, args, kwargs)
        half = self._half
        slope = (
            call.derivative
            if call is not None
            else self._slope(func, args, kwargs, position, inplace)
        )
        kind: tuple[float, float] | str = "autograd"
        if call is not None and call.interval is not None:
            kind = call.interval
        elif call is not None and call.op != "prelu":  # prelu's slope is per channel
            kind = "pointwise"
        out = _Rescale.apply(x, lambda: func(*args, **kwargs), slope, kind, inplace, half, self.eps)
        self.fired += 1
        self.rewritten[op] += 1
        self._track(func, args, out, True)
        return out

    def _broadcasts(
        self, x: Tensor, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> bool:
        """Whether another argument spreads ``x`` over a larger output (then the op is
        refused: each element of ``x`` would feed several outputs)."""
        shapes = [a.shape for _, a in _arguments(args, kwargs) if isinstance(a, Tensor)]
        try:
            spreads = torch.broadcast_shapes(*shapes) != x.shape
        except RuntimeError:
            spreads = True
        if spreads:
            self._no_rule(op, " that broadcasts its activation", "")
        return spreads

    @staticmethod
    def _rectifier(
        func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], x: Tensor
    ) -> _Call | None:
        """The ReLU-like call as core.rules parses it (op name, local derivative)."""
        entry = _PARSERS.get(func)
        if entry is None:
            return None
        parse, inplace = entry
        call = parse(args, kwargs, inplace)
        return call if call is not None and call.x is x else None

    def _slope(
        self,
        func: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        position: Position,
        inplace: bool,
    ) -> Callable[[Tensor], Tensor]:
        """The op's local derivative at the input rows, by autograd on a copy."""
        rows = 2 * self._half

        def slope(v: Tensor) -> Tensor:
            with torch.enable_grad():
                leaf = v.detach().requires_grad_(True)
                changes: dict[Position, Any] = {
                    p: a[: len(v)]
                    for p, a in _arguments(args, kwargs)
                    if isinstance(a, Tensor) and a.dim() and len(a) == rows
                }
                changes[position] = leaf.clone() if inplace else leaf
                new_args, new_kwargs = _substitute(args, kwargs, changes)
                y = func(*new_args, **new_kwargs)
                (grad,) = torch.autograd.grad(y, leaf, torch.ones_like(y))
            return grad

        return slope

    def _max_pool(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        pool_with_indices = _MAX_POOLS[func]
        bound = inspect.signature(pool_with_indices).bind(*args, **kwargs)
        indices = func in _WITH_INDICES or bool(bound.arguments.get("return_indices", False))
        bound.arguments["return_indices"] = True
        x = bound.arguments["input"]
        op = _op_name(pool_with_indices).removesuffix("_with_indices")
        if not isinstance(x, Tensor) or not self._dependent(x):
            self._no_rule(op, " of a constant with activation arguments", "")
            return self._plain(func, args, kwargs)
        if not self._batched(x, op):
            return self._plain(func, args, kwargs)

        def pool(v: Tensor) -> tuple[Tensor, Tensor]:
            bound.arguments["input"] = v
            return pool_with_indices(*bound.args, **bound.kwargs)

        out = _MaxPool.apply(x, pool, self._half, self.eps, indices)
        self.fired += 1
        self.rewritten[op] += 1
        self._track(func, args, out, True)
        return out

    # ------------------------------------------------------------------ check

    def check(self, method: str) -> None:
        """Raise :class:`RuleNotAppliedError` when the rule saw none of the model's ops,
        or rewrote nothing on a model that has activation or max-pooling modules."""
        if not self.seen:
            raise RuleNotAppliedError(
                f"{method} saw none of the model's operations on the input, so it cannot "
                "rewrite its nonlinearities; if the model is TorchScript, load it as an "
                "nn.Module"
            )
        if self.fired or self._model is None:
            return
        kinds = sorted(
            {
                type(m).__name__
                for m in self._model.modules()
                if type(m).__module__ in ("torch.nn.modules.activation", "torch.nn.modules.pooling")
                and "Avg" not in type(m).__name__
            }
        )
        if kinds:
            raise RuleNotAppliedError(
                f"{method} rewrote no nonlinearity, but the model has {', '.join(kinds)} "
                "modules: they did not run as Python calls (TorchScript?) — load the model "
                "as an nn.Module"
            )


@dataclass(frozen=True)
class PairChunk:
    """One pass over pairs ``start:stop``: ``multipliers`` ``(m, C, H, W)`` are the
    DeepLIFT multipliers of the target score with respect to the inputs (multiply by
    ``x − x'`` for the attributions), ``scores`` and ``reference_scores`` ``(m,)`` the
    target scores of the inputs and of their references, ``indices`` the target classes
    (``-1`` for callable targets), ``predicted`` the inputs' top classes (None for
    callable targets)."""

    start: int
    stop: int
    inputs: Tensor
    references: Tensor
    multipliers: Tensor
    scores: Tensor
    reference_scores: Tensor
    indices: Tensor
    predicted: Tensor | None


RowMaker = Callable[[int, int], Tensor]


def rescale_chunks(
    model: nn.Module,
    inputs: RowMaker,
    references: RowMaker,
    total: int,
    target: Target,
    budget: Budget,
    rule: DeepLiftRule,
    consume: Callable[[PairChunk], None],
) -> None:
    """DeepLIFT multipliers for ``total`` (input, reference) pairs, in chunks.

    ``inputs(a, b)`` and ``references(a, b)`` build pairs ``a:b``; each chunk runs as one
    doubled batch ``[inputs; references]`` under ``rule``, the target scores of the input
    rows are differentiated, and ``consume`` gets a :class:`PairChunk`. The target class
    of a reference row is its input's (a ``"predicted"`` target: the input's top class).
    The caller must hold :func:`~seethrough.core.guard.guarded`.
    """

    def step(start: int, stop: int) -> None:
        x, ref = inputs(start, stop), references(start, stop)
        m = stop - start
        # the layout is chosen on the inputs, as for a plain gradient pass of m rows
        x = budget.arrange(model, x.detach())
        pair = torch.cat([x, budget.arrange(model, ref.detach())]).requires_grad_(True)
        with rule.pass_over(pair):
            output = model(pair)
        if target.fn is not None:
            both, indices = target.select(output, slice(0, 2 * m))
            scores, ref_scores, indices = both[:m], both[m:], indices[:m]
            predicted = None
        else:
            logits = logits_of(output)
            scores, indices = target.select(logits[:m], slice(start, stop))
            ref_scores = logits[m:].gather(1, indices[:, None])[:, 0]
            predicted = logits[:m].detach().argmax(1)
        if scores.requires_grad:
            (grad,) = torch.autograd.grad(scores.sum(), pair)
        else:
            grad = torch.zeros_like(pair)
        consume(
            PairChunk(
                start=start,
                stop=stop,
                inputs=pair[:m].detach(),
                references=pair[m:].detach(),
                multipliers=grad[:m].contiguous(),
                scores=scores.detach(),
                reference_scores=ref_scores.detach(),
                indices=indices,
                predicted=predicted,
            )
        )
        # after consume, which may report a non-finite score first
        finite = torch.isfinite(scores.detach()) & torch.isfinite(ref_scores.detach())
        rule.raise_refusal(spared=~finite)

    budget.run(total, step)
