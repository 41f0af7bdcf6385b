"""The entry points: :func:`explain`, :func:`explain_all`, :func:`make_method` and
:func:`route_options`.

Options are routed here (with several methods, each option goes to the methods that
have it) and validated once, against each method's declared fields (see
:class:`~seethrough.attribution.method.Method`). The shared parameters are documented
in :mod:`seethrough.attribution.method`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, overload

import torch
from torch import Tensor, nn

from ..core.budget import Progress
from ..core.guard import check_inputs, guarded, unwrap_model
from ..core.layers import find_layer
from ..core.passes import forward_logits
from ..core.targets import Target, TargetLike, parse_target
from ..core.versions import library_versions
from ..errors import InvalidOptionError, check_option, integer, suggest
from .explanation import Explanation
from .method import METHODS, Attribution, Method
from .run import NONFINITE_MODES, NonFiniteMode, PassContext, PassNeeds, nonfinite_rows

__all__ = ["explain", "explain_all", "make_method", "route_options"]

FUSION_OPTIONS = ("layer_scale", "layer_fusion")


def make_method(name: str | Method, **options: Any) -> Method:
    """The method called ``name`` (or a copy of the method object ``name``) with
    ``options``.

    Raises
    ------
    InvalidOptionError
        An unknown method or option name (with close matches and the valid ones), or
        an option value its declared check refuses (naming the method, the option,
        what it accepts and the value given).
    """
    cls = _method_class(name)
    _check_option_names(cls, options)
    if isinstance(name, Method):
        return dataclasses.replace(name, **options) if options else name
    return cls(**options)


def route_options(
    methods: Sequence[str | Method], options: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Each of ``options`` to the ``methods`` that have it: one dict per method, in order.

    Raises
    ------
    InvalidOptionError
        An unknown method name, or an option that none of ``methods`` has (with close
        matches and the options they have).
    """
    fields = [{f.name for f in dataclasses.fields(_method_class(m))} for m in methods]
    known = sorted(set().union(*fields))
    for key in options:
        if key not in known:
            raise InvalidOptionError(
                f"no chosen method has an option {key!r}{suggest(key, known)} "
                f"(options: {', '.join(known) or 'none'})"
            )
    return [{k: v for k, v in options.items() if k in names} for names in fields]


def _method_class(method: str | Method) -> type[Method]:
    if isinstance(method, Method):
        return type(method)
    if not isinstance(method, str) or method not in METHODS:
        raise InvalidOptionError(
            f"unknown method {method!r}{suggest(str(method), METHODS)} "
            f"(valid: {', '.join(METHODS)})"
        )
    return METHODS[method]


def _check_option_names(cls: type[Method], options: Mapping[str, Any]) -> None:
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in options:
        if key not in valid:
            listed = ", ".join(valid) if valid else "none"
            raise InvalidOptionError(
                f"{cls.name} has no option {key!r}{suggest(key, valid)} (its options: {listed})"
            )


@overload
def explain(
    model: nn.Module | Any,
    inputs: Tensor,
    method: str | Method = ...,
    target: TargetLike = ...,
    *,
    seed: int = ...,
    batch_size: int | None = ...,
    labels: Sequence[str] | None = ...,
    progress: Progress | None = ...,
    layout: str = ...,
    nonfinite: NonFiniteMode = ...,
    **options: Any,
) -> Explanation: ...


@overload
def explain(
    model: nn.Module | Any,
    inputs: Tensor,
    method: Sequence[str | Method],
    target: TargetLike = ...,
    *,
    seed: int = ...,
    batch_size: int | None = ...,
    labels: Sequence[str] | None = ...,
    progress: Progress | None = ...,
    layout: str = ...,
    nonfinite: NonFiniteMode = ...,
    **options: Any,
) -> list[Explanation]: ...


def explain(
    model: nn.Module | Any,
    inputs: Tensor,
    method: str | Method | Sequence[str | Method] = "gradient",
    target: TargetLike = None,
    *,
    seed: int = 0,
    batch_size: int | None = None,
    labels: Sequence[str] | None = None,
    progress: Progress | None = None,
    layout: str = "auto",
    nonfinite: NonFiniteMode = "raise",
    **options: Any,
) -> Explanation | list[Explanation]:
    """Explain a batch with one method, or with several.

    Parameters
    ----------
    model, inputs, target, seed, batch_size, labels, progress, layout, nonfinite
        See :mod:`seethrough.attribution.method`.
    method : str, Method, or a sequence of them
        A registered name (``seethrough.method_names()``) or a configured method object.
    **options
        The method's options (e.g. ``steps=64`` for integrated gradients). With several
        methods, each option goes to the methods that have it; an option none of them
        has is an error. ``layer_scale`` and ``layer_fusion`` fuse a CAM given several
        layers (see :mod:`seethrough.attribution.cams.multilayer`).

    Returns
    -------
    Explanation
        For one method (a name or a method object).
    list of Explanation
        One per method, in order, when ``method`` is a sequence.

    Raises
    ------
    InvalidOptionError, InvalidInputError, TargetError, LayerError, ModelStateError, NonFiniteError
        With a message naming the problem and the fix.
    """
    several = not isinstance(method, (str, Method))
    names: list[str | Method] = list(method) if several else [method]  # type: ignore[arg-type, list-item]
    if not names:
        raise InvalidOptionError("no method given; name at least one")
    fusion = {k: options.pop(k) for k in FUSION_OPTIONS if k in options}
    routed = route_options(names, options) if several else [options]
    methods = [make_method(m, **o) for m, o in zip(names, routed, strict=True)]
    results = explain_all(
        methods,
        model,
        inputs,
        target,
        seed=seed,
        batch_size=batch_size,
        labels=labels,
        progress=progress,
        layout=layout,
        fusion=fusion,
        nonfinite=nonfinite,
    )
    return results if several else results[0]


def explain_all(
    methods: Sequence[Method],
    model: nn.Module | Any,
    inputs: Tensor,
    target: TargetLike = None,
    *,
    seed: int = 0,
    batch_size: int | None = None,
    labels: Sequence[str] | None = None,
    progress: Progress | None = None,
    layout: str = "auto",
    fusion: Mapping[str, Any] | None = None,
    nonfinite: NonFiniteMode = "raise",
) -> list[Explanation]:
    """Run several configured methods on the same inputs and targets, in one guarded
    block; one :class:`Explanation` per method, in order.

    Methods that read the plain pass over the inputs (gradient, gradient × input,
    gradient CAMs on one layer) share one forward and backward pass: their results
    are those of separate calls, with fewer passes. A CAM given a list of layers runs
    once per layer and its maps are fused (``fusion``: ``layer_scale``,
    ``layer_fusion``; see :mod:`seethrough.attribution.cams.multilayer`).
    """
    _check_call(methods, seed, nonfinite)
    fusion = dict(fusion or {})
    split, groups = _split_layers(list(methods), fusion)
    module, labels, transform = unwrap_model(model, labels)
    x = check_inputs(inputs, module)
    parsed = parse_target(target, len(x), labels)
    with guarded(module, [x.device]):
        ctx = PassContext(module, x.device, seed, batch_size, progress, layout, nonfinite)
        ctx.input_transform = transform
        rows, parsed, image_index = _expand_topk(ctx, x, parsed)
        call = _Call(rows, parsed, image_index, seed, labels, transform)
        plan = _plan(ctx, split, rows)
        extra = _run_shared_pass(ctx, plan, call)
        results: list[Explanation] = []
        found = [ctx.shared.predicted if ctx.shared is not None else None]
        for method, planned, seconds in zip(split, plan.planned, extra):
            result, predicted = _run(ctx, method, call, plan, planned, seconds)
            results.append(result)
            found.append(predicted)
    return _fused(_with_predicted(results, found), groups, fusion)


def _fused(
    results: list[Explanation], groups: list[tuple[int, int, bool]] | None, fusion: dict[str, Any]
) -> list[Explanation]:
    """One explanation per method given: the results of a CAM run once per layer (the
    ``groups`` of :func:`_split_layers`) fused into one."""
    if groups is None:
        return results
    # imported here: importing the cams package registers the CAMs, and the package's
    # __init__ sets the registration order
    from .cams.multilayer import fuse_layers

    return [fuse_layers(results[a:b], **fusion) if fused else results[a] for a, b, fused in groups]


def _check_call(methods: Sequence[Method], seed: int, nonfinite: NonFiniteMode) -> None:
    if not methods:
        raise InvalidOptionError("no method given; name at least one")
    check_option("explain", "seed", seed, integer(at_least=None))
    check_option("explain", "nonfinite", nonfinite, NONFINITE_MODES)


@dataclass(frozen=True)
class _Call:
    """What every explanation of one call shares: the rows (an image per top-k class),
    their targets and images, and how they were made."""

    rows: Tensor
    target: Target
    image_index: Tensor
    seed: int
    labels: Sequence[str] | None
    transform: Any


class _Plan(NamedTuple):
    """Which methods read one shared clean pass (``shared``: several can, on at most one
    ``layer``), and the rows planned for each method's own passes (for progress)."""

    needs: list[PassNeeds | None]
    planned: list[int]
    shared: bool
    layer: str | None


def _plan(ctx: PassContext, methods: list[Method], rows: Tensor) -> _Plan:
    needs = [m.clean_pass_needs(ctx, rows) for m in methods]
    sharing = [n for n in needs if n is not None]
    layers = {n.layer for n in sharing if n.layer is not None}
    shared = len(sharing) > 1 and len(layers) <= 1
    own = [
        0 if shared and n is not None else m.planned_rows(len(rows)) for m, n in zip(methods, needs)
    ]
    ctx.plan_rows(sum(own) + (len(rows) if shared else 0))
    return _Plan(needs, own, shared, next(iter(layers), None))


def _run_shared_pass(ctx: PassContext, plan: _Plan, call: _Call) -> list[float]:
    """Run the shared clean pass into ``ctx.shared`` (when the plan has one); each
    method's share of its seconds (0 for the methods that do not read it)."""
    sharing = [n for n in plan.needs if n is not None]
    if not plan.shared:
        return [0.0] * len(plan.needs)
    started = time.perf_counter()
    layer = (plan.layer, find_layer(ctx.model, plan.layer)) if plan.layer is not None else None
    ctx.shared = ctx.clean_pass(
        call.rows, call.target, input_grad=any(n.input_grad for n in sharing), layer=layer
    )
    seconds = (time.perf_counter() - started) / len(sharing)
    return [0.0 if n is None else seconds for n in plan.needs]


def _run(
    ctx: PassContext, method: Method, call: _Call, plan: _Plan, planned: int, extra_seconds: float
) -> tuple[Explanation, Tensor | None]:
    """Run one method (``planned`` rows); its explanation, and the rows' top classes
    when its own pass found them."""
    ctx.method, ctx.hint = method.name, method.nonfinite_hint()
    started, mark = time.perf_counter(), ctx.progress_mark()
    result = method.attribute_rows(ctx, call.rows, call.target)
    seconds = time.perf_counter() - started + extra_seconds
    ctx.settle(mark, planned)
    bad = _nonfinite_rows(ctx, result)
    ran = dict(seconds=seconds, nonfinite_rows=tuple(bad), nonfinite_steps=ctx.warn_nonfinite(bad))
    return _explanation(method, result, call, plan.shared, ran), result.predicted


def _nonfinite_rows(ctx: PassContext, result: Attribution) -> list[int]:
    """The result's rows with a non-finite score or map; with ``nonfinite="raise"`` the
    passes' own checks raised already, unless only the map is bad: raise for it here."""
    bad = nonfinite_rows(*ctx.unchecked(result.scores, result.values))
    if bad:
        ctx.check_finite("the model's target score", "the clean forward pass", result.scores)
        ctx.check_finite("the attribution map", "the method's own passes", result.values)
    return bad


def _explanation(
    method: Method, result: Attribution, call: _Call, copied: bool, ran: Mapping[str, Any]
) -> Explanation:
    """The method's explanation type, from the call's fields, the method's, what the run
    found (``ran``) and the method's details. With ``copied`` (a shared pass), the
    targets and scores are copies: results never alias each other."""
    details = result.details.as_fields() if result.details is not None else {}
    return method.result_type(
        method=method.name,
        attributions=result.values.detach().contiguous(),
        inputs=call.rows,
        targets=result.indices.clone() if copied else result.indices,
        scores=result.scores.clone() if copied else result.scores,
        image_index=call.image_index.clone(),
        resolution=method.resolution,
        display=method.display,
        settings=method.settings,
        seed=call.seed,
        class_names=tuple(call.labels) if call.labels is not None else None,
        input_transform=call.transform,
        versions=library_versions(),
        **ran,
        **details,
    )


def _with_predicted(results: list[Explanation], found: list[Tensor | None]) -> list[Explanation]:
    """Every result with the rows' top classes, from the first pass that found them
    (the shared pass, then each method's in order)."""
    predicted = next((p for p in found if p is not None), None)
    if predicted is None:
        return results
    return [r.replace(predicted=predicted.clone()) for r in results]


def _expand_topk(ctx: PassContext, x: Tensor, target: Target) -> tuple[Tensor, Target, Tensor]:
    """Repeat each image once per top-k class; other targets keep one row per image."""
    index = torch.arange(len(x), device=x.device)
    if target.kind != "topk":
        return x, target, index
    logits = forward_logits(ctx.model, lambda a, b: x[a:b], len(x), ctx.budget)
    ctx.check_finite("the model's output", "the forward pass that picks the top-k classes", logits)
    target.check_range(logits.shape[1])
    classes = logits.topk(target.k, dim=1).indices.reshape(-1)
    return (
        x.repeat_interleave(target.k, dim=0),
        target.fixed(classes),
        index.repeat_interleave(target.k),
    )


def _split_layers(
    methods: list[Method], fusion: Mapping[str, Any]
) -> tuple[list[Method], list[tuple[int, int, bool]] | None]:
    """One method per layer for each CAM given a list of layers, with the slices of the
    results to fuse; ``None`` when no method has a list of layers."""
    listed = [m for m in methods if isinstance(getattr(m, "layer", None), (list, tuple))]
    if not listed:
        if fusion:
            raise InvalidOptionError(
                f"{', '.join(fusion)} only applies to a CAM given several layers (layer=[...])"
            )
        return methods, None
    from .cams.multilayer import check_fusion_options  # see explain_all

    scale, how = fusion.get("layer_scale", "max_abs"), fusion.get("layer_fusion", "mean")
    check_fusion_options(scale, how, owner="explain")
    split: list[Method] = []
    groups: list[tuple[int, int, bool]] = []
    for m in methods:
        layers = getattr(m, "layer", None)
        if not isinstance(layers, (list, tuple)):
            groups.append((len(split), len(split) + 1, False))
            split.append(m)
            continue
        if m.resolution != "layer":
            raise InvalidOptionError(
                f"{m.name} takes one layer, got {len(layers)}; several layers can be fused "
                "for layer-resolution CAMs only"
            )
        if not layers or not all(isinstance(n, str) for n in layers):
            raise InvalidOptionError(
                f"layer must be a layer name or a non-empty list of names, got {layers!r}"
            )
        if len(set(layers)) != len(layers):
            raise InvalidOptionError(f"layer lists a layer twice: {list(layers)!r}")
        groups.append((len(split), len(split) + len(layers), True))
        split.extend(dataclasses.replace(m, layer=name) for name in layers)  # type: ignore[call-arg]
    return split, groups
