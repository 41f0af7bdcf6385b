"""The engines of a dataset run (`seethrough.scale.engines`): one process, torchrun with
two processes and Ray (local, 2 CPUs) write byte-identical run folders; engine choice and
its errors."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from seethrough.errors import InvalidOptionError
from seethrough.scale import detect_engine, explain_dataset, torchrun_device

# 200 real Fashion-MNIST test images in 7 shards of 32 (the last one 8): ranks get 4 and
# 3 shards; batches of 16 inside a shard; SmoothGrad draws random noise, so the seeds
# must follow the images, not the process
SCRIPT = """
import sys
from torch.utils.data import Dataset
from seethrough.data.fashion_mnist import load_fashion_mnist
from seethrough.models import load_model
from seethrough.scale import explain_dataset

class FirstImages(Dataset):
    def __init__(self, n):
        data = load_fashion_mnist("test")
        self.x, self.labels = data.inputs(0, n), data.labels[:n].tolist()
    def __len__(self):
        return len(self.x)
    def __getitem__(self, i):
        return self.x[i], self.labels[i]

engine, out, workers, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if engine == "ray":
    import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
result = explain_dataset(
    load_model("fashion-cnn"), FirstImages(200), ["gradient", "grad_cam", "smoothgrad"], out,
    shard_size=32, batch_size=16, num_workers=workers, engine=engine, samples=4, seed=seed,
)
# one write per line: the two torchrun ranks share one stdout
computed = ",".join(map(str, result.computed))
line = f"RESULT {result.engine} {result.computed} {result.skipped} {result.images}"
sys.stdout.write(line + chr(10) + "COMPUTED " + computed + chr(10))
sys.stdout.flush()
"""


def command_line(tmp: Path, *args: str, torchrun: bool = False) -> tuple[list[str], dict[str, str]]:
    script = tmp / "run_dataset.py"
    script.write_text(SCRIPT)
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(name, None)
    return [sys.executable, *(launcher if torchrun else []), str(script), *args], env


def run_script(tmp: Path, *args: str, torchrun: bool = False) -> subprocess.CompletedProcess:
    command, env = command_line(tmp, *args, torchrun=torchrun)
    return subprocess.run(
        command, check=False, capture_output=True, text=True, env=env, timeout=300
    )


def files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The reference: one process, decoding in two DataLoader workers."""
    tmp = tmp_path_factory.mktemp("local")
    done = run_script(tmp, "local", str(tmp / "run"), "2", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RESULT local (0, 1, 2, 3, 4, 5, 6) () 200" in done.stdout
    return files(tmp / "run")


def test_torchrun_two_processes_write_what_one_process_writes(
    one_process: dict[str, bytes], tmp_path: Path
) -> None:
    done = run_script(tmp_path, "auto", str(tmp_path / "run"), "0", "0", torchrun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RESULT torchrun (0, 2, 4, 6) () 200" in done.stdout  # rank 0
    assert "RESULT torchrun (1, 3, 5) () 200" in done.stdout  # rank 1
    written = files(tmp_path / "run")
    assert sorted(written) == sorted(one_process)
    assert len(written) == 3 + 3 * 7  # manifest, index, errors; 3 files per shard
    for name, data in one_process.items():
        assert written[name] == data, f"{name} differs from the one-process run"


@pytest.mark.slow  # 17-25 s on 2 busy cores: Ray starts a local cluster and two actors
def test_ray_writes_what_one_process_writes(one_process: dict[str, bytes], tmp_path: Path) -> None:
    pytest.importorskip("ray")
    done = run_script(tmp_path, "ray", str(tmp_path / "run"), "0", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RESULT ray (0, 1, 2, 3, 4, 5, 6) () 200" in done.stdout
    written = files(tmp_path / "run")
    assert sorted(written) == sorted(one_process)
    for name, data in one_process.items():
        assert written[name] == data, f"{name} differs from the one-process run"


def test_torchrun_refusal_reaches_every_rank(tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    first = run_script(tmp_path, "local", out, "0", "0")
    assert first.returncode == 0, first.stderr[-3000:]
    before = files(tmp_path / "run")
    done = run_script(tmp_path, "auto", out, "0", "1", torchrun=True)  # another seed
    assert done.returncode != 0
    assert "RunMismatchError" in done.stderr and "seed" in done.stderr
    assert "rank 0 could not open the run folder" in done.stderr  # rank 1 was told
    assert files(tmp_path / "run") == before


def shard_files(folder: Path) -> tuple[set[int], set[int]]:
    """The shards that are done (their index table exists), and those begun but not done."""
    # (a temporary file being written, ".tmp-<pid>-<random>-00003.parquet", is neither)
    named = [p for p in folder.glob("shards/*") if p.name[:5].isdigit()]
    done = {int(p.name[:5]) for p in named if p.suffix == ".parquet"}
    begun = {int(p.name[:5]) for p in named}
    return done, begun - done


@pytest.mark.slow  # 13-25 s on 2 busy cores: four runs of a fresh process
def test_sigkill_at_three_points_then_resume(one_process: dict[str, bytes], tmp_path: Path) -> None:
    rng = random.Random(15)
    out = tmp_path / "run"
    done: set[int] = set()
    for wait_for in (1, 3, 5):  # kill once this many shards are done, plus a random delay
        command, env = command_line(tmp_path, "local", str(out), "0", "0")
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while proc.poll() is None and len(shard_files(out)[0]) < wait_for:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.25))
        proc.kill()  # SIGKILL: no cleanup runs
        proc.communicate()
        now, partial = shard_files(out)
        assert done <= now
        assert len(partial) <= 1  # at most the shard being written is lost
        done = now
    assert len(done) < 7, "every run finished before its kill: the test lost its power"
    final = run_script(tmp_path, "local", str(out), "0", "0")
    assert final.returncode == 0, final.stderr[-3000:]
    line = next(x for x in final.stdout.splitlines() if x.startswith("COMPUTED"))
    computed = {int(s) for s in line.split()[1].split(",")} if len(line.split()) > 1 else set()
    assert computed == set(range(7)) - done  # finished shards are never recomputed
    assert files(out) == one_process  # byte-identical to the uninterrupted run


# ---------------------------------------------------------------- choosing an engine


def tiny() -> tuple[nn.Module, torch.utils.data.Dataset]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    data = torch.utils.data.TensorDataset(torch.randn(9, 3, 2, 2), torch.arange(9) % 3)
    return model, data


def test_detect_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert detect_engine() == "local"
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert detect_engine() == "local"
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert detect_engine() == "torchrun"
    monkeypatch.setenv("WORLD_SIZE", "four")
    with pytest.raises(InvalidOptionError, match="WORLD_SIZE='four'"):
        detect_engine()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert torchrun_device().type == expected


def test_engine_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    model, data = tiny()
    with pytest.raises(InvalidOptionError, match="started by torchrun"):
        explain_dataset(model, data, "gradient", tmp_path / "a", engine="torchrun")
    with pytest.raises(InvalidOptionError, match="engine"):
        explain_dataset(model, data, "gradient", tmp_path / "b", engine="spark")
    with pytest.raises(InvalidOptionError, match="actors= is for engine='ray'"):
        explain_dataset(model, data, "gradient", tmp_path / "c", actors=2)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(InvalidOptionError, match=r'pip install "seethrough\[ray\]"'):
        explain_dataset(model, data, "gradient", tmp_path / "d", engine="ray")


def test_local_progress_counts_skipped_shards(tmp_path: Path) -> None:
    model, data = tiny()
    seen: list[tuple[int, int]] = []
    out = tmp_path / "run"
    explain_dataset(model, data, "gradient", out, shard_size=4, progress=lambda *a: seen.append(a))
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    for path in (out / "shards").glob("00001.*"):
        path.unlink()
    seen.clear()
    again = explain_dataset(
        model, data, "gradient", out, shard_size=4, progress=lambda *a: seen.append(a)
    )
    assert seen == [(2, 3), (3, 3)]
    assert (again.computed, again.skipped) == ((1,), (0, 2))
