"""The entry points: :func:`explain`, :func:`explain_all` and :func:`make_method`.

Options are routed here (with several methods, each option goes to the methods that
have it) and validated once, against each method's declared fields (see
:class:`~seethrough.attribution.method.Method`). The shared parameters are documented
in :mod:`seethrough.attribution.method`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any, overload

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
from .run import NONFINITE_MODES, NonFiniteMode, PassContext, nonfinite_rows

__all__ = ["explain", "explain_all", "make_method"]

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
    if isinstance(name, Method):
        _check_option_names(type(name), options)
        return dataclasses.replace(name, **options) if options else name
    if not isinstance(name, str) or name not in METHODS:
        raise InvalidOptionError(
            f"unknown method {name!r}{suggest(str(name), METHODS)} (valid: {', '.join(METHODS)})"
        )
    cls = METHODS[name]
    _check_option_names(cls, options)
    return cls(**options)


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
    methods = [make_method(m, **_options_for(m, options, several)) for m in names]
    if several:
        _check_all_used(methods, options)
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
    if not methods:
        raise InvalidOptionError("no method given; name at least one")
    check_option("explain", "seed", seed, integer(at_least=None))
    check_option("explain", "nonfinite", nonfinite, NONFINITE_MODES)
    fusion = dict(fusion or {})
    split, groups = _split_layers(list(methods), fusion)
    module, labels, transform = unwrap_model(model, labels)
    x = check_inputs(inputs, module)
    parsed = parse_target(target, len(x), labels)
    results: list[Explanation] = []
    predicted: Tensor | None = None
    with guarded(module, [x.device]):
        ctx = PassContext(module, x.device, seed, batch_size, progress, layout, nonfinite)
        rows, parsed, image_index = _expand_topk(ctx, x, parsed)
        needs = [m.clean_pass_needs(ctx, rows) for m in split]
        sharing = [n for n in needs if n is not None]
        layers = {n.layer for n in sharing if n.layer is not None}
        shared = len(sharing) > 1 and len(layers) <= 1
        shares = [
            0 if shared and n is not None else m.planned_rows(len(rows))
            for m, n in zip(split, needs)
        ]
        ctx.plan_rows(sum(shares) + (len(rows) if shared else 0))
        shared_seconds = 0.0
        if shared:
            name = next(iter(layers), None)
            started = time.perf_counter()
            ctx.shared = ctx.clean_pass(
                rows,
                parsed,
                input_grad=any(n.input_grad for n in sharing),
                layer=(name, find_layer(module, name)) if name is not None else None,
            )
            shared_seconds = (time.perf_counter() - started) / len(sharing)
            predicted = ctx.shared.predicted
        for method, need, share in zip(split, needs, shares):
            ctx.method = method.name
            started, mark = time.perf_counter(), ctx.progress_mark()
            result = method.attribute_rows(ctx, rows, parsed)
            seconds = time.perf_counter() - started
            ctx.settle(mark, share)
            if shared and need is not None:
                seconds += shared_seconds
            predicted = predicted if predicted is not None else result.predicted
            bad = nonfinite_rows(result.scores, result.values)
            if bad:  # with "raise", the passes' own checks raised unless only the map is bad
                ctx.check_finite(
                    "the model's target score", "the clean forward pass", result.scores
                )
                ctx.check_finite("the attribution map", "the method's own passes", result.values)
            steps = ctx.warn_nonfinite(bad)
            common = dict(
                method=method.name,
                attributions=result.values.detach().contiguous(),
                inputs=rows,
                targets=result.indices.clone() if shared else result.indices,
                scores=result.scores.clone() if shared else result.scores,
                image_index=image_index.clone(),  # results never alias each other
                resolution=method.resolution,
                display=method.display,
                settings=method.settings,
                seed=seed,
                class_names=tuple(labels) if labels is not None else None,
                input_transform=transform,
                versions=library_versions(),
                seconds=seconds,
                nonfinite_rows=tuple(bad),
                nonfinite_steps=steps,
            )
            results.append(_result(method, result, common))
    if predicted is not None:
        results = [r.replace(predicted=predicted.clone()) for r in results]
    if groups is None:
        return results
    # imported here: importing the cams package registers the CAMs, and the package's
    # __init__ sets the registration order
    from .cams.multilayer import fuse_layers

    return [fuse_layers(results[a:b], **fusion) if fused else results[a] for a, b, fused in groups]


def _result(method: Method, result: Attribution, common: dict[str, Any]) -> Explanation:
    """The method's explanation type, from the common fields and the method's details."""
    details = result.details.as_fields() if result.details is not None else {}
    return method.result_type(**common, **details)


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


def _fields(method: str | Method) -> set[str]:
    cls = type(method) if isinstance(method, Method) else METHODS.get(method)
    return {f.name for f in dataclasses.fields(cls)} if cls is not None else set()


def _options_for(method: str | Method, options: Mapping[str, Any], several: bool) -> dict[str, Any]:
    if not several:
        return dict(options)
    fields = _fields(method)
    return {k: v for k, v in options.items() if k in fields}


def _check_all_used(methods: list[Method], options: Mapping[str, Any]) -> None:
    known = set().union(*(_fields(m) for m in methods))
    for key in options:
        if key not in known:
            raise InvalidOptionError(
                f"no chosen method has an option {key!r}{suggest(key, sorted(known))}"
            )
