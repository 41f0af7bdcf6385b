"""Gradient analysis per module: how sensitive is the decision to each module?

For a labelled dataset and each chosen module, with ``objective`` the per-image
cross-entropy loss (default) or the true class's score (logit):

* ``output_grad`` — the mean over images of ‖∂objective/∂output‖ (per image: images do
  not interact in eval mode, so the gradient of the summed objective holds each image's
  own gradient);
* ``param_grad`` — the norm of the dataset-mean gradient with respect to the module's own
  parameters, and ``relative_param_grad`` = that norm / the parameters' norm (a
  learning-rate-free measure of how much the objective pulls on the module);
* ``grad_x_activation`` — per channel, the mean over images of Σ (∂objective/∂a)·a over
  the channel's positions: the first-order (Taylor) estimate of how much the objective
  changes when the channel is set to zero is its negative (Molchanov et al. 2017).

Each comes overall and per class (the mean over the images of that class). Gradients
are taken with ``torch.autograd.grad``: no ``.grad`` is filled, and every flag is
restored (``guarded``).

A dataset too large for memory is given as an :class:`~seethrough.data.ImageSource` of
model inputs (:func:`seethrough.core.datasets.model_source`). Its labels are read first
(without decoding: an O(N) integer list), then its images are streamed class by class in
chunks of ``batch_size`` — the chunks the tensor path cuts — through one ``DataLoader``
(workers decode while the model computes). Memory: one chunk, the per-class sums and one
parameter-sized buffer, whatever the dataset's size. Unreadable images are skipped,
counted (``GradientAnalysis.skipped``) and logged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..core.guard import guarded, unwrap_model
from ..core.hooks import HookSet, LayerCapture
from ..core.layers import find_layer
from ..data.sources import ImageSource, collate_items
from ..errors import InvalidOptionError, TargetError
from .ablation import (
    DEFAULT_ROWS,
    Skips,
    check_labelled,
    check_source,
    model_device,
    unlabelled_error,
)

__all__ = ["OBJECTIVES", "GradientAnalysis", "ModuleGradients", "gradient_analysis"]

OBJECTIVES = ("loss", "score")


@dataclass(frozen=True, eq=False)
class ModuleGradients:
    """One module's sensitivity (module docstring); ``class_*`` are ``(classes,)`` or
    ``(classes, C)``, NaN for classes without images."""

    name: str
    output_grad: float
    class_output_grad: Tensor
    param_grad: float | None
    class_param_grad: Tensor | None
    relative_param_grad: float | None
    grad_x_activation: Tensor
    class_grad_x_activation: Tensor


@dataclass(frozen=True, eq=False)
class GradientAnalysis:
    """Per module, its :class:`ModuleGradients`, in the order given."""

    objective: str
    modules: tuple[ModuleGradients, ...]
    class_counts: Tensor
    seconds: float
    skipped: int = 0
    """Images of a source that could not be read (not analysed); 0 for tensors."""

    def module(self, name: str) -> ModuleGradients:
        for m in self.modules:
            if m.name == name:
                return m
        names = ", ".join(m.name for m in self.modules)
        raise InvalidOptionError(f"no module {name!r} in this analysis ({names})")

    def ranking(self, key: str = "output_grad") -> list[str]:
        """Module names from the most sensitive to the least, by ``key``
        (``"output_grad"``, ``"param_grad"`` or ``"relative_param_grad"``)."""
        if key not in ("output_grad", "param_grad", "relative_param_grad"):
            raise InvalidOptionError(
                f"unknown key {key!r} (valid: output_grad, param_grad, relative_param_grad)"
            )
        rated = [(getattr(m, key), m.name) for m in self.modules]
        return [name for value, name in sorted(rated, key=lambda t: -(t[0] or 0.0))]


def parametrised_modules(model: nn.Module) -> list[str]:
    """Names of the modules that hold parameters of their own, in registration order."""
    return [
        name
        for name, m in model.named_modules()
        if name and any(True for _ in m.parameters(recurse=False))
    ]


class _Sums:
    """Running per-class sums for one module."""

    def __init__(self, classes: int, channels: int) -> None:
        self.out = torch.zeros(classes, dtype=torch.float64)
        self.gxa = torch.zeros(classes, channels, dtype=torch.float64)
        self.param_norms = torch.zeros(classes, dtype=torch.float64)
        self.param_total: list[Tensor] | None = None
        self.param_class: list[Tensor] | None = None


def _check_label_range(labels: Tensor, classes: int) -> None:
    if bool((labels < 0).any()):
        bad = int(labels[labels < 0][0])
        raise TargetError(
            f"label {bad} is out of range: class indices are 0 to {classes - 1} (the model "
            f"has {classes} classes)"
        )
    if bool((labels >= classes).any()):
        bad = int(labels[labels >= classes][0])
        raise TargetError(
            f"label {bad} is out of range: the model has {classes} classes (labels 0 to "
            f"{classes - 1})"
        )


def _objective(logits: Tensor, labels: Tensor, objective: str) -> Tensor:
    if objective == "loss":
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        return F.cross_entropy(logits, labels, reduction="none")
    return logits.gather(1, labels[:, None])[:, 0]


def gradient_analysis(
    model: nn.Module | Any,
    inputs: Tensor | ImageSource,
    labels: Tensor | None = None,
    modules: Sequence[str] | None = None,
    *,
    objective: str = "loss",
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    num_workers: int = 0,
) -> GradientAnalysis:
    """Gradient sensitivity of each module over a labelled dataset (module docstring).

    ``inputs``/``labels``: ``(N, C, H, W)`` inputs and ``(N,)`` class indices, or an
    :class:`~seethrough.data.ImageSource` of model inputs with its own labels and
    ``labels=None`` (streamed; ``num_workers`` ``DataLoader`` processes decode it).
    ``modules``: dotted names (default: every module with parameters of its own).
    Images are processed class by class, so that per-class parameter gradients need one
    parameter-sized buffer, not one per class.
    """
    started = time.perf_counter()
    if objective not in OBJECTIVES:
        raise InvalidOptionError(
            f"unknown objective {objective!r} (valid: {', '.join(OBJECTIVES)})"
        )
    module = unwrap_model(model, None)[0]
    if isinstance(inputs, ImageSource):
        check_source(inputs, labels, "gradient_analysis")
        y = source_labels(inputs, "gradient_analysis")
        device = model_device(module)
    else:
        x, y = check_labelled(inputs, labels, module)
        device = x.device
    names = list(modules) if modules is not None else parametrised_modules(module)
    if not names:
        raise InvalidOptionError("no module to analyse; name at least one")
    layers = [find_layer(module, n) for n in names]
    rows = batch_size or DEFAULT_ROWS
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, len(y))

    skips = Skips("gradient_analysis", advance)
    with guarded(module, [device]):
        first = x[:1] if not isinstance(inputs, ImageSource) else _first_input(inputs, device)
        classes = _classes(module, first)
        _check_label_range(y, classes)
        counts = torch.zeros(classes, dtype=torch.int64)
        sums: list[_Sums | None] = [None] * len(names)
        params = [list(layer.parameters(recurse=False)) for layer in layers]
        for group in params:
            for p in group:
                p.requires_grad_(True)  # restored by guarded
        chunks = (
            _tensor_chunks(x, y, classes, rows)
            if not isinstance(inputs, ImageSource)
            else _source_chunks(inputs, y, classes, rows, device, skips, num_workers)
        )
        _accumulate(chunks, module, names, layers, params, objective, sums, counts, advance)
    if int(counts.sum()) == 0:
        assert isinstance(inputs, ImageSource)
        raise skips.nothing_read(inputs)
    skips.warn()
    results = tuple(_finish(name, s, group, counts) for name, s, group in zip(names, sums, params))
    return GradientAnalysis(
        objective, results, counts, time.perf_counter() - started, skipped=skips.count
    )


def _accumulate(
    chunks: Iterator[tuple[int, Tensor, Tensor]],
    module: nn.Module,
    names: Sequence[str],
    layers: Sequence[nn.Module],
    params: Sequence[list[nn.Parameter]],
    objective: str,
    sums: list[_Sums | None],
    counts: Tensor,
    advance: Callable[[int], None],
) -> None:
    """Feed the chunks (class by class) to :func:`_chunk`, closing each class after its
    last chunk; ``counts`` gets the images of each class analysed."""
    current: int | None = None
    class_sums: list[list[Tensor] | None] = [None] * len(names)
    for c, x, y in chunks:
        if c != current:
            if current is not None:
                _close_class(current, class_sums, sums, int(counts[current]))
            current, class_sums = c, [None] * len(names)
        if not len(x):
            continue
        _chunk(module, x, y, names, layers, params, objective, len(counts), sums, class_sums)
        counts[c] += len(x)
        advance(len(x))
    if current is not None:
        _close_class(current, class_sums, sums, int(counts[current]))


def source_labels(source: ImageSource, what: str) -> Tensor:
    """The ``(N,)`` int64 labels of ``source`` from its records (no image is decoded,
    except by a Python dataset, which must load an item to know its label); raises
    :class:`InvalidInputError` naming the first unlabelled image."""
    labels = torch.tensor([source.record(i)[1] for i in range(len(source))], dtype=torch.int64)
    if bool((labels < 0).any()):
        raise unlabelled_error(what, source, source.record(int(labels.argmin()))[0])
    return labels


def _first_input(source: ImageSource, device: torch.device) -> Tensor:
    """The first readable image of ``source``, ``(1, C, H, W)`` on ``device`` (it tells
    the model's number of classes before any class is streamed)."""
    for index in range(len(source)):
        item = source[index]
        if item.pixels is not None:
            return item.pixels[None].to(device)
    skips = Skips("gradient_analysis")
    skips([item])
    raise skips.nothing_read(source)


def _tensor_chunks(
    x: Tensor, y: Tensor, classes: int, rows: int
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """``(class, inputs, labels)``: each class's images in chunks of ``rows``."""
    for c in range(classes):
        members = (y == c).nonzero()[:, 0]
        for start in range(0, len(members), rows):
            index = members[start : start + rows]
            yield c, x[index], y[index]


def _source_chunks(
    source: ImageSource,
    labels: Tensor,
    classes: int,
    rows: int,
    device: torch.device,
    skips: Skips,
    num_workers: int,
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """The chunks of :func:`_tensor_chunks` read from ``source``: one ``DataLoader``
    whose batches are the chunks (unreadable images dropped from them, counted in
    ``skips``; a chunk may come back empty)."""
    plan: list[list[int]] = []
    owners: list[int] = []
    for c in range(classes):
        members = (labels == c).nonzero()[:, 0].tolist()
        for start in range(0, len(members), rows):
            plan.append(members[start : start + rows])
            owners.append(c)
    loader = DataLoader(
        source,
        batch_sampler=plan,
        collate_fn=collate_items,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0),  # the caller's random state is not used
    )
    for c, batch in zip(owners, loader):
        if batch.failed:
            skips(batch.failed)
        yield c, batch.inputs.to(device), batch.labels.to(device)


def _classes(module: nn.Module, row: Tensor) -> int:
    from ..core.targets import logits_of

    with torch.inference_mode():
        return int(logits_of(module(row)).shape[1])


def _chunk(
    module: nn.Module,
    x: Tensor,
    y: Tensor,
    names: Sequence[str],
    layers: Sequence[nn.Module],
    params: Sequence[list[nn.Parameter]],
    objective: str,
    classes: int,
    sums: list[_Sums | None],
    class_sums: list[list[Tensor] | None],
) -> None:
    from ..core.targets import logits_of

    with HookSet() as hooks:
        captures = [LayerCapture(m, n, cut=False).attach(hooks) for n, m in zip(names, layers)]
        value = _objective(logits_of(module(x)), y, objective)
    acts = []
    for cap in captures:
        if cap.activation is None:
            from ..errors import LayerError

            raise LayerError(f"module {cap.name!r} did not run in the forward pass")
        acts.append(cap.activation)
    flat_params = [p for group in params for p in group]
    grads = torch.autograd.grad(value.sum(), [*acts, *flat_params], allow_unused=True)
    act_grads, param_grads = grads[: len(acts)], list(grads[len(acts) :])
    c = int(y[0])
    for k, (a, grad) in enumerate(zip(acts, act_grads)):
        a = a.detach()  # noqa: PLW2901
        g = torch.zeros_like(a) if grad is None else grad.detach()
        s = sums[k]
        if s is None:
            s = sums[k] = _Sums(classes, a.shape[1] if a.dim() > 1 else 1)
        s.out[c] += g.reshape(len(a), -1).norm(dim=1).double().sum().cpu()
        gxa = (g * a).reshape(len(a), a.shape[1], -1).sum(dim=2) if a.dim() > 1 else g * a
        s.gxa[c] += gxa.double().sum(dim=0).cpu().reshape(-1)
        own = [param_grads.pop(0) for _ in params[k]]
        own = [torch.zeros_like(p) if q is None else q for p, q in zip(params[k], own)]
        if own:
            current = class_sums[k]
            class_sums[k] = own if current is None else [u + v for u, v in zip(current, own)]


def _norm(tensors: Sequence[Tensor]) -> float:
    """The L2 norm of several tensors taken as one vector."""
    return float(torch.stack([t.double().pow(2).sum() for t in tensors]).sum().sqrt())


def _close_class(
    c: int, class_sums: list[list[Tensor] | None], sums: list[_Sums | None], count: int
) -> None:
    """Fold one class's parameter-gradient sum into the per-class norms and the total."""
    for s, vec in zip(sums, class_sums):
        if s is None or vec is None:
            continue
        s.param_norms[c] = _norm(vec) / count
        s.param_total = (
            vec if s.param_total is None else [u + v for u, v in zip(s.param_total, vec)]
        )


def _finish(
    name: str, s: _Sums | None, params: list[nn.Parameter], counts: Tensor
) -> ModuleGradients:
    assert s is not None
    n = counts.double()
    present = n > 0
    per = n.clamp_min(1)
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    total = float(n.sum())
    param_grad = relative = None
    class_param = None
    if params:
        class_param = torch.where(present, s.param_norms, nan)
        if s.param_total is not None:
            norm = _norm(s.param_total) / total
            param_grad = norm
            weight = _norm([p.detach() for p in params])
            relative = norm / weight if weight > 0 else None
    return ModuleGradients(
        name=name,
        output_grad=float(s.out.sum() / total),
        class_output_grad=torch.where(present, s.out / per, nan),
        param_grad=param_grad,
        class_param_grad=class_param,
        relative_param_grad=relative,
        grad_x_activation=s.gxa.sum(dim=0) / total,
        class_grad_x_activation=torch.where(present[:, None], s.gxa / per[:, None], nan),
    )
