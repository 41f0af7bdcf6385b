"""The method interface, the registry of names, and the ``explain`` entry point.

Shared parameters, documented once and referred to by every method:

model
    Any ``torch.nn.Module`` in eval mode, or a :class:`~seethrough.models.LoadedModel`
    (then its labels and preprocessing are used too).
inputs
    A batch ``(N, C, H, W)`` on the model's device, preprocessed as the model expects.
target
    What to explain in each image; see :mod:`seethrough.core.targets`.
seed
    Row ``i`` of the batch draws its random numbers from ``torch.Generator`` seeded
    with ``seed + i``: the same seed gives the same output, bitwise on CPU.
batch_size
    The most rows (images × steps/samples) per forward/backward pass; ``None`` adapts
    to memory. Out-of-memory errors halve it and retry.
labels
    Class names, for class-name targets and figures (taken from a ``LoadedModel``).
progress
    ``progress(rows_done, rows_planned)`` after each pass.
layout
    Memory layout of image batches: ``"auto"`` (channels-last on the CPU when the model
    verifiably gives the same logits — 20–30 % faster convolutions), ``"channels_last"``
    or ``"contiguous"``. Results are the same up to float rounding; see
    :mod:`seethrough.core.budget`.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from ..core.budget import Budget, Progress
from ..core.guard import check_inputs, guarded
from ..core.passes import Chunk, backward_chunks, forward_logits, forward_scores
from ..core.rules import RectifierRule
from ..core.targets import Target, TargetLike, parse_target
from ..errors import InvalidOptionError, suggest
from .explanation import Explanation, freeze_settings, versions

__all__ = [
    "METHODS",
    "Attribution",
    "Method",
    "Run",
    "explain",
    "make_method",
    "method_names",
    "register",
]

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available by its ``name``."""
    METHODS[cls.name] = cls
    return cls


def method_names() -> tuple[str, ...]:
    """The registered method names, in registration order."""
    return tuple(METHODS)


@dataclass(frozen=True)
class CleanPass:
    """One forward and backward pass over the rows themselves (no paths, no noise):
    the input gradient and/or one layer's activation and gradient, with the scores.

    A multi-method ``explain`` computes it once for every method that can use it
    (gradient, gradient × input, the gradient CAMs on the same layer).
    """

    x: Tensor
    target: Target
    scores: Tensor
    indices: Tensor
    input_grad: Tensor | None = None
    layer: str | None = None
    activation: Tensor | None = None
    layer_grad: Tensor | None = None
    predicted: Tensor | None = None

    def covers(self, x: Tensor, target: Target, input_grad: bool, layer: str | None) -> bool:
        return (
            x is self.x
            and target is self.target
            and (not input_grad or self.input_grad is not None)
            and (layer is None or layer == self.layer)
        )


@dataclass(frozen=True)
class Attribution:
    """What a method computes for its rows, before it becomes an :class:`Explanation`."""

    values: Tensor
    scores: Tensor
    indices: Tensor
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Run:
    """The state of one ``explain`` call: the guarded model, the budget, seeds, progress."""

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        seed: int,
        batch_size: int | None,
        progress: Progress | None,
        planned: int,
        layout: str = "auto",
    ) -> None:
        self.model = model
        self.device = device
        self.seed = seed
        self.budget = Budget(batch_size, device, on_rows=self._advance, layout=layout)
        self.planned = max(1, planned)
        self._progress = progress
        self._done = 0
        self.shared: CleanPass | None = None
        self.rows: Tensor | None = None  # the rows being explained
        self.predicted: Tensor | None = None  # their top classes, when a pass saw them

    def _advance(self, rows: int) -> None:
        self._done += rows
        if self._progress is not None:
            self._progress(min(self._done, self.planned), self.planned)

    def generator(self, row: int) -> torch.Generator:
        """The random generator of row ``row``: seeded with ``seed + row``."""
        return torch.Generator(device=self.device).manual_seed(self.seed + row)

    def scores(self, x: Tensor, target: Target) -> tuple[Tensor, Tensor]:
        """Target scores and class indices of ``x`` in a no-grad pass."""
        scores, indices = forward_scores(
            self.model, lambda a, b: x[a:b], len(x), target, self.budget
        )
        if x is self.rows and target.kind == "predicted":
            self.predicted = indices
        return scores, indices

    def resolve(self, x: Tensor, target: Target) -> tuple[Target, Tensor]:
        """Fix each row's class on the clean input; returns it with the clean scores."""
        scores, indices = self.scores(x, target)
        return target.fixed(indices), scores

    def clean_pass(
        self,
        x: Tensor,
        target: Target,
        *,
        input_grad: bool,
        layer: tuple[str, nn.Module] | None = None,
    ) -> CleanPass:
        """The input gradient and/or ``layer``'s activation and gradient for the rows
        ``x``; reused from the shared pass of a multi-method call when it covers them.
        Without an input gradient the backward pass stops at the layer."""
        name = layer[0] if layer is not None else None
        if self.shared is not None and self.shared.covers(x, target, input_grad, name):
            return self.shared
        n = len(x)
        scores = x.new_empty(n)
        indices = torch.empty(n, dtype=torch.long, device=x.device)
        grads = torch.empty_like(x) if input_grad else None
        predicted: Tensor | None = torch.empty(n, dtype=torch.long, device=x.device)
        acts: list[Tensor] = []
        layer_grads: list[Tensor] = []

        def keep(chunk: Chunk) -> None:
            nonlocal predicted
            scores[chunk.start : chunk.stop] = chunk.scores
            indices[chunk.start : chunk.stop] = chunk.indices
            if chunk.predicted is None:
                predicted = None
            elif predicted is not None:
                predicted[chunk.start : chunk.stop] = chunk.predicted
            if grads is not None:
                assert chunk.input_grad is not None
                grads[chunk.start : chunk.stop] = chunk.input_grad
            if chunk.activation is not None and chunk.layer_grad is not None:
                acts.append(chunk.activation)
                layer_grads.append(chunk.layer_grad)

        backward_chunks(
            self.model,
            lambda a, b: x[a:b],
            n,
            target,
            self.budget,
            keep,
            input_grad=input_grad,
            layer=layer,
        )
        if x is self.rows and predicted is not None:
            self.predicted = predicted
        return CleanPass(
            x,
            target,
            scores,
            indices,
            grads,
            name,
            torch.cat(acts) if acts else None,
            torch.cat(layer_grads) if layer_grads else None,
            predicted,
        )

    def input_gradients(
        self,
        x: Tensor,
        target: Target,
        rule: RectifierRule | None = None,
        rows: Callable[[int, int], Tensor] | None = None,
        total: int | None = None,
        consume: Callable[[Chunk], None] | None = None,
    ) -> Attribution:
        """d(score)/d(input) for every row of ``x`` (or of ``rows`` when given)."""
        n = len(x) if total is None else total
        grads = torch.empty_like(x) if consume is None else x.new_empty(0)
        scores = x.new_empty(n)
        indices = torch.empty(n, dtype=torch.long, device=x.device)

        def keep(chunk: Chunk) -> None:
            scores[chunk.start : chunk.stop] = chunk.scores
            indices[chunk.start : chunk.stop] = chunk.indices
            if consume is None:
                assert chunk.input_grad is not None
                grads[chunk.start : chunk.stop] = chunk.input_grad
            else:
                consume(chunk)

        make = rows if rows is not None else (lambda a, b: x[a:b])
        backward_chunks(self.model, make, n, target, self.budget, keep, rule=rule)
        return Attribution(grads, scores, indices)


@dataclass(frozen=True, kw_only=True)
class Method(abc.ABC):
    """An attribution method: its options are the dataclass fields.

    Subclasses set ``name`` and implement :meth:`attribute_rows`; ``explain`` does the
    rest (validation, the model guard, targets, results).
    """

    name: ClassVar[str]
    resolution: ClassVar[Literal["input", "layer"]] = "input"
    display: ClassVar[Literal["signed", "magnitude"]] = "signed"
    result_type: ClassVar[type[Explanation]] = Explanation
    passes_per_row: ClassVar[int] = 1

    @abc.abstractmethod
    def attribute_rows(self, run: Run, x: Tensor, target: Target) -> Attribution:
        """Attributions for every row of ``x`` (already validated, targets parsed)."""

    def clean_pass_needs(self, run: Run, x: Tensor) -> tuple[bool, str | None] | None:
        """What this method reads from :meth:`Run.clean_pass` (input gradient wanted,
        layer name), or ``None`` when it makes passes of its own."""
        return None

    def planned_rows(self, n: int) -> int:
        """Rows this method runs through the model for ``n`` input rows (for progress)."""
        return n * self.passes_per_row

    @property
    def settings(self) -> Mapping[str, Any]:
        return freeze_settings({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    def explain(
        self,
        model: nn.Module | Any,
        inputs: Tensor,
        target: TargetLike = None,
        *,
        seed: int = 0,
        batch_size: int | None = None,
        labels: Sequence[str] | None = None,
        progress: Progress | None = None,
        layout: str = "auto",
    ) -> Explanation:
        """Explain ``inputs`` (see the module docstring for the shared parameters)."""
        return explain_all(
            [self],
            model,
            inputs,
            target,
            seed=seed,
            batch_size=batch_size,
            labels=labels,
            progress=progress,
            layout=layout,
        )[0]


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
) -> list[Explanation]:
    """Run several methods on the same inputs and targets, in one guarded block.

    Methods that read the plain pass over the inputs (gradient, gradient × input,
    gradient CAMs on one layer) share one forward and backward pass: their results
    are those of separate calls, with fewer passes. A CAM given a list of layers runs
    once per layer and its maps are fused (``fusion``: ``layer_scale``,
    ``layer_fusion``; see :mod:`seethrough.attribution.multilayer`).
    """
    fusion = dict(fusion or {})
    methods, groups = _split_layers(list(methods), fusion)
    module, labels, transform = _unwrap(model, labels)
    x = check_inputs(inputs, module)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise InvalidOptionError(f"seed must be an integer, got {seed!r}")
    parsed = parse_target(target, len(x), labels)
    results: list[Explanation] = []
    with guarded(module, [x.device]):
        run = Run(module, x.device, seed, batch_size, progress, 0, layout)
        rows, parsed, image_index = _expand_topk(run, x, parsed)
        run.rows = rows
        needs = [m.clean_pass_needs(run, rows) for m in methods]
        layers = {n[1] for n in needs if n is not None and n[1] is not None}
        sharing = [n for n in needs if n is not None]
        shared = len(sharing) > 1 and len(layers) <= 1
        planned = sum(
            0 if shared and n is not None else m.planned_rows(len(rows))
            for m, n in zip(methods, needs)
        )
        run.planned = planned + (len(rows) if shared else 0)
        if shared:
            from ..core.layers import find_layer

            name = next(iter(layers), None)
            started = time.perf_counter()
            run.shared = run.clean_pass(
                rows,
                parsed,
                input_grad=any(n[0] for n in sharing),
                layer=(name, find_layer(module, name)) if name is not None else None,
            )
            shared_seconds = (time.perf_counter() - started) / len(sharing)
        for method, need in zip(methods, needs):
            started = time.perf_counter()
            result = method.attribute_rows(run, rows, parsed)
            seconds = time.perf_counter() - started
            if shared and need is not None:
                seconds += shared_seconds
            results.append(
                method.result_type(
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
                    versions=versions(),
                    seconds=seconds,
                    **result.extra,
                )
            )
    if run.predicted is not None:
        results = [r.replace(predicted=run.predicted.clone()) for r in results]
    if groups is None:
        return results
    from .multilayer import fuse_layers

    return [fuse_layers(results[a:b], **fusion) if fused else results[a] for a, b, fused in groups]


def _unwrap(model: Any, labels: Sequence[str] | None) -> tuple[nn.Module, Any, Any]:
    """Accept an ``nn.Module`` or a ``LoadedModel`` (module + labels + preprocess)."""
    from ..core.guard import unwrap_model

    return unwrap_model(model, labels)


def _expand_topk(run: Run, x: Tensor, target: Target) -> tuple[Tensor, Target, Tensor]:
    """Repeat each image once per top-k class; other targets keep one row per image."""
    index = torch.arange(len(x), device=x.device)
    if target.kind != "topk":
        return x, target, index
    logits = forward_logits(run.model, lambda a, b: x[a:b], len(x), run.budget)
    target.check_range(logits.shape[1])
    classes = logits.topk(target.k, dim=1).indices.reshape(-1)
    return (
        x.repeat_interleave(target.k, dim=0),
        target.fixed(classes),
        index.repeat_interleave(target.k),
    )


def make_method(name: str | Method, **options: Any) -> Method:
    """The method called ``name`` with ``options``; unknown names and options are refused."""
    if isinstance(name, Method):
        return dataclasses.replace(name, **options) if options else name
    if not isinstance(name, str) or name not in METHODS:
        raise InvalidOptionError(
            f"unknown method {name!r}{suggest(str(name), METHODS)} (valid: {', '.join(METHODS)})"
        )
    cls = METHODS[name]
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in options:
        if key not in valid:
            listed = ", ".join(valid) if valid else "none"
            raise InvalidOptionError(
                f"{name} has no option {key!r}{suggest(key, valid)} (its options: {listed})"
            )
    return cls(**options)


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
    **options: Any,
) -> Any:
    """Explain a batch with one method, or with several.

    Parameters
    ----------
    model, inputs, target, seed, batch_size, labels, progress, layout
        See :mod:`seethrough.attribution.base`.
    method : str, Method, or a sequence of them
        A registered name (``seethrough.method_names()``) or a configured method object.
    **options
        The method's options (e.g. ``steps=64`` for integrated gradients). With several
        methods, each option goes to the methods that have it; an option none of them
        has is an error.

    Returns
    -------
    Explanation, or a list of them (one per method) when ``method`` is a sequence.

    Raises
    ------
    InvalidOptionError, InvalidInputError, TargetError, LayerError, ModelStateError
        With a message naming the problem and the fix.
    """
    names: list[str | Method] = [method] if isinstance(method, (str, Method)) else list(method)
    several = not isinstance(method, (str, Method))
    if not names:
        raise InvalidOptionError("no method given; name at least one")
    fusion: dict[str, Any] = {
        k: options.pop(k) for k in ("layer_scale", "layer_fusion") if k in options
    }
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
    )
    return results if several else results[0]


def _split_layers(
    methods: list[Method], fusion: Mapping[str, Any]
) -> tuple[list[Method], list[tuple[int, int, bool]] | None]:
    """One method per layer for each CAM given a list of layers, with the slices of the
    results to fuse; ``None`` when no method has a list of layers."""
    from .multilayer import check_fusion_options

    listed = [m for m in methods if isinstance(getattr(m, "layer", None), (list, tuple))]
    if not listed:
        if fusion:
            raise InvalidOptionError(
                f"{', '.join(fusion)} only applies to a CAM given several layers (layer=[...])"
            )
        return methods, None
    check_fusion_options(fusion.get("layer_scale", "max_abs"), fusion.get("layer_fusion", "mean"))
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
