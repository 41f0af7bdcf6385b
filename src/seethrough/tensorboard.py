"""Explanations during training, as TensorBoard events: :class:`ExplanationLogger`.

>>> logger = st.tensorboard.ExplanationLogger(model, fixed_images, ["gradient", "grad_cam"],
...                                           "runs/train", every=100)
>>> for step, (x, y) in enumerate(loader):
...     ...  # the usual forward, backward, optimizer step
...     logger(step)  # explains the fixed images at steps 0, 100, 200, ...

The model's training is not disturbed: see :class:`ExplanationLogger`. The ``tensorboard``
package is an optional extra (``pip install "seethrough[tensorboard]"``). A finished
report's events are written by :func:`seethrough.reporting.tensorboard.write_events`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .attribution import Explanation, Method, explain, make_method
from .attribution.api import route_options
from .core.budget import Budget
from .core.guard import check_inputs, guarded, model_device, unwrap_model
from .core.passes import forward_logits
from .core.targets import TargetLike, parse_target
from .errors import InvalidOptionError, check_option, integer, text
from .reporting.tensorboard import summary_writer
from .viz import display_images, heat_values, overlay, scale_for_display

__all__ = ["ExplanationLogger"]


class ExplanationLogger:
    """Explain fixed images every ``every`` steps of a training loop; log the maps.

    At each logged step, for every method and every image ``i``, it writes:

    * ``<tag>/overlay/<method>/<i>`` — the map over the image (image);
    * ``<tag>/attribution/<method>/<i>`` — the raw channel-summed map at the method's
      own resolution (histogram), signed or as magnitudes as the method displays it;
    * ``<tag>/scale/<method>/<i>`` — the overlay's colour scale (scalar): the 99.5th
      percentile of the map's absolute values. Each overlay is scaled by its own
      value, so colours compare across steps only through this scalar;
    * ``<tag>/score/<i>`` — the model's score (logit) for the explained class (scalar).

    The training is not disturbed. For the explanation every module's ``training``
    flag is set to ``False`` (the model as it predicts: batch-norm uses its running
    statistics and does not update them, dropout is off) and each flag is put back
    afterwards — directly, without calling the modules' ``train()`` — also when the
    explanation raises. This deliberately differs from :func:`seethrough.explain`,
    which refuses a model in training mode: here switching is what the user asked for.
    Parameters and ``.grad`` are untouched (the explanation runs with parameter
    gradients off; see :func:`seethrough.core.guard.guarded`), no hook stays, and the
    random state of torch (CPU and the model's CUDA device), NumPy and Python's
    ``random`` is restored. Explanations run in full precision even when the logger
    is called inside ``torch.autocast``.

    Parameters
    ----------
    model : nn.Module or LoadedModel
        The model being trained (a ``LoadedModel``'s preprocessing inverts the images
        for display; otherwise each image is min-max scaled for display).
    images : Tensor
        The fixed model inputs ``(N, C, H, W)``, as the model takes them (on any
        device). A copy is kept on the model's device, and follows the model if it moves.
    methods : str, Method or a sequence of them
        As for :func:`seethrough.explain`.
    writer : SummaryWriter-like, str or path
        Anything with ``add_image``, ``add_histogram`` and ``add_scalar`` (e.g. the
        training loop's own ``torch.utils.tensorboard.SummaryWriter``), or a folder:
        then the logger creates a ``SummaryWriter`` there and :meth:`close` closes it.
    every : int
        Log at the steps that are multiples of ``every`` (``logger(step)``).
    target : TargetLike
        The classes explained, as for :func:`seethrough.explain` (default: each image's
        predicted class at that step). Give the true classes to follow one class.
        Class indices are checked at construction against the model's classes (one
        forward pass of the first image, in prediction mode).
    seed : int
        The explanations' seed (the same at every step, so maps change only with the model).
    tag : str
        The prefix of every tag.
    **options
        The methods' options, as for :func:`seethrough.explain` (checked here, at once).

    Raises
    ------
    InvalidOptionError, InvalidInputError, TargetError
        Unknown methods or options, a bad ``every``, ``tag`` or ``target``, or images the
        model cannot take (named, with the fix).
    SeethroughError
        ``writer`` is a folder and the ``tensorboard`` package is missing.
    """

    def __init__(
        self,
        model: nn.Module | Any,
        images: Tensor,
        methods: str | Method | Sequence[str | Method],
        writer: Any,
        every: int = 100,
        *,
        target: TargetLike = None,
        seed: int = 0,
        tag: str = "explanations",
        **options: Any,
    ) -> None:
        check_option("ExplanationLogger", "every", every, integer(at_least=1))
        check_option("ExplanationLogger", "seed", seed, integer(at_least=None))
        check_option("ExplanationLogger", "tag", tag, text())
        if not tag.strip("/"):
            raise InvalidOptionError(
                "tag is empty; give a prefix for the tags, e.g. 'explanations'"
            )
        self.model = model
        self.module, labels, self.transform = unwrap_model(model)
        device = model_device(self.module)
        if isinstance(images, Tensor) and device is not None:
            images = images.to(device)  # checked where the model is
        self.images = check_inputs(images, self.module)
        self.methods: list[str | Method] = (
            [methods] if isinstance(methods, (str, Method)) else list(methods)
        )
        _check_methods(self.methods, options)
        parsed = parse_target(target, len(self.images), labels)  # fails here, not later
        if parsed.indices is not None or parsed.kind == "topk":
            parsed.check_range(self._classes())  # without labels: the output's width
        self.every = every
        self.target = target
        self.seed = seed
        self.tag = tag.strip("/")
        self.options = dict(options)
        self._owns_writer = isinstance(writer, (str, os.PathLike))
        self.writer = _open_writer(writer) if self._owns_writer else writer
        _check_writer(self.writer)

    def _classes(self) -> int:
        """The model's number of classes: one forward pass of the first image, in
        prediction mode and without gradients (everything put back, as in :meth:`log`)."""
        x = self.images[:1]
        with _predicting(self.module), guarded(self.module, [x.device]), torch.no_grad():
            logits = forward_logits(self.module, lambda a, b: x[a:b], 1, Budget(None, x.device))
        return int(logits.shape[1])

    def __call__(self, global_step: int) -> list[Explanation] | None:
        """Log at ``global_step`` when it is a multiple of ``every``; the explanations
        logged, or ``None`` at the other steps."""
        check_option("ExplanationLogger", "global_step", global_step, integer(at_least=0))
        if global_step % self.every:
            return None
        return self.log(global_step)

    def log(self, global_step: int) -> list[Explanation]:
        """Explain the fixed images now and write the events at ``global_step``; the
        explanations, one per method (on the CPU)."""
        with _predicting(self.module):
            x = self.images.to(device=model_device(self.module) or self.images.device)
            found = explain(
                self.model, x, self.methods, self.target, seed=self.seed, **self.options
            )
        explanations = [ex.cpu() for ex in found]
        for ex in explanations:
            self._write(ex, global_step)
        for i, score in enumerate(explanations[0].scores.tolist()):
            self.writer.add_scalar(f"{self.tag}/score/{i}", score, global_step)
        flush = getattr(self.writer, "flush", None)
        if flush is not None:
            flush()
        return explanations

    def _write(self, ex: Explanation, step: int) -> None:
        size = (ex.inputs.shape[2], ex.inputs.shape[3])
        raw = heat_values(ex.attributions, ex.display)
        scaled, scale = scale_for_display(heat_values(ex.attributions, ex.display, size))
        pictures = display_images(ex.inputs, self.transform)
        for i in range(len(ex)):
            name = f"{ex.method}/{i}"
            picture = overlay(pictures[i], scaled[i].numpy(), ex.display).clip(0, 1)
            self.writer.add_image(f"{self.tag}/overlay/{name}", picture, step, dataformats="HWC")
            self.writer.add_histogram(f"{self.tag}/attribution/{name}", raw[i].numpy(), step)
            self.writer.add_scalar(f"{self.tag}/scale/{name}", float(scale[i]), step)

    def close(self) -> None:
        """Close the writer when the logger created it (a writer given is the caller's)."""
        if self._owns_writer:
            self.writer.close()

    def __enter__(self) -> ExplanationLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_methods(methods: list[str | Method], options: Mapping[str, Any]) -> None:
    """Fail at construction, not at step 1000: unknown methods or options."""
    if not methods:
        raise InvalidOptionError("no method given; name at least one (e.g. 'gradient')")
    if len(methods) == 1:
        make_method(methods[0], **options)
        return
    for method, routed in zip(methods, route_options(methods, options), strict=True):
        make_method(method, **routed)


def _open_writer(folder: str | os.PathLike[str]) -> Any:
    """A ``SummaryWriter`` into ``folder``; a clear error when it cannot be one."""
    if not str(folder).strip():
        raise InvalidOptionError("writer is an empty folder name; name a folder, e.g. runs/train")
    try:
        return summary_writer(folder)
    except OSError as err:
        raise InvalidOptionError(
            f"cannot write TensorBoard events into {str(folder)!r}: "
            f"{(err.strerror or str(err)).rstrip('.')}; give a folder (e.g. runs/train)"
        ) from None


def _check_writer(writer: Any) -> None:
    missing = [m for m in ("add_image", "add_histogram", "add_scalar") if not hasattr(writer, m)]
    if missing:
        raise InvalidOptionError(
            f"writer {type(writer).__name__} has no {', '.join(missing)}; give a "
            "torch.utils.tensorboard.SummaryWriter or a folder to write into"
        )


@contextmanager
def _predicting(module: nn.Module) -> Iterator[None]:
    """Every module in eval mode, autocast off, NumPy's and Python's random state kept;
    all put back in ``finally`` (torch's RNG is forked by the explanation itself)."""
    flags = [(m, m.training) for m in module.modules()]
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    device = model_device(module)
    kind = device.type if device is not None else "cpu"
    try:
        for m, _ in flags:
            m.training = False
        with torch.autocast(kind, enabled=False):
            yield
    finally:
        for m, flag in flags:
            m.training = flag
        np.random.set_state(numpy_state)
        random.setstate(python_state)
