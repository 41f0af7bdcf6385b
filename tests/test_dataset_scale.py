"""The issue's acceptance checks of dataset runs, through the command line as users run it:
``torchrun -m seethrough explain-dataset`` with 2 processes (byte-identical to one), and
bounded memory (peak RSS for 10,000 images within 10 % of that for 1,000). The SIGKILL
resume test and the Ray engine's are in ``test_engines.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PYTHON = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
RESULTS = ("index.parquet", "errors.jsonl")


def _command(out: Path, *extra: str, limit: int = 768, shard: int = 64) -> list[str]:
    return [
        PYTHON,
        "-m",
        "seethrough",
        "explain-dataset",
        "fashion-mnist:test",
        "--model",
        "fashion-cnn",
        "--methods",
        "gradient,integrated_gradients",
        "--set",
        "integrated_gradients.rule=riemann_middle",
        "--set",
        "steps=16",
        "--limit",
        str(limit),
        "--shard-size",
        str(shard),
        "--batch-size",
        "32",
        "--device",
        "cpu",
        "--out",
        str(out),
        "-q",
        *extra,
    ]


def _files(out: Path) -> dict[str, bytes]:
    """The run's result files (shards, index, errors), by relative path."""
    found = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "shards").iterdir()}
    for name in RESULTS:
        found[name] = (out / name).read_bytes()
    return found


def _done(out: Path) -> dict[str, tuple[int, int]]:
    """Finished shards (their index file exists) → (inode, mtime) of their files."""
    shards = out / "shards"
    if not shards.is_dir():
        return {}
    done = {}
    for index in shards.glob("*.parquet"):
        for part in shards.glob(f"{index.stem}.*"):
            stat = part.stat()
            done[part.name] = (stat.st_ino, stat.st_mtime_ns)
    return done


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(_command(one, limit=320), env=ENV, check=True, capture_output=True)
    torchrun = [PYTHON, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]
    done = subprocess.run(
        [*torchrun, *_command(two, limit=320)[1:]],
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("images explained") == 1  # rank 0 speaks for the run
    assert _files(two) == _files(one)
    info = json.loads((two / "manifest.json").read_text())
    assert info["complete"] is True


_PEAK = """
import sys
from seethrough.cli import main
code = main(sys.argv[1:])
# VmHWM (KiB), not ru_maxrss: after fork + exec, ru_maxrss keeps the forking parent's
# (pytest's) peak, which would hide any growth
print("PEAK", int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM"))))
sys.exit(code)
"""


def _peak_kib(out: Path, limit: int) -> int:
    args = [
        "explain-dataset",
        "fashion-mnist:test",
        "--model",
        "fashion-cnn",
        "--methods",
        "gradient",
        "--limit",
        str(limit),
        "--device",
        "cpu",
        "--out",
        str(out),
        "-q",
    ]
    done = subprocess.run(
        [PYTHON, "-c", _PEAK, *args], env=ENV, check=True, capture_output=True, text=True
    )
    return int(done.stdout.split("PEAK")[-1])


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_dataset(tmp_path: Path) -> None:
    small = _peak_kib(tmp_path / "small", 1_000)
    large = _peak_kib(tmp_path / "large", 10_000)
    assert len(list((tmp_path / "large" / "shards").glob("*.parquet"))) == 40
    assert large <= 1.10 * small, (small, large)
