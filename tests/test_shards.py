"""Shard plan, run folders and their reader (issue 15, part 2: ``seethrough.data.shards``).

The properties: the plan covers every item exactly once (no padding, no duplicates); the
files of a shard are a pure function of its inputs (byte-identical across writers and
across processes); a crash leaves nothing that counts as done; a run made with other
settings is refused with the differing settings named; the reader returns exactly what
was written, reading only the shards it needs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import seethrough.data.shards as shards_module
from seethrough.data import (
    RUN_FORMAT,
    RunMismatchError,
    RunWriter,
    ShardPlan,
    atomic_write,
    open_run,
)
from seethrough.errors import InvalidInputError, InvalidOptionError

CONFIG = {"methods": ["gradient", "grad_cam"], "dtype": "float16", "seed": 0, "shard_size": 4}


# ---------------------------------------------------------------- fixtures: a fake run


def shard_inputs(plan: ShardPlan, shard: int, bad: frozenset[int] = frozenset()):
    """Deterministic maps/rows/errors for one shard; items in ``bad`` become errors."""
    start, stop = plan.range(shard)
    good = [i for i in range(start, stop) if i not in bad]
    gen = torch.Generator().manual_seed(1000 + shard)
    n = len(good)
    maps = {
        "gradient": torch.randn(n, 1, 5, 6, generator=gen).to(torch.float16),
        "grad_cam": torch.randn(n, 1, 5, 6, generator=gen),  # float32: dtype kept as given
    }
    # every map carries its item index in pixel (0, 0): the reader's answers are checkable
    maps["gradient"][:, 0, 0, 0] = torch.tensor(good, dtype=torch.float16)
    rows = {
        "index": good,
        "path": [f"img/{i:04d}.png" for i in good],
        "label": np.array([i % 3 for i in good], dtype=np.int64),
        "probability": torch.rand(n, generator=gen),
    }
    errors = [
        {"index": i, "path": f"img/{i:04d}.png", "error": "cannot decode"}
        for i in range(start, stop)
        if i in bad
    ]
    return maps, rows, errors


def write_run(
    out: Path,
    plan: ShardPlan,
    bad: frozenset[int] = frozenset(),
    shards=None,
    finish: bool = True,
    create: bool = True,
) -> RunWriter:
    writer = RunWriter(out, config=CONFIG, plan=plan, info={"engine": "test"}, create=create)
    for shard in writer.pending(shards):
        writer.write_shard(shard, *shard_inputs(plan, shard, bad))
    if finish:
        writer.finish()
    return writer


def files_of(out: Path) -> dict[str, bytes]:
    """Every file of a run except the manifest (which records info), by relative path."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


# ---------------------------------------------------------------- plan


@pytest.mark.parametrize("items", [1, 2, 7, 64, 100, 257, 1000])
@pytest.mark.parametrize("size", [1, 3, 64, 256, 2000])
def test_plan_covers_every_item_exactly_once(items, size):
    plan = ShardPlan(items, size)
    covered = [i for s in range(plan.shards) for i in range(*plan.range(s))]
    assert covered == list(range(items))  # in order, no gap, no duplicate, no padding
    assert plan.shards == -(-items // size)
    lengths = [b - a for a, b in map(plan.range, range(plan.shards))]
    assert all(n == size for n in lengths[:-1]) and 1 <= lengths[-1] <= size
    for world in (1, 2, 3, 8, plan.shards + 5):
        shares = [plan.assigned(rank, world) for rank in range(world)]
        flat = sorted(s for share in shares for s in share)
        assert flat == list(range(plan.shards))  # ranks partition the shards
        assert all(s % world == rank for rank, share in enumerate(shares) for s in share)
        assert max(map(len, shares)) - min(map(len, shares)) <= 1  # balanced


def test_plan_rejects_bad_values():
    with pytest.raises(InvalidInputError, match="no items"):
        ShardPlan(0, 4)
    with pytest.raises(InvalidOptionError, match="shard_size must be a positive integer"):
        ShardPlan(10, 0)
    with pytest.raises(InvalidOptionError, match="shard_size"):
        ShardPlan(10, 2.5)  # type: ignore[arg-type]
    plan = ShardPlan(10, 4)
    with pytest.raises(InvalidOptionError, match=r"shard 3 does not exist: the plan has 3 shards"):
        plan.range(3)
    with pytest.raises(InvalidOptionError, match=r"rank must be in 0\.\.1"):
        plan.assigned(2, 2)
    with pytest.raises(InvalidOptionError, match="world"):
        plan.assigned(0, 0)
    assert ShardPlan(np.int64(10), np.int32(4)) == plan  # numpy integers are fine


# ---------------------------------------------------------------- bytes


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_two_writers_write_byte_identical_runs(tmp_path):
    plan = ShardPlan(23, 5)
    bad = frozenset({3, 11, 12})
    write_run(tmp_path / "a", plan, bad)
    write_run(tmp_path / "b", plan, bad)
    a, b = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert len(a) == 3 * plan.shards + 2  # 3 files per shard + index + errors
    assert a == b


def test_ranks_sharing_a_folder_equal_one_writer(tmp_path):
    """Two 'ranks' (one creates, the other joins) writing interleaved shards = one writer."""
    plan = ShardPlan(30, 4)
    write_run(tmp_path / "one", plan)
    rank0 = write_run(tmp_path / "two", plan, shards=plan.assigned(0, 2), finish=False)
    write_run(tmp_path / "two", plan, shards=plan.assigned(1, 2), finish=False, create=False)
    rank0.finish()
    assert files_of(tmp_path / "one") == files_of(tmp_path / "two")


_WRITE_IN_A_PROCESS = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_shards import ShardPlan, write_run
write_run(Path(sys.argv[1]), ShardPlan(9, 4), frozenset({{2}}), shards=[0], finish=False)
"""


def test_shard_bytes_identical_across_processes(tmp_path):
    """safetensors keeps metadata in a Rust HashMap whose order is random per process:
    several metadata keys give different bytes in different processes. One key must not."""
    script = _WRITE_IN_A_PROCESS.format(tests=str(Path(__file__).parent))
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path / f"p{i}")]) for i in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    blobs = [files_of(tmp_path / f"p{i}") for i in range(3)]
    assert blobs[0] == blobs[1] == blobs[2]
    assert set(blobs[0]) == {
        "shards/00000.safetensors",
        "shards/00000.errors.jsonl",
        "shards/00000.parquet",
    }
    with open(tmp_path / "p0" / "shards" / "00000.safetensors", "rb") as file:
        header = json.loads(file.read(int.from_bytes(file.read(8), "little")))
    assert list(header["__metadata__"]) == ["seethrough"]
    assert json.loads(header["__metadata__"]["seethrough"]) == {
        "format": RUN_FORMAT,
        "shard": 0,
        "start": 0,
        "stop": 4,
        "names": ["gradient", "grad_cam"],
    }


# ---------------------------------------------------------------- crash and resume


def test_fake_crash_is_pending_and_rewritten_identically(tmp_path, caplog):
    plan = ShardPlan(17, 4)
    write_run(tmp_path / "clean", plan)
    out = tmp_path / "crashed"
    write_run(out, plan, shards=[0, 1], finish=False)
    # killed while writing shard 2: its maps are there, its index table is not
    (out / "shards" / "00002.parquet").unlink(missing_ok=True)
    (out / "shards" / "00002.safetensors").write_bytes(b"half-written")
    (out / "shards" / ".tmp-999-abcd-00002.parquet").write_bytes(b"partial")
    (out / ".tmp-999-abcd-manifest.json").write_bytes(b"partial")

    caplog.set_level("INFO", logger="seethrough.data.shards")
    writer = RunWriter(out, config=CONFIG, plan=plan)
    assert "removed 2 temporary file(s)" in caplog.text
    assert not list(out.rglob(".tmp-*"))
    assert writer.pending() == [2, 3, 4]
    assert not writer.done(2) and writer.done(1)
    for shard in writer.pending():
        writer.write_shard(shard, *shard_inputs(plan, shard))
    writer.finish()
    assert files_of(out) == files_of(tmp_path / "clean")


def test_joining_writer_leaves_temporary_files_alone(tmp_path):
    """A rank that joins (create=False) may not delete another rank's write in progress."""
    plan = ShardPlan(8, 4)
    write_run(tmp_path, plan, finish=False, shards=[])
    in_progress = tmp_path / "shards" / ".tmp-1-abcd-00001.parquet"
    in_progress.write_bytes(b"being written")
    RunWriter(tmp_path, config=CONFIG, plan=plan, create=False)
    assert in_progress.exists()


def test_finish_names_missing_shards_and_is_idempotent(tmp_path):
    plan = ShardPlan(20, 3)
    writer = write_run(tmp_path, plan, shards=[0, 2, 3, 6], finish=False)
    with pytest.raises(InvalidOptionError, match=r"3 of 7 shards are missing \(1, 4, 5\)"):
        writer.finish()
    assert not (tmp_path / "index.parquet").exists()
    for shard in writer.pending():
        writer.write_shard(shard, *shard_inputs(plan, shard))
    writer.finish()
    first = files_of(tmp_path)
    writer.finish()
    assert files_of(tmp_path) == first
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["images"] == 20 and manifest["errors"] == 0


# ---------------------------------------------------------------- configuration


def test_different_config_is_refused_naming_the_settings(tmp_path):
    plan = ShardPlan(10, 4)
    write_run(tmp_path, plan, shards=[0], finish=False)
    other = dict(CONFIG, methods=["integrated_gradients"], seed=3)
    with pytest.raises(RunMismatchError) as caught:
        RunWriter(tmp_path, config=other, plan=plan)
    message = str(caught.value)
    assert '["gradient", "grad_cam"] in the run' in message
    assert '["integrated_gradients"] now' in message
    assert "seed: 0 in the run, 3 now" in message
    assert "dtype" not in message  # only the differing settings
    assert "new output folder (--out)" in message
    assert isinstance(caught.value, InvalidOptionError)
    with pytest.raises(RunMismatchError, match=r"plan\.items: 10 in the run, 11 now"):
        RunWriter(tmp_path, config=CONFIG, plan=ShardPlan(11, 4))
    # nothing lost: the finished shard is still there
    assert RunWriter(tmp_path, config=CONFIG, plan=plan).pending() == [1, 2]


def test_config_hash_is_canonical(tmp_path):
    plan = ShardPlan(4, 4)
    a = RunWriter(tmp_path / "a", config={"x": 1, "y": [1, 2]}, plan=plan)
    b = RunWriter(tmp_path / "b", config={"y": (1, 2), "x": np.int64(1)}, plan=plan)
    assert a.config_hash == b.config_hash
    # resuming with the tuple spelling of the same config is accepted
    RunWriter(tmp_path / "a", config={"y": (1, 2), "x": 1}, plan=plan)


def test_folder_errors(tmp_path):
    plan = ShardPlan(4, 4)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InvalidOptionError, match=r"not empty \(notes.txt\).*not a seethrough run"):
        RunWriter(tmp_path, config=CONFIG, plan=plan)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(InvalidOptionError, match="is a file"):
        RunWriter(tmp_path / "notes.txt", config=CONFIG, plan=plan)
    with pytest.raises(InvalidOptionError, match=r"has no manifest\.json.*must create it"):
        RunWriter(tmp_path / "new", config=CONFIG, plan=plan, create=False)
    with pytest.raises(InvalidOptionError, match="JSON-safe"):
        RunWriter(tmp_path / "new", config={"model": torch.nn.Linear(1, 1)}, plan=plan)
    with pytest.raises(InvalidOptionError, match="JSON-safe"):
        RunWriter(tmp_path / "new", config={"alpha": float("nan")}, plan=plan)
    assert not (tmp_path / "new").exists()


def test_open_run_errors(tmp_path):
    with pytest.raises(InvalidOptionError, match="not a folder"):
        open_run(tmp_path / "missing")
    with pytest.raises(InvalidOptionError, match=r"no manifest\.json: it is not a seethrough run"):
        open_run(tmp_path)
    write_run(tmp_path / "run", ShardPlan(4, 4), finish=False, shards=[])
    manifest = tmp_path / "run" / "manifest.json"
    manifest.write_text(
        json.dumps(dict(json.loads(manifest.read_text()), format="seethrough-run/2"))
    )
    with pytest.raises(InvalidOptionError, match=r"newer seethrough.*upgrade"):
        open_run(tmp_path / "run")
    with pytest.raises(InvalidOptionError, match="newer seethrough"):
        RunWriter(tmp_path / "run", config=CONFIG, plan=ShardPlan(4, 4))
    manifest.write_text('{"format": "something-else/1"}')
    with pytest.raises(InvalidOptionError, match="not a seethrough run manifest"):
        open_run(tmp_path / "run")


def test_write_shard_rejects_inconsistent_input(tmp_path):
    plan = ShardPlan(10, 4)
    writer = RunWriter(tmp_path, config=CONFIG, plan=plan)
    maps, rows, _ = shard_inputs(plan, 0)
    with pytest.raises(InvalidInputError, match=r"items 0\.\.3 \(4 items\) but got 3 rows"):
        writer.write_shard(
            0, {k: v[:3] for k, v in maps.items()}, {k: v[:3] for k, v in rows.items()}
        )
    with pytest.raises(InvalidInputError, match="map 'gradient' has 3 entries but the index has 4"):
        writer.write_shard(0, dict(maps, gradient=maps["gradient"][:3]), rows)
    with pytest.raises(InvalidInputError, match="columns differ in length"):
        writer.write_shard(0, maps, dict(rows, path=rows["path"][:2]))
    with pytest.raises(InvalidInputError, match="'offset' is added by the writer"):
        writer.write_shard(0, maps, dict(rows, offset=[0, 1, 2, 3]))
    with pytest.raises(InvalidInputError, match="1-D"):
        writer.write_shard(0, maps, dict(rows, label=np.zeros((4, 2))))
    with pytest.raises(InvalidOptionError, match="shard 3 does not exist"):
        writer.write_shard(3, maps, rows)
    assert writer.pending() == [0, 1, 2]  # nothing half-done
    assert list((tmp_path / "shards").iterdir()) == []


# ---------------------------------------------------------------- reading


def expected_maps(plan: ShardPlan, name: str, bad=frozenset()):
    """The maps in index order, rebuilt from the inputs."""
    parts = [shard_inputs(plan, s, bad)[0][name] for s in range(plan.shards)]
    return torch.cat(parts)


def test_maps_random_access_equals_written_tensors(tmp_path):
    plan = ShardPlan(37, 5)
    bad = frozenset({0, 6, 7, 36})
    write_run(tmp_path, plan, bad)
    run = open_run(tmp_path)
    assert run.complete and run.names == ("gradient", "grad_cam") and len(run) == 33
    for name in run.names:
        dense = expected_maps(plan, name, bad)
        rows = np.random.default_rng(0).integers(0, len(run), size=50)  # duplicates, any order
        got = run.maps(name, rows)
        assert got.dtype == dense.dtype and got.shape == (50, 1, 5, 6)
        assert torch.equal(got, dense[torch.from_numpy(rows)])
        assert torch.equal(run.maps(name), dense)
        assert torch.equal(run.maps(name, 7), dense[7])
        assert run.maps(name, []).shape == (0, 1, 5, 6)
    # row -> item: pixel (0, 0) of "gradient" holds the item index of the row
    index = run.index.column("index").to_numpy()
    assert torch.equal(run.maps("gradient")[:, 0, 0, 0].long(), torch.from_numpy(index))


def test_iter_maps_streams_in_bounded_batches(tmp_path):
    plan = ShardPlan(23, 4)
    write_run(tmp_path, plan, frozenset({5}))
    run = open_run(tmp_path)
    batches = list(run.iter_maps("grad_cam", batch=6))
    assert [len(r) for r, _ in batches] == [6, 6, 6, 4]
    rows = np.concatenate([r for r, _ in batches])
    assert rows.tolist() == list(range(22))
    assert torch.equal(
        torch.cat([m for _, m in batches]), expected_maps(plan, "grad_cam", frozenset({5}))
    )
    chosen = [20, 3, 3, 9]
    [(r, m)] = list(run.iter_maps("grad_cam", chosen, batch=10))
    assert r.tolist() == chosen and torch.equal(m, run.maps("grad_cam", chosen))


def test_reading_maps_opens_only_the_needed_shards(tmp_path, monkeypatch):
    plan = ShardPlan(40, 4)
    write_run(tmp_path, plan)
    run = open_run(tmp_path)
    _ = run.names, run.index  # the index and names are read once
    opened: list[str] = []
    real = shards_module.safe_open

    def counting(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(shards_module, "safe_open", counting)
    run.maps("gradient", [13, 14, 12])  # rows 12..14 live in shard 3
    assert opened == ["00003.safetensors"]
    # and with every other shard's maps gone, the read still works
    for p in (tmp_path / "shards").glob("*.safetensors"):
        if p.name != "00003.safetensors":
            p.unlink()
    assert torch.equal(run.maps("gradient", 13), expected_maps(plan, "gradient")[13])


def test_finish_index_is_the_shards_concatenated(tmp_path):
    plan = ShardPlan(19, 4)
    bad = frozenset(range(4, 8)) | {13}  # shard 1 has no good item at all
    write_run(tmp_path, plan, bad)
    run = open_run(tmp_path)
    tables = [pq.read_table(tmp_path / "shards" / f"{s:05d}.parquet") for s in range(plan.shards)]
    assert tables[1].num_rows == 0 and tables[1].schema.field("path").type == pa.null()
    concatenated = pa.concat_tables(tables, promote_options="default")
    assert run.index.equals(concatenated)
    assert run.index.schema.field("path").type == pa.string()
    assert run.index.column_names == ["index", "path", "label", "probability", "shard", "offset"]
    assert run.index.column("shard").to_pylist() == [0] * 4 + [2] * 4 + [3] * 3 + [4] * 3
    assert run.index.column("offset").to_pylist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 0, 1, 2]
    assert [e["index"] for e in run.errors] == [4, 5, 6, 7, 13]
    assert run.errors[0] == {"index": 4, "path": "img/0004.png", "error": "cannot decode"}
    assert run.manifest["images"] == 14 and run.manifest["errors"] == 5
    assert run.shard_maps(1)["gradient"].shape == (0, 1, 5, 6)
    frame = run.to_pandas()
    assert frame["path"].tolist() == run.index.column("path").to_pylist()


def test_unfinished_run_is_read_from_its_finished_shards(tmp_path):
    plan = ShardPlan(12, 3)
    write_run(tmp_path, plan, frozenset({7}), shards=[2, 0], finish=False)
    (tmp_path / "shards" / "00001.safetensors").write_bytes(b"maps without a table")
    run = open_run(tmp_path)
    assert not run.complete and run.done_shards == (0, 2)
    assert run.index.column("index").to_pylist() == [0, 1, 2, 6, 8]
    assert [e["index"] for e in run.errors] == [7]
    assert torch.equal(
        run.maps("grad_cam", 3), shard_inputs(plan, 2, frozenset({7}))[0]["grad_cam"][0]
    )
    with pytest.raises(InvalidOptionError, match=r"shard 1 .* is not done"):
        run.shard_maps(1)


def test_reader_errors(tmp_path):
    write_run(tmp_path, ShardPlan(6, 4))
    run = open_run(tmp_path)
    with pytest.raises(
        InvalidOptionError, match=r"no maps named 'gradcam'.*gradient, grad_cam.*did you mean"
    ):
        run.maps("gradcam", 0)
    with pytest.raises(
        InvalidOptionError, match=r"row 6 is out of range: the run's index has 6 rows \(0\.\.5\)"
    ):
        run.maps("gradient", [0, 6])
    with pytest.raises(InvalidOptionError, match="row -1 is out of range"):
        run.maps("gradient", -1)
    with pytest.raises(InvalidOptionError, match="integer positions"):
        run.maps("gradient", [0.5])  # type: ignore[list-item]
    with pytest.raises(InvalidOptionError, match="batch must be a positive integer"):
        next(run.iter_maps("gradient", batch=0))
    shard = run.shard_maps(0)
    assert list(shard) == ["gradient", "grad_cam"]
    assert torch.equal(shard["grad_cam"], shard_inputs(run.plan, 0)[0]["grad_cam"])
