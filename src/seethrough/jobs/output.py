"""Output folders that are written whole or not at all.

Files are written into a staging folder *inside* the output folder and moved into
place only when the job succeeds; on any error (or Ctrl-C) the staging folder — and
any folder the job created — is removed, so no half-written report is left behind.
Nothing is written outside the output folder.
"""

from __future__ import annotations

import json
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
        Allow an existing, non-empty folder. On success the previous results are
        replaced: same-named files, and the files that ``manifest`` of the previous
        run lists. Other files in the folder are kept.
    manifest : str, optional
        Name of a JSON file the job writes, whose ``"files"`` entry lists the files of
        the run. With ``force``, the files the previous run's manifest lists are
        removed on success, so that no stale result of an earlier run is left.

    Raises
    ------
    InvalidOptionError
        At construction — before any work — if ``out`` is a file, or a non-empty folder
        without ``force``, or cannot be created.
    """

    def __init__(
        self, out: str | os.PathLike[str], force: bool = False, manifest: str | None = None
    ) -> None:
        self.out = Path(out)
        self.force = force
        self.manifest = manifest
        self._created: list[Path] = []
        self._staging: Path | None = None
        if self.out.exists() and not self.out.is_dir():
            raise InvalidOptionError(f"output path {self.out} is a file; choose a folder for --out")
        if self.out.is_dir() and any(self.out.iterdir()) and not force:
            raise InvalidOptionError(
                f"output folder {self.out} already has files; choose another --out "
                "or pass --force to replace the results in it"
            )
        self._check_creatable()

    def _check_creatable(self) -> None:
        """Refuse, before any work, a folder whose nearest existing ancestor is not writable."""
        ancestor = self.out
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise InvalidOptionError(
                f"cannot create output folder {self.out}: {ancestor} is a file, not a folder"
            )
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise InvalidOptionError(
                f"cannot write output folder {self.out}: no write permission in {ancestor}"
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
                new = sorted(self._staging.iterdir())
                self._remove_previous({item.name for item in new})
                for item in new:
                    destination = self.out / item.name
                    if destination.is_dir() and not destination.is_symlink():
                        shutil.rmtree(destination)
                    os.replace(item, destination)
            finally:
                shutil.rmtree(self._staging, ignore_errors=True)
            return
        shutil.rmtree(self._staging, ignore_errors=True)
        self._remove_created()

    def _remove_previous(self, keep: set[str]) -> None:
        """With ``force``: delete the files the previous run's manifest lists."""
        if not self.force or self.manifest is None:
            return
        try:
            listed = json.loads((self.out / self.manifest).read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return  # no readable manifest: nothing is known to be ours
        if not isinstance(listed, list):
            return
        for name in listed:
            # Only plain file names directly in the folder: a manifest never reaches outside it.
            if not isinstance(name, str) or name in keep or Path(name).name != name:
                continue
            if name.startswith(".") or name in ("", ".."):
                continue
            path = self.out / name
            if path.is_file() and not path.is_symlink():
                path.unlink()

    def _remove_created(self) -> None:
        for folder in reversed(self._created):
            shutil.rmtree(folder, ignore_errors=True)
        self._created.clear()
