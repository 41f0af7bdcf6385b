"""One memory budget for every method: passes run in chunks of rows that fit.

A *row* is one input the model sees in a pass: an image, an integration step of an
image, a noisy sample of an image. Methods describe their work as rows; the budget
cuts them into chunks, halves the chunk on out-of-memory and retries (nothing is
accumulated from a failed chunk), and remembers the size that worked.

The budget also chooses the chunks' memory layout. On the CPU, convolutions run
20–30 % faster on channels-last images (measured on EfficientNet-Lite0, forward and
forward+backward, ``benchmarks/RESULTS.md``). Layout is invisible to the model's
arithmetic except for rounding, but a model that calls ``.view`` on a conv output, or
a custom kernel that assumes contiguous memory, would fail or compute garbage. So
``layout="auto"`` verifies once per call: the first chunk of at least
:data:`LAYOUT_PROBE_ROWS` images runs one of its rows both ways, and channels-last is
used only if the model accepts it and the logits agree to ``1e-4`` relative.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import InvalidOptionError

__all__ = ["CPU_ROWS", "LAYOUTS", "LAYOUT_PROBE_ROWS", "Budget", "Progress", "is_out_of_memory"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called as ``progress(rows_done, rows_total)`` after each chunk."""

CPU_ROWS = 16
"""Default rows per pass on CPU (throughput on 2 cores is flat above ~8 rows)."""
GPU_START_ROWS = 32
GPU_MAX_ROWS = 1024
GPU_MEMORY_FRACTION = 0.6
LAYOUTS = ("auto", "channels_last", "contiguous")
LAYOUT_PROBE_ROWS = 8
"""Chunks smaller than this keep their layout: the probe would cost more than it saves."""
LAYOUT_RTOL = 1e-4


def is_out_of_memory(error: BaseException) -> bool:
    """True for the out-of-memory errors of CUDA, MPS and the CPU allocator."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


@dataclass
class Budget:
    """Rows per pass, adapted to memory.

    Parameters
    ----------
    rows : int or None
        Maximum rows per pass. ``None`` picks a size: 16 on CPU; on CUDA it starts at
        32 and, after the first chunk, grows to what fits in 60 % of free memory.
    layout : {"auto", "channels_last", "contiguous"}
        Memory layout of image chunks (see the module's docstring). ``"auto"`` uses
        channels-last on the CPU when verified on the model; ``"contiguous"`` never.
    """

    rows: int | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    on_rows: Callable[[int], None] | None = None
    layout: str = "auto"
    _size: int = 0
    _adaptive: bool = False
    _channels_last: bool | None = None

    def __post_init__(self) -> None:
        if self.rows is not None and (not isinstance(self.rows, int) or self.rows < 1):
            raise InvalidOptionError(f"batch_size must be a positive integer, got {self.rows!r}")
        self._adaptive = self.rows is None and self.device.type == "cuda"
        if self.layout not in LAYOUTS:
            raise InvalidOptionError(
                f"unknown layout {self.layout!r} (valid: {', '.join(LAYOUTS)})"
            )
        if self.layout != "auto":
            self._channels_last = self.layout == "channels_last"
        elif self.device.type != "cpu":
            self._channels_last = False  # measured on CPU only
        if self.rows is not None:
            self._size = self.rows
        else:
            self._size = GPU_START_ROWS if self.device.type == "cuda" else CPU_ROWS

    @property
    def size(self) -> int:
        """The current chunk size."""
        return self._size

    @property
    def channels_last(self) -> bool | None:
        """Whether image chunks run channels-last (``None``: not decided yet)."""
        return self._channels_last

    def arrange(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the chosen memory layout. Call it before attaching hooks or rules:
        the first large chunk may run the model twice on one row to decide."""
        if x.dim() != 4 or not x.is_floating_point():
            return x
        if self._channels_last is None:
            if len(x) < LAYOUT_PROBE_ROWS:
                return x
            self._channels_last = _channels_last_agrees(model, x[:1])
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last else x

    def report_to(self, progress: Progress | None, total: int) -> None:
        """After each chunk :meth:`run` passes, call ``progress(rows_done, total)``
        (nothing when ``progress`` is None)."""
        if progress is None:
            return
        done = [0]

        def on_rows(rows: int) -> None:
            done[0] += rows
            progress(done[0], total)

        self.on_rows = on_rows

    def run(self, total: int, step: Callable[[int, int], None]) -> None:
        """Call ``step(start, stop)`` over ``range(total)`` in chunks that fit in memory."""
        start = 0
        while start < total:
            stop = min(total, start + self._size)
            baseline = self._memory_mark()
            try:
                step(start, stop)
            except Exception as error:
                if not is_out_of_memory(error) or stop - start == 1:
                    raise
                self._size = max(1, (stop - start) // 2)
                self._adaptive = False
                log.warning(
                    "out of memory at %d rows per pass; retrying with %d", stop - start, self._size
                )
                self._release()
                continue
            self._grow(stop - start, baseline)
            if self.on_rows is not None:
                self.on_rows(stop - start)
            start = stop

    def _memory_mark(self) -> int:
        if not self._adaptive:
            return 0
        torch.cuda.reset_peak_memory_stats(self.device)
        return torch.cuda.memory_allocated(self.device)

    def _grow(self, rows: int, baseline: int) -> None:
        if not self._adaptive:
            return
        self._adaptive = False  # measure once
        per_row = max(1, (torch.cuda.max_memory_allocated(self.device) - baseline) // rows)
        free, _ = torch.cuda.mem_get_info(self.device)
        fit = int(free * GPU_MEMORY_FRACTION // per_row)
        self._size = max(1, min(GPU_MAX_ROWS, max(self._size, fit)))
        log.debug("%d bytes per row; %d rows per pass", per_row, self._size)

    def _release(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _channels_last_agrees(model: torch.nn.Module, row: torch.Tensor) -> bool:
    """Whether ``model`` gives the same logits on ``row`` in both memory layouts."""
    from .targets import logits_of

    try:
        with torch.no_grad():
            plain = logits_of(model(row.contiguous()))
            last = logits_of(model(row.contiguous(memory_format=torch.channels_last)))
    except RuntimeError as error:
        if is_out_of_memory(error):
            raise
        log.debug("channels-last refused by the model (%s); keeping contiguous", error)
        return False
    if plain.shape != last.shape or not bool(torch.isfinite(plain).all()):
        return False
    scale = float(plain.abs().max()) if plain.numel() else 0.0
    agree = bool(torch.allclose(last, plain, rtol=LAYOUT_RTOL, atol=LAYOUT_RTOL * scale))
    if not agree:
        log.warning("the model's logits change with the memory layout; keeping contiguous")
    return agree
