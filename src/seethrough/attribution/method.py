"""The method interface, the registry of names, and what a method returns.

A method is a frozen dataclass whose fields are its options, each declared with
:func:`~seethrough.errors.option` and the check its values must pass; it sets
``name`` and implements :meth:`Method.attribute_rows`, and :func:`register` makes it
available by name. :func:`~seethrough.attribution.api.explain` does the rest.

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
nonfinite
    ``"raise"`` (default): a NaN or infinite target score, gradient or map raises
    :class:`~seethrough.errors.NonFiniteError` naming the rows and the step;
    ``"warn"``: a warning, and the rows are listed in the result's ``nonfinite_rows``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from torch import Tensor

from ..core.targets import Target
from ..errors import check_options
from .explanation import Details, Explanation, freeze_settings
from .run import PassContext, PassNeeds

__all__ = ["METHODS", "Attribution", "Method", "MethodKind", "method_names", "register"]

MethodKind = Literal["method", "control"]

METHODS: dict[str, type[Method]] = {}
"""Every registered method and control, by name, in registration order."""


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available by its ``name``."""
    METHODS[cls.name] = cls
    return cls


def method_names(include_controls: bool = False) -> tuple[str, ...]:
    """The registered attribution methods' names, in registration order; with
    ``include_controls``, the controls too (``edge_detector``, ``random_noise``:
    baselines for the sanity checks that ignore the model)."""
    return tuple(name for name, cls in METHODS.items() if include_controls or cls.kind == "method")


@dataclass(frozen=True)
class Attribution:
    """What a method computes for its rows, before it becomes an :class:`Explanation`.

    ``values`` are the attributions, ``scores`` and ``indices`` each row's target score
    and class on the clean input; ``predicted`` the rows' top classes when the method
    ran a pass over the rows themselves; ``details`` the method's own result fields,
    of the :class:`Details` type its ``result_type`` inherits.
    """

    values: Tensor
    scores: Tensor
    indices: Tensor
    predicted: Tensor | None = None
    details: Details | None = None


@dataclass(frozen=True, kw_only=True)
class Method(abc.ABC):
    """An attribution method: its options are the dataclass fields.

    Subclasses set ``name``, declare each option with
    :func:`~seethrough.errors.option` and implement :meth:`attribute_rows`; checks that
    involve several options go into :meth:`validate`. ``explain`` does the rest (the
    model guard, targets, results).
    """

    name: ClassVar[str]
    kind: ClassVar[MethodKind] = "method"
    resolution: ClassVar[Literal["input", "layer"]] = "input"
    display: ClassVar[Literal["signed", "magnitude"]] = "signed"
    result_type: ClassVar[type[Explanation]] = Explanation
    passes_per_row: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__post_init__" in vars(cls):  # it would skip the option checks below
            raise TypeError(
                f"{cls.__name__} defines __post_init__; put checks between options in "
                "validate() (each option's own check goes in its option(...) declaration)"
            )

    def __post_init__(self) -> None:
        check_options(self.name, self)
        self.validate()

    def validate(self) -> None:
        """Checks between options, after each option passed its own declared check
        (raise :class:`~seethrough.errors.InvalidOptionError`); none by default."""
        return

    @abc.abstractmethod
    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        """Attributions for every row of ``x`` (already validated, targets parsed)."""

    def clean_pass_needs(self, ctx: PassContext, x: Tensor) -> PassNeeds | None:
        """What this method reads from :meth:`PassContext.clean_pass`, or ``None`` when
        it makes passes of its own."""
        return None

    def planned_rows(self, n: int) -> int:
        """Rows this method runs through the model for ``n`` input rows (for progress)."""
        return n * self.passes_per_row

    def nonfinite_hint(self) -> str:
        """What in this method's options can make its numbers non-finite, and the fix: a
        clause added to the :class:`~seethrough.errors.NonFiniteError` it raises ("" for
        none)."""
        return ""

    @property
    def settings(self) -> Mapping[str, Any]:
        """The options as used, read-only (tensors described, not copied)."""
        return freeze_settings({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
