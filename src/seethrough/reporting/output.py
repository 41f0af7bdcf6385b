"""Output folders: checked before any work, held by one run at a time, never half-written.

A job runs inside ``with OutputFolder(out, force) as staging:``. Before any work the
folder is checked (not a file, empty unless ``force``, and writable: a folder is created
and removed where the output will go, so that ``/proc/x`` or a read-only disk fails at
once). On entry the run takes a lock on the folder — a second run into the same folder
fails at once, naming the run that holds it — and removes the staging folders
(``.partial-<pid>-*``) that a killed run left behind, saying so. Files are written into
the staging folder and moved into place file by file (each move atomic) when the job
calls :meth:`OutputFolder.publish` or ends successfully. When the job fails before
anything was published, the staging folder and every folder the run created are
removed; what was published stays (each publication is a complete report).

The lock is an advisory ``fcntl.flock`` on ``.seethrough.lock`` inside the folder (on
Windows ``msvcrt.locking``); the kernel releases it when the process dies, so a lock is
never stale, and the file is removed when the run ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from ..errors import InvalidOptionError

__all__ = ["LOCK", "STAGE_PREFIX", "OutputFolder", "file_stems", "safe_stem"]

LOCK = ".seethrough.lock"
"""The lock file inside an output folder while a run writes it."""

STAGE_PREFIX = ".partial-"
"""Staging folders inside the output folder: ``.partial-<pid>-<random>``."""

logger = logging.getLogger(__name__)

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
try:  # Windows
    import msvcrt
except ImportError:
    msvcrt = None  # type: ignore[assignment]


class OutputFolder:
    """``with OutputFolder(out, force) as staging:`` compute, write files into ``staging``.

    Parameters
    ----------
    out : path
        The output folder. It may not exist yet (it and missing parents are created).
    force : bool
        Allow an existing, non-empty folder. The previous results are replaced when this
        run first publishes: same-named files, and the files that ``manifest`` of the
        previous run lists. Other files in the folder are kept.
    manifest : str, optional
        Name of a JSON file the job writes, whose ``"files"`` entry lists the files of
        the run (the previous run's list is what ``force`` removes).

    Raises
    ------
    InvalidOptionError
        At construction — before any work — if ``out`` is a file, is being written by
        another run, is a non-empty folder without ``force``, or cannot be written; on
        entry, if another run took the folder meanwhile or it cannot be created.
    """

    def __init__(
        self, out: str | os.PathLike[str], force: bool = False, manifest: str | None = None
    ) -> None:
        if not str(out).strip():  # e.g. an unset shell variable: not the current folder
            raise InvalidOptionError("the output folder (--out) is empty; name a folder")
        self.out = Path(out)
        self.force = force
        self.manifest = manifest
        self.stale: tuple[str, ...] = ()
        """The stale staging folders this run found and removed (names)."""
        self._created: list[Path] = []
        self._staging: Path | None = None
        self._lock: IO[str] | None = None
        self._previous: list[str] = []
        self._published = False
        if self.out.exists() and not self.out.is_dir():
            raise InvalidOptionError(f"output path {self.out} is a file; choose a folder for --out")
        holder = _holder(self.out / LOCK)
        if holder is not None:
            raise _busy(self.out, holder)
        self._check_empty()
        self._check_writable()

    # ---------------------------------------------------------------- checks

    def _check_empty(self) -> None:
        if self.force or not self.out.is_dir():
            return
        if any(not _ours(p.name) for p in self.out.iterdir()):
            raise InvalidOptionError(
                f"output folder {self.out} already has files; choose another --out "
                "or pass --force to replace the results in it"
            )

    def _check_writable(self) -> None:
        """Create and remove a folder where the output will go: the early write check."""
        ancestor = self.out
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise InvalidOptionError(
                f"cannot create output folder {self.out}: {ancestor} is a file, not a folder"
            )
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".seethrough-check-", dir=ancestor))
        except OSError as error:
            raise InvalidOptionError(
                f"cannot write output folder {self.out}: creating a folder in {ancestor} "
                f"failed ({_reason(error)}); choose another --out"
            ) from None

    # ---------------------------------------------------------------- entry and exit

    def __enter__(self) -> Path:
        try:
            self._make_folders()
            self._lock = _acquire(self.out / LOCK)
        except BaseException as error:
            # Not holding the lock: another run may be using the folders by now.
            self._remove_created(only_empty=True)
            if isinstance(error, OSError):
                raise InvalidOptionError(
                    f"cannot create output folder {self.out}: {_reason(error)}"
                ) from None
            raise
        try:
            self._remove_stale()
            self._check_empty()  # again, now that the folder is ours
            self._previous = self._previous_files()
            self._staging = Path(
                tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir=self.out)
            )
        except BaseException as error:
            self._remove_created()
            self._release()
            if isinstance(error, OSError):
                raise InvalidOptionError(
                    f"cannot write output folder {self.out}: {_reason(error)}"
                ) from None
            raise
        return self._staging

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.publish(last=[self.manifest] if self.manifest else ())
        finally:
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
            if exc_type is not None and not self._published:
                self._remove_created()  # while we hold the lock
            self._release()

    def publish(self, last: Sequence[str] = ()) -> tuple[str, ...]:
        """Move every file written into the staging folder so far into the output folder.

        Each file replaces its namesake atomically; the files named in ``last`` move
        last, in that order (the report's index and manifest, so that they never name a
        file that is not there yet). The first publication also removes, with
        ``force``, the files the previous run's manifest lists. Returns the names moved.
        """
        if self._staging is None:
            raise RuntimeError("publish() must be called inside the with block")
        items = sorted(self._staging.iterdir(), key=lambda p: (_order(p.name, last), p.name))
        if not self._published:
            self._remove_previous({item.name for item in items})
        for item in items:
            destination = self.out / item.name
            if destination.is_dir() and not destination.is_symlink():
                shutil.rmtree(destination)
            os.replace(item, destination)
            self._published = True
        return tuple(item.name for item in items)

    # ---------------------------------------------------------------- helpers

    def _make_folders(self) -> None:
        missing = []
        parent = self.out
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                continue  # another run made it: not ours to remove
            self._created.append(folder)

    def _remove_stale(self) -> None:
        """Staging folders left by runs that were killed (we hold the lock: none is live)."""
        found = sorted(p for p in self.out.iterdir() if p.name.startswith(STAGE_PREFIX))
        for stage in found:
            if stage.is_dir() and not stage.is_symlink():
                shutil.rmtree(stage, ignore_errors=True)
            else:
                stage.unlink(missing_ok=True)
        self.stale = tuple(p.name for p in found)
        if found:
            pids = sorted(
                {m.group(1) for p in found if (m := re.match(r"\.partial-(\d+)-", p.name))}
            )
            by = f" by run {', '.join('pid ' + p for p in pids)}" if pids else ""
            logger.warning(
                "removed %d stale staging folder%s left in %s%s, which was interrupted: %s",
                len(found),
                "" if len(found) == 1 else "s",
                self.out,
                by,
                ", ".join(self.stale),
            )

    def _previous_files(self) -> list[str]:
        """With ``force``: the files the previous run's manifest lists."""
        if not self.force or self.manifest is None:
            return []
        try:
            listed = json.loads((self.out / self.manifest).read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return []  # no readable manifest: nothing is known to be ours
        return [n for n in listed if isinstance(n, str)] if isinstance(listed, list) else []

    def _remove_previous(self, keep: set[str]) -> None:
        for name in self._previous:
            # Only plain file names directly in the folder: a manifest never reaches outside it.
            if name in keep or Path(name).name != name or name in ("", ".."):
                continue
            if name.startswith("."):
                continue
            path = self.out / name
            if path.is_file() and not path.is_symlink():
                path.unlink()

    def _release(self) -> None:
        if self._lock is not None:
            _release(self._lock, self.out / LOCK)
            self._lock = None

    def _remove_created(self, only_empty: bool = False) -> None:
        for folder in reversed(self._created):
            if only_empty:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            else:
                shutil.rmtree(folder, ignore_errors=True)
        self._created.clear()


def _ours(name: str) -> bool:
    """Entries a run leaves while it writes (or when it was killed): not the user's files."""
    return name == LOCK or name.startswith(STAGE_PREFIX)


def _order(name: str, last: Sequence[str]) -> int:
    return list(last).index(name) if name in last else -1


def _reason(error: OSError) -> str:
    return (error.strerror or str(error)).rstrip(".").lower()


# ---------------------------------------------------------------------- the lock


def _lock(handle: IO[str], shared: bool = False) -> bool:
    """Take the lock without waiting; False if another process holds it."""
    try:
        if fcntl is not None:
            kind = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            fcntl.flock(handle.fileno(), kind | fcntl.LOCK_NB)
        elif msvcrt is not None:  # pragma: no cover - Windows
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except BlockingIOError:
        return False  # held by another process
    except OSError as error:
        if msvcrt is not None and fcntl is None:  # pragma: no cover - Windows: held
            return False
        # a file system without locks (some network mounts): go on without one
        logger.warning(
            "cannot lock %s (%s): a second run into this folder would not be refused",
            handle.name,
            _reason(error),
        )
    return True


def _unlock(handle: IO[str]) -> None:
    if fcntl is not None:
        with contextlib.suppress(OSError):  # see _lock: no locks on this file system
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    elif msvcrt is not None:  # pragma: no cover - Windows
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)


def _acquire(path: Path) -> IO[str]:
    """Open and lock ``path``, writing our pid into it; a clear error if a run holds it.

    The file is removed when the lock is released, so after taking the lock we check that
    ``path`` is still the file we locked (a run that just finished may have removed it)."""
    for _ in range(100):
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until _release
        if not _wait_briefly(handle):
            handle.close()
            holder = _holder(path)
            raise _busy(path.parent, holder if holder is not None else "unknown")
        try:
            same = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()} {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            handle.flush()
            return handle
        handle.close()
    raise OSError(f"could not take the lock {path}")  # pragma: no cover


def _wait_briefly(handle: IO[str]) -> bool:
    """Take the lock, waiting up to half a second: another run's check (:func:`_holder`)
    holds it for microseconds; a run that writes holds it for the whole run."""
    for _ in range(50):
        if _lock(handle):
            return True
        time.sleep(0.01)
    return False


def _release(handle: IO[str], path: Path) -> None:
    with contextlib.suppress(OSError):  # Windows: an open file cannot be removed
        path.unlink(missing_ok=True)  # while we still hold the lock (see _acquire)
    try:
        _unlock(handle)
    finally:
        handle.close()


def _holder(path: Path) -> str | None:
    """The pid (and start time) of the run that holds the lock ``path``; None if free."""
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115
    except OSError:
        return None
    with handle:
        if _lock(handle, shared=True):  # shared: checks never block each other
            _unlock(handle)
            return None
        for _ in range(20):  # the holder writes its pid right after locking
            text = handle.read().strip()
            if text:
                pid, _, started = text.partition(" ")
                return f"pid {pid}, started {started}" if started else f"pid {pid}"
            time.sleep(0.01)
            handle.seek(0)
        return "unknown"


def _busy(out: Path, holder: str) -> InvalidOptionError:
    return InvalidOptionError(
        f"output folder {out} is being written by another seethrough run ({holder}); "
        "wait for it to finish or choose another --out"
    )


# ---------------------------------------------------------------------- file names

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10))} | {
    f"LPT{i}" for i in range(10)
}
_MAX_BYTES = 120  # of a stem in UTF-8: room for a prefix, an index and an extension


def safe_stem(name: str, fallback: str = "file") -> str:
    """``name`` as a file name stem that is safe on every common file system.

    Unicode letters, digits and combining marks are kept (NFC-normalised), as are ``.``,
    ``_`` and ``-``; every run of other characters (path separators, spaces, ``<>:"|?*``,
    control characters, punctuation) becomes one ``_``. Leading and trailing ``.`` and
    ``_`` are dropped (no hidden files, no ``..``), long names are cut at 120 UTF-8 bytes
    on a character boundary, Windows device names (``CON``, ``NUL``...) get a ``_``, and
    an empty result becomes ``fallback``.

    Examples
    --------
    >>> safe_stem("nœud café/été")
    'nœud_café_été'
    >>> safe_stem("../../etc/passwd")
    'etc_passwd'
    """
    text = unicodedata.normalize("NFC", name)
    kept = "".join(c if c in "._-" or unicodedata.category(c)[0] in "LNM" else "\0" for c in text)
    stem = re.sub("\0+", "_", kept).strip("._")
    encoded = stem.encode("utf-8")
    if len(encoded) > _MAX_BYTES:
        stem = encoded[:_MAX_BYTES].decode("utf-8", errors="ignore").rstrip("._")
    if stem.split(".")[0].upper() in _WINDOWS_RESERVED:
        stem = f"{stem}_"
    return stem or fallback


def file_stems(names: Iterable[str], fallback: str = "file") -> list[str]:
    """:func:`safe_stem` of each name, made distinct by an index.

    Parameters
    ----------
    names : iterable of str
        The names (images, modules...), in order.
    fallback : str
        The stem of a name with no usable character.

    Returns
    -------
    list of str
        One stem per name; a stem already taken — compared case-insensitively, as on
        macOS and Windows — gets ``-2``, ``-3``... (``a``, ``a-2``, ``A-3``).
    """
    used: set[str] = set()
    stems = []
    for name in names:
        stem = safe_stem(name, fallback)
        candidate, count = stem, 1
        while candidate.casefold() in used:
            count += 1
            candidate = f"{stem}-{count}"
        used.add(candidate.casefold())
        stems.append(candidate)
    return stems
