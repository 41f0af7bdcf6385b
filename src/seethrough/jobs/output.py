"""Output folders that are written whole or not at all.

Files are written into a staging folder *inside* the output folder and moved into
place only when the job succeeds; on any error (or Ctrl-C) the staging folder — and
any folder the job created — is removed, so no half-written report is left behind.
Nothing is written outside the output folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from ..errors import InvalidOptionError

__all__ = ["OutputFolder"]


class OutputFolder:
    """``with OutputFolder(out, force) as staging: write files into staging``.

    Parameters
    ----------
    out : path
        The output folder. It may not exist yet (it and missing parents are created).
    force : bool
        Allow an existing, non-empty folder; same-named files are replaced on success.

    Raises
    ------
    InvalidOptionError
        At construction — before any work — if ``out`` is a file, or a non-empty folder
        without ``force``, or cannot be created.
    """

    def __init__(self, out: str | os.PathLike[str], force: bool = False) -> None:
        self.out = Path(out)
        self.force = force
        self._created: list[Path] = []
        self._staging: Path | None = None
        if self.out.exists() and not self.out.is_dir():
            raise InvalidOptionError(f"output path {self.out} is a file; choose a folder for --out")
        if self.out.is_dir() and any(self.out.iterdir()) and not force:
            raise InvalidOptionError(
                f"output folder {self.out} already has files; choose another --out "
                "or pass --force to replace them"
            )

    def __enter__(self) -> Path:
        missing = []
        parent = self.out
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        try:
            for folder in reversed(missing):
                folder.mkdir()
                self._created.append(folder)
            self._staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=self.out))
        except OSError as error:
            self._remove_created()
            raise InvalidOptionError(
                f"cannot create output folder {self.out}: {error.strerror or error}"
            ) from None
        return self._staging

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._staging is not None
        if exc_type is None:
            try:
                for item in sorted(self._staging.iterdir()):
                    destination = self.out / item.name
                    if destination.is_dir() and not destination.is_symlink():
                        shutil.rmtree(destination)
                    os.replace(item, destination)
            finally:
                shutil.rmtree(self._staging, ignore_errors=True)
            return
        shutil.rmtree(self._staging, ignore_errors=True)
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in reversed(self._created):
            shutil.rmtree(folder, ignore_errors=True)
        self._created.clear()
