"""The pass context of one ``explain`` call: the guarded model, the budget, seeds,
progress, the clean pass that methods share, and the check for non-finite numbers.

Methods receive a :class:`PassContext` in ``Method.attribute_rows`` and run every pass
through it (or through :mod:`seethrough.core.passes` with its ``model`` and ``budget``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..core.budget import Budget, Progress
from ..core.guard import finite_rows
from ..core.passes import Chunk, backward_chunks, forward_scores
from ..core.targets import Target
from ..errors import NonFiniteError, one_of

__all__ = [
    "NONFINITE_MODES",
    "CleanPass",
    "Gradients",
    "NonFiniteMode",
    "PassContext",
    "PassNeeds",
    "Resolved",
    "nonfinite_rows",
]

NonFiniteMode = Literal["raise", "warn"]
NONFINITE_MODES = one_of("raise", "warn")
"""What a call does when a score, gradient or map is NaN or infinite: raise
:class:`~seethrough.errors.NonFiniteError` (default), or warn and mark the rows."""


@dataclass(frozen=True)
class PassNeeds:
    """What a method reads from the clean pass: the input gradient, and/or one
    layer's activation and gradient (``layer`` is its name)."""

    input_grad: bool
    layer: str | None = None


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

    def covers(self, x: Tensor, target: Target, needs: PassNeeds) -> bool:
        """Whether this pass has what ``needs`` asks for, for these rows and target."""
        return (
            x is self.x
            and target is self.target
            and (not needs.input_grad or self.input_grad is not None)
            and (needs.layer is None or needs.layer == self.layer)
        )


@dataclass(frozen=True)
class Gradients:
    """d(score)/d(input) of a pass's rows, with their scores and classes."""

    values: Tensor
    scores: Tensor
    indices: Tensor


class Resolved(NamedTuple):
    """The target with each row's class fixed on the clean input, the clean scores, and
    the top classes when the target was ``"predicted"`` (else ``None``)."""

    target: Target
    scores: Tensor
    predicted: Tensor | None


def nonfinite_rows(*tensors: Tensor | None) -> list[int]:
    """The rows (first dimension) where any of ``tensors`` holds NaN or ±inf.

    One reduction per tensor and one device-to-host sync in all; the row list is
    built only when something is not finite."""
    present = [t for t in tensors if t is not None and t.numel()]
    if not present:
        return []
    finite = torch.stack([finite_rows(t) for t in present]).all(0)
    if bool(finite.all()):
        return []
    return (~finite).nonzero()[:, 0].tolist()


class PassContext:
    """The state of one ``explain`` call: the guarded model, the budget, seeds, the
    progress plan, the shared clean pass and the non-finite policy.

    Progress: ``explain_all`` plans each method's :meth:`Method.planned_rows`; a
    method that learns its size only while it runs (a CAM's channel count, an
    adaptive grid) says so with :meth:`plan_more_rows` or :meth:`plan_rows_ahead`.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        seed: int,
        batch_size: int | None,
        progress: Progress | None,
        layout: str = "auto",
        nonfinite: NonFiniteMode = "raise",
    ) -> None:
        self.model = model
        self.device = device
        self.seed = seed
        self.budget = Budget(batch_size, device, on_rows=self._advance, layout=layout)
        self.nonfinite = nonfinite
        # the LoadedModel's preprocessing (mean/std), when the call has one: LRP's box bounds
        self.input_transform: object = None
        self.method = ""  # the method being run, for messages
        self.hint = ""  # its Method.nonfinite_hint(), for the non-finite error
        self.shared: CleanPass | None = None
        self._planned = 1
        self._rows_done = 0
        self._progress = progress
        self._findings: list[str] = []
        self._finite: list[tuple[Tensor, int]] = []  # checked, unchanged since: (tensor, version)

    # ------------------------------------------------------------- progress plan

    def plan_rows(self, rows: int) -> None:
        """Set the rows the whole call plans to run (``explain_all`` does this once)."""
        self._planned = max(1, rows)

    def plan_more_rows(self, rows: int) -> None:
        """Add ``rows`` that the running method will run beyond its ``planned_rows``."""
        self._planned += rows

    def plan_rows_ahead(self, rows: int) -> None:
        """Make sure at least ``rows`` more rows are planned from now on (for a method
        that decides as it goes, such as the adaptive integrated-gradients grid)."""
        self._planned = max(self._planned, self._rows_done + rows)

    def progress_mark(self) -> tuple[int, int]:
        """The rows done and planned so far (for :meth:`settle`)."""
        return self._rows_done, self._planned

    def settle(self, mark: tuple[int, int], share: int) -> None:
        """After a method that was planned ``share`` rows (plus what it added while it
        ran, since ``mark``), make the plan match the rows it did run, so that a method
        that stopped early (the adaptive integrated-gradients grid) leaves no gap and
        the bar ends at 100 %."""
        done, planned = mark
        unused = (share + self._planned - planned) - (self._rows_done - done)
        if unused == 0:
            return
        self._planned = max(1, self._planned - unused)
        if self._progress is not None:
            self._progress(min(self._rows_done, self._planned), self._planned)

    def _advance(self, rows: int) -> None:
        self._rows_done += rows
        if self._progress is not None:
            self._progress(min(self._rows_done, self._planned), self._planned)

    # ------------------------------------------------------------- non-finite numbers

    def check_finite(self, what: str, step: str, *tensors: Tensor | None) -> None:
        """Refuse (or note, with ``nonfinite="warn"``) rows of ``tensors`` that are NaN
        or infinite: ``what`` is the quantity, ``step`` the pass it came from."""
        rows = nonfinite_rows(*tensors)
        if not rows:
            self._finite.extend((t, _version(t)) for t in tensors if t is not None)
        self._report(what, step, rows)

    def unchecked(self, *tensors: Tensor | None) -> list[Tensor | None]:
        """``tensors`` less those a check of this call found finite and that have not
        been changed in place since (a method returning the shared pass's scores or
        gradient as they are is not checked twice)."""
        return [
            t
            for t in tensors
            if t is None or not any(t is k and _version(t) == v >= 0 for k, v in self._finite)
        ]

    def _report(self, what: str, step: str, rows: list[int]) -> None:
        if not rows:
            return
        found = f"{what} is not finite (NaN or inf) for rows {_listed(rows)} on {step}"
        if self.nonfinite == "raise":
            prefix = f"{self.method}: " if self.method else ""
            hint = f"{self.hint}; " if self.hint else ""
            raise NonFiniteError(
                f"{prefix}{found}; an explanation of a non-finite score means nothing — "
                f"{hint}check the model and the inputs, or pass nonfinite='warn' (CLI: "
                "--nonfinite warn) to continue with those rows marked in the result's "
                "nonfinite_rows"
            )
        self._findings.append(found)

    def warn_nonfinite(self, rows: list[int]) -> tuple[str, ...]:
        """With ``nonfinite="warn"``: one warning for the method that just ran, naming
        the result's non-finite ``rows`` and every step where a check found one; returns
        those steps (for the result's ``nonfinite_steps``) and forgets them."""
        steps = tuple(dict.fromkeys(self._findings))
        self._findings.clear()
        if not rows and not steps:
            return ()
        warnings.warn(
            f"{self.method}: non-finite numbers: {'; '.join(steps)}; the result lists these "
            f"steps in nonfinite_steps and its non-finite rows {_listed(rows)} in "
            "nonfinite_rows",
            RuntimeWarning,
            stacklevel=5,
        )
        return steps

    # ------------------------------------------------------------- passes

    def generator(self, row: int) -> torch.Generator:
        """The random generator of row ``row``: seeded with ``seed + row``."""
        return torch.Generator(device=self.device).manual_seed(self.seed + row)

    def scores(self, x: Tensor, target: Target, *, step: str) -> tuple[Tensor, Tensor]:
        """Target scores and class indices of the rows ``x`` in a no-grad pass;
        ``step`` names the pass in a non-finite error (e.g. ``"the baselines"``)."""
        scores, indices = forward_scores(
            self.model, lambda a, b: x[a:b], len(x), target, self.budget
        )
        self.check_finite("the model's target score", step, scores)
        return scores, indices

    def resolve(self, x: Tensor, target: Target) -> Resolved:
        """Fix each row's class on the clean input ``x`` (the explained rows, or
        what a wrapping method explains in their place); the clean scores with it."""
        scores, indices = self.scores(x, target, step="the clean forward pass")
        predicted = indices if target.kind == "predicted" else None
        return Resolved(target.fixed(indices), scores, predicted)

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
        needs = PassNeeds(input_grad, name)
        if self.shared is not None and self.shared.covers(x, target, needs):
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
        clean = CleanPass(
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
        self.check_finite("the model's target score", "the clean forward pass", scores)
        self.check_finite(
            "the gradient", "the clean backward pass", grads, clean.activation, clean.layer_grad
        )
        return clean

    def input_gradients(
        self,
        x: Tensor,
        target: Target,
        rule: TorchFunctionMode | None = None,
        rows: Callable[[int, int], Tensor] | None = None,
        total: int | None = None,
        consume: Callable[[Chunk], None] | None = None,
        step: str = "a gradient pass",
    ) -> Gradients:
        """d(score)/d(input) for every row of ``x`` (or of ``rows`` when given).

        With ``consume`` each chunk goes to it instead of being kept (the returned
        values are empty). Scores and gradients are checked for non-finite numbers:
        one reduction per chunk, one sync per pass."""
        n = len(x) if total is None else total
        grads = torch.empty_like(x) if consume is None else x.new_empty(0)
        scores = x.new_empty(n)
        indices = torch.empty(n, dtype=torch.long, device=x.device)
        finite = torch.ones(n, dtype=torch.bool, device=x.device)

        def keep(chunk: Chunk) -> None:
            assert chunk.input_grad is not None
            scores[chunk.start : chunk.stop] = chunk.scores
            indices[chunk.start : chunk.stop] = chunk.indices
            finite[chunk.start : chunk.stop] = finite_rows(chunk.input_grad)
            if consume is None:
                grads[chunk.start : chunk.stop] = chunk.input_grad
            else:
                consume(chunk)

        make = rows if rows is not None else (lambda a, b: x[a:b])
        backward_chunks(self.model, make, n, target, self.budget, keep, rule=rule)
        self.check_finite("the model's target score", step, scores)
        if not bool(finite.all()):  # the pass's one sync for its gradients
            self._report("the input gradient", step, (~finite).nonzero()[:, 0].tolist())
        return Gradients(grads, scores, indices)


def _version(t: Tensor) -> int:
    """The tensor's in-place version counter; -1 for an inference tensor (none kept)."""
    try:
        return int(t._version)
    except RuntimeError:
        return -1


def _listed(rows: list[int], most: int = 10) -> str:
    """``[0, 2, 5]``, or the first ``most`` and a count."""
    if len(rows) <= most:
        return str(rows)
    return f"{rows[:most]}".rstrip("]") + f", … ({len(rows)} rows)]"
