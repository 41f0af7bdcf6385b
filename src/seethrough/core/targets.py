"""What to explain: the target of each image.

``target`` (shared by every method) may be

* ``None`` or ``"predicted"`` — each image's top-scoring class;
* an ``int`` or a class name — the same class for every image;
* a sequence or 1-D tensor of ints/names — one per image;
* ``"top3"`` (any k) — each image's k best classes, one explanation row each;
* a callable ``f(output) -> Tensor (N,)`` that picks one scalar per image from the
  model's raw output (any structure).

Class names need the model's labels; a typo gets close-match suggestions.
Indices out of range raise :class:`~seethrough.errors.TargetError` with the valid range.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import InvalidInputError, TargetError, suggest

__all__ = ["Target", "TargetLike", "logits_of", "parse_target"]

TargetLike = None | int | str | Sequence[int | str] | Tensor | Callable[[Any], Tensor]

_TOPK = re.compile(r"top(\d+)$")


def logits_of(output: Any) -> Tensor:
    """The ``(N, classes)`` scores in a model's output.

    Read from a tensor, a tuple's first item, or ``.logits`` (attribute or key).
    """
    scores = output
    if isinstance(output, Mapping) and "logits" in output:
        scores = output["logits"]
    elif hasattr(output, "logits") and not isinstance(output, Tensor):
        scores = output.logits
    elif isinstance(output, (tuple, list)) and output:
        scores = output[0]
    if not isinstance(scores, Tensor):
        raise InvalidInputError(
            f"the model returned {type(output).__name__}; seethrough reads class scores from a "
            "tensor, a tuple whose first item is a tensor, or an object with .logits — or pass "
            "target=a callable that picks one score per image from the output"
        )
    if scores.dim() != 2:
        raise InvalidInputError(
            f"the model's class scores have shape {tuple(scores.shape)}, not (N, classes); "
            "pass target=a callable that picks one score per image from the output"
        )
    return scores


@dataclass(frozen=True)
class Target:
    """A parsed target. ``indices`` is set for fixed classes, ``k`` for top-k.

    ``in_range`` marks indices read off the model's own output (argmax, top-k, or a
    pass that already checked them): they need no range check. Other fixed indices
    are checked once, on the first pass, not on every chunk — the check reads the
    indices on the host, which on an accelerator would stall every chunk.
    """

    kind: str  # "predicted" | "fixed" | "topk" | "callable"
    indices: Tensor | None = None
    k: int = 1
    fn: Callable[[Any], Tensor] | None = None
    in_range: bool = False
    labels: int | None = None  # how many class labels the caller gave, checked on a pass
    # the checked indices on each device a pass ran on (filled by ``select``)
    _placed: dict[torch.device, Tensor] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def is_lazy(self) -> bool:
        """True when the classes can be read off the same forward pass that is explained."""
        return self.kind in ("predicted", "fixed", "callable")

    def check_range(self, classes: int) -> None:
        """Raise :class:`TargetError` if a fixed index or k does not fit ``classes``."""
        if self.indices is not None and self.indices.numel():
            bad = (self.indices < 0) | (self.indices >= classes)
            if bad.any():
                raise TargetError(
                    f"target {int(self.indices[bad][0])} is out of range: the model has "
                    f"{classes} classes (valid targets are 0 to {classes - 1})"
                )
        if self.kind == "topk" and self.k > classes:
            raise TargetError(f"top{self.k} asks for more classes than the model has ({classes})")

    def select(self, output: Any, rows: slice) -> tuple[Tensor, Tensor]:
        """Scores ``(n,)`` and class indices ``(n,)`` for the given rows of a pass.

        Callable targets give index ``-1``. Fixed indices are range-checked and moved
        to the output's device on the first call only.
        """
        if self.fn is not None:
            scores = self.fn(output)
            n = rows.stop - rows.start
            if not isinstance(scores, Tensor) or scores.shape != (n,):
                shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
                raise TargetError(
                    f"the target callable returned {shape}; it must return one score per "
                    f"image, a tensor of shape ({n},)"
                )
            return scores, torch.full((n,), -1, dtype=torch.long, device=scores.device)
        logits = logits_of(output)
        if self.labels is not None and logits.shape[1] != self.labels:
            raise TargetError(
                f"the labels name {self.labels} classes but the model outputs "
                f"{logits.shape[1]} class scores; give one label per class, in the order of "
                "the model's outputs"
            )
        if self.indices is None:
            indices = logits.detach().argmax(dim=1)
        else:
            indices = self._placed_on(logits.device, logits.shape[1])[rows]
        return logits.gather(1, indices[:, None])[:, 0], indices

    def _placed_on(self, device: torch.device, classes: int) -> Tensor:
        """The indices on ``device``, range-checked against ``classes`` the first time."""
        placed = self._placed.get(device)
        if placed is None:
            assert self.indices is not None
            if not self.in_range:
                self.check_range(classes)
            placed = self._placed[device] = self.indices.to(device)
        return placed

    def indices_or_unknown(self, n: int, device: torch.device | None = None) -> Tensor:
        """The fixed class of each of ``n`` rows, ``-1`` where it is not a class index."""
        if self.indices is None:
            return torch.full((n,), -1, dtype=torch.long, device=device)
        return self.indices.to(device)

    def fixed(self, indices: Tensor) -> Target:
        """The same target with its classes resolved to ``indices`` (one per row).

        ``indices`` must come from the model's output or from a target that was checked
        against it (a pass's ``select``, argmax, top-k, or a subset of those): they are
        not range-checked again.
        """
        if self.fn is not None:
            return self
        return Target("fixed", indices=indices.detach().long(), in_range=True, labels=self.labels)


def _index(value: Any, labels: Sequence[str] | None) -> int:
    if isinstance(value, bool):
        raise TargetError(f"target {value!r} is a boolean; give a class index or name")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int):
        if value < 0:
            raise TargetError(f"target {value} is negative; class indices start at 0")
        if value >= 2**63:
            raise TargetError(f"target {value} is out of range: no model has that many classes")
        return value
    if isinstance(value, str):
        if labels is None:
            raise TargetError(
                f"target {value!r} is a class name, but the model has no class labels; "
                "give a class index or pass labels= (CLI: --labels FILE)"
            )
        if value in labels:
            return list(labels).index(value)
        lowered = [name.lower() for name in labels]
        if value.lower() in lowered:
            return lowered.index(value.lower())
        hint = suggest(value, labels) or (
            f"; give a class index 0–{len(labels) - 1} or one of the {len(labels)} names "
            "in the labels"
        )
        raise TargetError(f"unknown class name {value!r}{hint}")
    raise TargetError(f"target {value!r} ({type(value).__name__}) is not a class index or name")


def parse_target(target: TargetLike, n: int, labels: Sequence[str] | None = None) -> Target:
    """Turn a user's ``target`` into a :class:`Target` for a batch of ``n`` images.

    With ``labels``, every pass also checks that the model has one class score per label.
    """
    parsed = _parse(target, n, labels)
    if labels is None or parsed.fn is not None:
        return parsed
    return dataclasses.replace(parsed, labels=len(labels))


def _parse(target: TargetLike, n: int, labels: Sequence[str] | None) -> Target:
    if target is None or (isinstance(target, str) and target == "predicted"):
        return Target("predicted")
    if isinstance(target, str) and (match := _TOPK.fullmatch(target)):
        k = int(match.group(1))
        if k < 1:
            raise TargetError("top-k needs k ≥ 1, e.g. target='top3'")
        return Target("topk", k=k)
    if callable(target) and not isinstance(target, (Tensor, str)):
        return Target("callable", fn=target)
    if isinstance(target, Tensor) and target.dim() == 0 and not target.dtype.is_floating_point:
        target = int(target)
    if isinstance(target, (int, str)):
        return Target("fixed", indices=torch.full((n,), _index(target, labels), dtype=torch.long))
    if isinstance(target, Tensor):
        if target.dtype.is_floating_point or target.dtype == torch.bool or target.dim() > 1:
            raise TargetError(
                f"a target tensor must be 1-D integer class indices; got {target.dtype} "
                f"with shape {tuple(target.shape)}"
            )
        values: list[Any] = target.reshape(-1).tolist()
    elif isinstance(target, Sequence):
        values = list(target)
    else:
        raise TargetError(
            f"target {target!r} is not understood; use None/'predicted', a class index or name, "
            "one per image, 'topK', or a callable"
        )
    if len(values) != n:
        raise TargetError(f"got {len(values)} targets for {n} images; give one per image")
    return Target("fixed", indices=torch.tensor([_index(v, labels) for v in values]))
