"""Concept relevance: which channels of a layer carry a prediction's relevance, and where.

Concept Relevance Propagation (CRP; Achtibat et al., 2023, "From attribution maps to
human-understandable explanations through Concept Relevance Propagation", Nature Machine
Intelligence 5, 1006–1019) splits an LRP explanation at a layer. The relevance that LRP
propagates from the target score down to ``layer``'s output is summed over positions into
one number per channel (the channel's *relevance*); each of the most relevant channels
then gets its own *conditional heatmap*: the LRP backward pass continued from the layer
to the input with the relevance of every other channel set to zero. Because every LRP
rule is linear in the relevance it receives, the conditional heatmaps of all channels add
up to the heatmap of the relevance that passes through the layer — the plain LRP heatmap
when every path from the input to the output passes through the layer.

Definitions (``R`` is relevance, the quantity LRP's modified backward pass carries)
---------------------------------------------------------------------------------
* **Seed.** The relevance at the output is the target score at the target's position and
  zero elsewhere (``onehot · logit``; Zennit's and zennit-crp's convention).
* **Channel relevance** ``R_c = Σ_positions R(layer output)[c]`` ``(N, C)``, signed;
  its sum over channels is the layer's total relevance (``total_relevance``).
* **Share** ``R_c / Σ_c' |R_c'|`` — zennit-crp's ``abs_norm``.
* **Conditional heatmap** of channel ``c``: the input relevance of the backward pass
  from the layer, seeded with ``R(layer output)`` masked to channel ``c``, summed over
  the input's colour channels ``(H, W)`` — zennit-crp's ``CondAttribution`` with
  ``conditions=[{"y": target, layer: [c]}]`` and its default ``exclude_parallel=True``:
  relevance that reaches the input on a path that bypasses the layer is not counted
  (on a network where every path passes through the layer there is none).

The LRP rules are those of :mod:`seethrough.core.relevance` (composites by name, as in
Zennit, batch norm folded into the preceding convolution on the fly).

Deviations from the paper and from zennit-crp (each also said where it happens)
------------------------------------------------------------------------------
* The conditional backward passes reuse the relevance at the layer from one pass over
  the images: each batch of (image, channel) rows runs the forward pass only up to the
  layer and the backward pass only below it (zennit-crp runs the whole network forward
  and backward for every batch of conditions). The numbers are the same (measured in
  ``docs/concepts.md``); the work above the layer is done once.
* Concepts are channels of one layer (zennit-crp's ``ChannelConcept``); the paper's
  hierarchical decomposition across layers (``AttributionGraph``) and its reference
  sampling over a dataset are not part of this function — linking a channel to the
  images that excite it is :func:`seethrough.inside.top_examples`' job.
* Top channels are ranked by signed relevance (as zennit-crp's examples do) or, with
  ``rank="abs"``, by its magnitude.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from ..attribution.explanation import freeze_settings
from ..attribution.lrp import box_bounds
from ..core.budget import Budget
from ..core.guard import check_inputs, guarded, unwrap_model
from ..core.hooks import HookSet
from ..core.layers import find_layer
from ..core.passes import forward_logits
from ..core.relevance import COMPOSITES, RelevanceRule, composite_options, make_composite
from ..core.targets import Target, TargetLike, logits_of, parse_target
from ..core.versions import library_versions
from ..errors import InvalidOptionError, LayerError, NonFiniteError
from ..words import Description, Finding, Term, Value, catalogue

__all__ = ["RANKS", "ConceptRelevance", "concepts"]

RANKS = ("signed", "abs")
"""How top channels are ranked: by signed relevance, or by its magnitude."""


@dataclass(frozen=True, eq=False)
class ConceptRelevance:
    """Concept relevance of one layer for a batch of predictions (module docstring).

    One row per explained (image, target); ``image_index`` says which input image a row
    explains (it differs from ``arange(N)`` only for top-k targets).

    Attributes
    ----------
    layer : str
        The layer's dotted module name.
    layer_channels : int
        How many channels the layer has.
    channel_relevance : Tensor
        ``(N, C)`` each channel's relevance, signed (summed over the layer's positions).
    total_relevance : Tensor
        ``(N,)`` the relevance at the layer's output, summed over all of it; equals
        ``channel_relevance.sum(1)``.
    top_channels : Tensor
        ``(N, top)`` channel ids, most relevant first (or the ``channels`` asked for, in
        their order).
    top_relevance, top_share : Tensor
        ``(N, top)`` those channels' relevance, and their share ``R_c / Σ|R|``.
    coverage : Tensor
        ``(N,)`` the share of the absolute channel relevance the top channels carry:
        ``Σ_top |R_c| / Σ_all |R_c|``.
    heatmaps : Tensor
        ``(N, top, H, W)`` each top channel's conditional heatmap on the input.
    heatmap : Tensor
        ``(N, H, W)`` the plain LRP heatmap (summed over colour channels), from the same
        pass; it equals the sum of all channels' conditional heatmaps when every path from
        the input to the output passes through the layer.
    inputs : Tensor
        ``(N, C_in, H, W)`` the explained rows (detached copy).
    scores, targets, image_index : Tensor
        ``(N,)`` the target score (the relevance put at the output), the class index
        (``-1`` for a callable target), and the input image of each row.
    predicted : Tensor or None
        ``(N,)`` each row's top class (None for callable targets).
    rank : {"signed", "abs"}
        How top channels were ranked (``"given"`` when ``channels`` were).
    composite : str
        The LRP composite's name.
    settings : Mapping
        Every option as used.
    class_names : tuple of str or None
        The model's class labels, when known.
    input_transform : object or None
        The preprocessing that made the inputs (has ``invert``), for display.
    versions : Mapping
        seethrough and torch versions.
    seconds : float
        Wall-clock time of the call.
    """

    layer: str
    layer_channels: int
    channel_relevance: Tensor
    total_relevance: Tensor
    top_channels: Tensor
    top_relevance: Tensor
    top_share: Tensor
    coverage: Tensor
    heatmaps: Tensor
    heatmap: Tensor
    inputs: Tensor
    scores: Tensor
    targets: Tensor
    image_index: Tensor
    predicted: Tensor | None
    rank: str
    composite: str
    settings: Mapping[str, Any]
    class_names: tuple[str, ...] | None
    input_transform: Any
    versions: Mapping[str, str]
    seconds: float

    @property
    def top(self) -> int:
        """How many channels have a conditional heatmap."""
        return int(self.top_channels.shape[1])

    def describe(self, lang: str = "en") -> Description:
        """The decomposition in words: for each row, the relevance that reaches the layer,
        its most relevant channel with its share and what the top channels carry
        (``"hedged"``), then a caution that LRP's relevance is not sanity-checked here
        (``"note"``). Every number is a value of the result's JSON."""
        return _describe(self, lang)


# ------------------------------------------------------------------------ words


def _row_finding(result: ConceptRelevance, row: int) -> Finding:
    target = int(result.targets[row])
    names = result.class_names
    cls: Value = names[target] if names is not None and 0 <= target < len(names) else target
    values: dict[str, Value] = {
        "image": int(result.image_index[row]),
        "cls": cls if target >= 0 else Term("decompose.concepts.target"),
        "score": float(result.scores[row]),
        "layer": result.layer,
        "channels": result.layer_channels,
        "total": float(result.total_relevance[row]),
        "top": result.top,
    }
    evidence = f"channel_relevance.{row}"
    if not bool(result.channel_relevance[row].abs().sum() > 0):
        return Finding("decompose.concepts.zero", values, evidence, "note")
    first = 0
    if result.rank == "given":  # the most relevant of the channels asked for
        first = int(result.top_relevance[row].argmax())
    values.update(
        channel=int(result.top_channels[row, first]),
        relevance=float(result.top_relevance[row, first]),
        share=float(result.top_share[row, first]),
        coverage=float(result.coverage[row]),
    )
    return Finding(f"decompose.concepts.{result.rank}", values, evidence, "hedged")


def _describe(result: ConceptRelevance, lang: str) -> Description:
    catalogue(lang)  # refuses an unknown language, naming the valid ones
    findings = [_row_finding(result, row) for row in range(len(result.scores))]
    caution = {"composite": result.composite}
    findings.append(Finding("decompose.concepts.caution", caution, "composite", "note"))
    return Description("concepts", tuple(findings))


# ------------------------------------------------------------------------ checks


def _check_top(top: object) -> int:
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise InvalidOptionError(
            f"concepts: top must be a positive integer (how many channels get a heatmap), "
            f"got {top!r}"
        )
    return top


def _check_channels(channels: object) -> list[int] | None:
    if channels is None:
        return None
    if isinstance(channels, Tensor):
        channels = channels.reshape(-1).tolist()
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
        raise InvalidOptionError(
            f"concepts: channels must be a sequence of channel indices, got {channels!r}"
        )
    ids = list(channels)
    if not ids or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in ids):
        raise InvalidOptionError(
            f"concepts: channels must be a non-empty list of channel indices ≥ 0, got {ids!r}"
        )
    if len(set(ids)) != len(ids):
        raise InvalidOptionError(f"concepts: channels {ids!r} lists a channel twice")
    return ids


def _check_rank(rank: object) -> str:
    if rank not in RANKS:
        raise InvalidOptionError(
            f"concepts: unknown rank {rank!r} (valid: {', '.join(RANKS)}: by signed relevance "
            "or by its magnitude)"
        )
    return str(rank)


def _check_count(channels: int, top: int, chosen: list[int] | None, layer: str) -> None:
    """Refuse a ``top`` or explicit ``channels`` the layer's ``channels`` cannot give."""
    if chosen is not None:
        bad = [c for c in chosen if c >= channels]
        if bad:
            raise InvalidOptionError(
                f"concepts: channel {bad[0]} does not exist: layer {layer!r} has {channels} "
                f"channels (valid: 0 to {channels - 1})"
            )
    elif top > channels:
        raise InvalidOptionError(
            f"concepts: top={top} asks for more channels than layer {layer!r} has "
            f"({channels}); pass top={channels} or fewer"
        )


# ------------------------------------------------------------------------ capture


class _StopForwardError(Exception):
    """Raised by the layer's hook to end a forward pass that is needed only up to it."""


class _LayerOutput:
    """The layer's output in one forward pass under the relevance rule.

    With ``stop=False`` a tensor hook on the output records the relevance that arrives
    there in the backward pass (the engine's contract: the gradient that flows is the
    relevance). A tensor hook registered before an in-place op downstream
    (``ReLU(inplace=True)``) still receives the gradient of the output as the layer
    produced it, and the output itself is handed on untouched (a copy would count as a
    second use of a conv output whose batch norm is folded into it). With ``stop=True``
    the forward pass ends at the layer. ``check`` sees the output before anything else
    runs, so a bad ``top`` is refused at the first layer call, not after a whole pass."""

    def __init__(self, name: str, stop: bool, check: Callable[[Tensor], None]) -> None:
        self.name = name
        self.stop = stop
        self.check = check
        self.output: Tensor | None = None
        self.relevance: Tensor | None = None

    def hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if not isinstance(output, Tensor) or output.dim() < 2:
            shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise LayerError(
                f"layer {self.name!r} returns {shape}; concepts needs a tensor output "
                "(N, C, ...) whose dimension 1 is the channels"
            )
        if self.output is not None:
            raise LayerError(
                f"layer {self.name!r} runs more than once per forward pass (a reused module), "
                "so its channels are ambiguous; choose a layer that runs once"
            )
        self.check(output)
        self.output = output
        if self.stop:
            raise _StopForwardError
        if output.requires_grad:
            output.register_hook(self._record)

    def _record(self, grad: Tensor) -> None:
        self.relevance = grad.detach()

    def found(self) -> Tensor:
        if self.output is None:
            raise LayerError(f"layer {self.name!r} did not run in the forward pass")
        return self.output


def _run(
    model: nn.Module, module: nn.Module, rule: RelevanceRule, x: Tensor, capture: _LayerOutput
) -> Any:
    """``model(x)`` under ``rule`` with ``capture`` on the layer; ``None`` when the
    capture stopped the pass at the layer."""
    with HookSet() as hooks:
        hooks.add(module.register_forward_hook(capture.hook))
        try:
            with rule:
                return model(x)
        except _StopForwardError:
            return None


# ------------------------------------------------------------------------ passes


@dataclass
class _LayerPass:
    """Pass 1 over the rows: relevance at the layer, the LRP heatmap, the targets."""

    relevance: list[Tensor]
    heatmap: list[Tensor]
    scores: list[Tensor]
    indices: list[Tensor]
    predicted: list[Tensor]


def _first_pass(
    model: nn.Module,
    module: nn.Module,
    name: str,
    make_rule: Callable[[], RelevanceRule],
    x: Tensor,
    target: Target,
    budget: Budget,
    check: Callable[[Tensor], None],
) -> _LayerPass:
    found = _LayerPass([], [], [], [], [])

    def step(start: int, stop: int) -> None:
        rows = budget.arrange(model, x[start:stop]).detach().requires_grad_(True)
        rule, capture = make_rule(), _LayerOutput(name, False, check)
        output = _run(model, module, rule, rows, capture)
        layer_output = capture.found()
        scores, indices = target.select(output, slice(start, stop))
        # the seed: the target score at its position (the gradient of the score,
        # weighted by the score itself); the input's gradient is the LRP heatmap
        (heatmap,) = torch.autograd.grad(scores, rows, grad_outputs=scores.detach())
        rule.check("concepts")
        relevance = capture.relevance
        if relevance is None:  # the target does not depend on the layer
            relevance = torch.zeros_like(layer_output)
        found.heatmap.append(heatmap.detach().sum(1))
        found.relevance.append(relevance)
        found.scores.append(scores.detach())
        found.indices.append(indices)
        if target.fn is None:
            found.predicted.append(logits_of(output).detach().argmax(1))

    budget.run(len(x), step)
    return found


def _conditional(
    model: nn.Module,
    module: nn.Module,
    name: str,
    make_rule: Callable[[], RelevanceRule],
    x: Tensor,
    relevance: Tensor,
    chosen: Tensor,
    budget: Budget,
) -> Tensor:
    """``(N, top, H, W)``: each chosen channel's conditional heatmap.

    Rows are (row, channel) pairs, batched ``budget`` at a time; each batch runs the
    forward pass up to the layer and the backward pass from it, seeded with the row's
    relevance at the layer (from the first pass) masked to the pair's channel.
    (zennit-crp runs the whole network for each batch of conditions; the part above the
    layer does not depend on the mask, so it is computed once here.)"""
    n, top = chosen.shape
    rows_of = torch.arange(n, device=x.device).repeat_interleave(top)
    channels_of = chosen.reshape(-1)
    heatmaps = x.new_zeros(n * top, *x.shape[2:])

    def step(start: int, stop: int) -> None:
        rows, channels = rows_of[start:stop], channels_of[start:stop]
        inputs = budget.arrange(model, x[rows]).detach().requires_grad_(True)
        capture = _LayerOutput(name, True, lambda output: None)
        _run(model, module, make_rule(), inputs, capture)
        layer_out = capture.found()
        seed = torch.zeros_like(layer_out)
        picked = torch.arange(len(rows), device=x.device)
        seed[picked, channels] = relevance[rows, channels].to(seed.dtype)
        (through,) = torch.autograd.grad(layer_out, inputs, grad_outputs=seed)
        heatmaps[start:stop] = through.detach().sum(1)

    budget.run(n * top, step)
    return heatmaps.reshape(n, top, *x.shape[2:])


# ------------------------------------------------------------------------ public


def _expand_topk(
    model: nn.Module, x: Tensor, target: Target, budget: Budget
) -> tuple[Tensor, Target, Tensor]:
    """Repeat each image once per top-k class; other targets keep one row per image."""
    index = torch.arange(len(x), device=x.device)
    if target.kind != "topk":
        return x, target, index
    logits = forward_logits(model, lambda a, b: x[a:b], len(x), budget)
    target.check_range(logits.shape[1])
    classes = logits.topk(target.k, dim=1).indices.reshape(-1)
    return (
        x.repeat_interleave(target.k, 0),
        target.fixed(classes),
        index.repeat_interleave(target.k),
    )


def _check_finite(channel_relevance: Tensor, heatmaps: Tensor) -> None:
    """Refuse NaN or infinite relevance (no silent nonsense), naming the rows."""
    bad = ~(torch.isfinite(channel_relevance).all(1) & torch.isfinite(heatmaps.flatten(1)).all(1))
    if bool(bad.any()):
        rows = bad.nonzero()[:, 0].tolist()
        raise NonFiniteError(
            f"concepts: the relevance is not finite (NaN or inf) for rows {rows}; check the "
            "model and the inputs (a non-finite score), or stabilise the rules with a larger "
            "epsilon, e.g. composite_options={'epsilon': 1e-3}"
        )


def _with_box_bounds(composite: Any, options: dict[str, Any], transform: Any) -> dict[str, Any]:
    """``options`` with the box rule's ``low``/``high`` derived from a ``LoadedModel``'s
    preprocessing when the composite needs them and they are not given (as ``"lrp"``
    does: :func:`~seethrough.attribution.lrp.box_bounds`)."""
    boxed = isinstance(composite, str) and composite in COMPOSITES
    if not boxed or "low" not in composite_options(composite) or transform is None:
        return options
    if options.get("low") is not None and options.get("high") is not None:
        return options
    low, high = box_bounds(transform)
    return {"low": low, "high": high, **{k: v for k, v in options.items() if v is not None}}


def _top(relevance: Tensor, top: int, rank: str, chosen: list[int] | None) -> Tensor:
    if chosen is not None:
        return torch.tensor(chosen, device=relevance.device).expand(len(relevance), -1).clone()
    key = relevance.abs() if rank == "abs" else relevance
    # a stable descending sort: ties keep the lower channel id first
    return torch.sort(key, dim=1, descending=True, stable=True).indices[:, :top]


def concepts(
    model: Any,
    inputs: Tensor,
    layer: str,
    *,
    target: TargetLike = "predicted",
    top: int = 6,
    channels: Sequence[int] | None = None,
    rank: str = "signed",
    composite: Any = "epsilon_plus_flat",
    composite_options: Mapping[str, Any] | None = None,
    canonize: bool = True,
    batch_size: int | None = None,
    labels: Sequence[str] | None = None,
) -> ConceptRelevance:
    """Concept relevance (CRP) of ``layer``'s channels for each image's target.

    Achtibat et al. (2023), "From attribution maps to human-understandable explanations
    through Concept Relevance Propagation", Nature Machine Intelligence 5, 1006–1019.
    Definitions and the deviations from the paper and from zennit-crp are in the module
    docstring.

    Parameters
    ----------
    model : nn.Module or LoadedModel
        In eval mode; left untouched (parameters, buffers, hooks, flags, gradients).
    inputs : Tensor
        ``(N, C, H, W)`` preprocessed images.
    layer : str
        Dotted module name (``seethrough layers`` lists them); its output's dimension 1
        is the channels. A typo gets close-match suggestions.
    target : TargetLike
        What to explain, as everywhere (:mod:`seethrough.core.targets`); ``"topK"``
        explains each image once per top-k class.
    top : int
        How many channels get a conditional heatmap (most relevant first).
    channels : sequence of int, optional
        Exactly these channels, in this order, for every row (``top`` is then ignored).
    rank : {"signed", "abs"}
        Rank channels by signed relevance (the channels that speak *for* the target) or
        by its magnitude (also those that speak against it).
    composite : str or Composite
        The LRP composite (:data:`seethrough.core.relevance.COMPOSITES` names, or a
        :class:`~seethrough.core.relevance.Composite`).
    composite_options : Mapping, optional
        Passed to :func:`~seethrough.core.relevance.make_composite` (e.g. ``epsilon``,
        ``gamma``, box bounds ``low``/``high``).
    canonize : bool
        Fold each batch norm into the conv or linear layer before it (Zennit's
        ``MergeBatchNorm``, done on the fly: the model is not changed). A hook on such a
        conv then sees the merged output, so its channels are those of conv and batch
        norm together (zennit-crp with a canonizer does the same).
    batch_size : int, optional
        Rows per pass: images in the first pass, (image, channel) pairs in the
        conditional passes (default: adapt to memory).
    labels : sequence of str, optional
        Class names (default: the ``LoadedModel``'s).

    Returns
    -------
    ConceptRelevance

    Raises
    ------
    LayerError
        Unknown layer (with suggestions), a layer that does not run or runs twice.
    InvalidOptionError
        ``top`` < 1 or more than the layer's channels, a channel that does not exist, an
        unknown ``rank`` or composite.
    RuleNotAppliedError
        An operation of the model that carries relevance has no LRP rule.
    """
    started = time.perf_counter()
    module, names, transform = unwrap_model(model, labels)
    x = check_inputs(inputs, module)
    found = find_layer(module, layer)
    top = _check_top(top)
    chosen = _check_channels(channels)
    rank = _check_rank(rank) if chosen is None else "given"  # rank is moot for given channels
    options = dict(composite_options or {})
    parsed = parse_target(target, len(x), names)
    made = make_composite(composite, **_with_box_bounds(composite, options, transform))
    budget = Budget(rows=batch_size, device=x.device)

    def make_rule() -> RelevanceRule:
        return RelevanceRule(made, module, canonize=canonize)

    def check(output: Tensor) -> None:
        _check_count(int(output.shape[1]), top, chosen, layer)

    with guarded(module, [x.device]):
        rows, parsed, image_index = _expand_topk(module, x, parsed, budget)
        first = _first_pass(module, found, layer, make_rule, rows, parsed, budget, check)
        relevance = torch.cat(first.relevance)
        channel_relevance = relevance.flatten(2).sum(2) if relevance.dim() > 2 else relevance
        picked = _top(channel_relevance, top, rank, chosen)
        heatmaps = _conditional(module, found, layer, make_rule, rows, relevance, picked, budget)
    _check_finite(channel_relevance, heatmaps)
    absolute = channel_relevance.abs().sum(1, keepdim=True)
    top_relevance = channel_relevance.gather(1, picked)
    safe = torch.where(absolute > 0, absolute, torch.ones_like(absolute))
    settings = {
        "layer": layer,
        "target": target if isinstance(target, (str, int)) or target is None else str(target),
        "top": picked.shape[1],
        "channels": tuple(chosen) if chosen is not None else None,
        "rank": rank,
        "composite": made.name,
        "composite_options": freeze_settings(options),
        "canonize": canonize,
        "batch_size": batch_size,
    }
    return ConceptRelevance(
        layer=layer,
        layer_channels=int(channel_relevance.shape[1]),
        channel_relevance=channel_relevance,
        total_relevance=relevance.flatten(1).sum(1),
        top_channels=picked,
        top_relevance=top_relevance,
        top_share=top_relevance / safe,
        coverage=(top_relevance.abs().sum(1, keepdim=True) / safe)[:, 0],
        heatmaps=heatmaps,
        heatmap=torch.cat(first.heatmap),
        inputs=rows.detach(),
        scores=torch.cat(first.scores),
        targets=torch.cat(first.indices),
        image_index=image_index,
        predicted=torch.cat(first.predicted) if first.predicted else None,
        rank=rank,
        composite=made.name,
        settings=MappingProxyType(settings),
        class_names=tuple(names) if names is not None else None,
        input_transform=transform,
        versions=library_versions(),
        seconds=time.perf_counter() - started,
    )
