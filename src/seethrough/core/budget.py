"""One memory budget for every method: passes run in chunks of rows that fit.

A *row* is one input the model sees in a pass: an image, an integration step of an
image, a noisy sample of an image. Methods describe their work as rows; the budget
cuts them into chunks, halves the chunk on out-of-memory and retries (nothing is
accumulated from a failed chunk), and remembers the size that worked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import InvalidOptionError

__all__ = ["Budget", "Progress", "is_out_of_memory"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called as ``progress(rows_done, rows_total)`` after each chunk."""

CPU_ROWS = 16
"""Default rows per pass on CPU (throughput on 2 cores is flat above ~8 rows)."""
GPU_START_ROWS = 32
GPU_MAX_ROWS = 1024
GPU_MEMORY_FRACTION = 0.6


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
    """

    rows: int | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    on_rows: Callable[[int], None] | None = None
    _size: int = 0
    _adaptive: bool = False

    def __post_init__(self) -> None:
        if self.rows is not None and (not isinstance(self.rows, int) or self.rows < 1):
            raise InvalidOptionError(f"batch_size must be a positive integer, got {self.rows!r}")
        self._adaptive = self.rows is None and self.device.type == "cuda"
        if self.rows is not None:
            self._size = self.rows
        else:
            self._size = GPU_START_ROWS if self.device.type == "cuda" else CPU_ROWS

    @property
    def size(self) -> int:
        """The current chunk size."""
        return self._size

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
