"""The dataset runner (`seethrough.scale.explain`): every stored map and index column
equals a direct `explain` call on the same images, resume recomputes only missing shards,
bad files are listed and skipped, wrong settings are refused, the model is untouched."""

from __future__ import annotations

import copy
import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import Dataset

import seethrough as st
from helpers import Snapshot
from seethrough.core.focus import focus
from seethrough.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from seethrough.data.images import load_image
from seethrough.data.shards import RunMismatchError
from seethrough.errors import InvalidInputError, InvalidOptionError, TargetError
from seethrough.models import imagenet_labels, load_model
from seethrough.scale import class_mapping, explain_dataset, map_statistics, model_hash
from seethrough.scale import explain as explain_module
from seethrough.scale.explain import _LogitTap
from seethrough.words import imagenet_wnids

# float16 keeps 11 significant bits: a normal value is within 2**-11 relative of its
# float32 source; below 2**-14 (subnormal) the spacing is 2**-24, the error half of it
FLOAT16_RTOL, FLOAT16_ATOL = 2.0**-11, 2.0**-25
METHODS = ("gradient", "grad_cam", "integrated_gradients")


class FashionImages(Dataset):
    """The first ``n`` Fashion-MNIST test images as (model input, label) pairs; item
    ``bad`` (if any) gets label 10, which the 10-class CNN does not have."""

    def __init__(self, n: int, bad: int | None = None) -> None:
        data = load_fashion_mnist("test")
        self.x = data.inputs(0, n)
        self.labels = data.labels[:n].tolist()
        self.bad = bad

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.x[i], 10 if i == self.bad else self.labels[i]


class Unlabelled(FashionImages):
    def __getitem__(self, i: int) -> Tensor:  # type: ignore[override]
        return self.x[i]


@pytest.fixture(scope="module")
def net():
    return load_model("fashion-cnn")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


# ---------------------------------------------------------------- equal to a direct call


def test_maps_and_index_equal_direct_explain(net, tmp_path: Path) -> None:
    data = FashionImages(40)
    calls = [0]

    def count(*_: object) -> None:
        calls[0] += 1

    # once per model, grad_cam traces the model to find its layer: do that first
    st.explain(net, data.x[:1], list(METHODS), torch.tensor(data.labels[:1]))
    handle = net.module.register_forward_hook(count)
    try:
        result = explain_dataset(net, data, METHODS, tmp_path / "run", shard_size=16, batch_size=6)
        run_calls, calls[0] = calls[0], 0
        # the memory layout is decided once per run (two one-row passes), then fixed
        layout = result.open().config["explain"]["layout"]
        assert layout in ("channels_last", "contiguous")
        # batches restart at each shard: 0-5, 6-11, 12-15 | 16-21, 22-27, 28-31 | 32-37, 38-39;
        # batch_size is also the rows per pass
        firsts = [0, 6, 12, 16, 22, 28, 32, 38]
        lasts = [6, 12, 16, 22, 28, 32, 38, 40]
        direct = [
            st.explain(
                net,
                data.x[a:b],
                list(METHODS),
                torch.tensor(data.labels[a:b]),
                seed=a,
                batch_size=6,
                layout=layout,
            )
            for a, b in zip(firsts, lasts)
        ]
        direct_calls = calls[0]
    finally:
        handle.remove()
    # the probabilities come from the calls' own passes: not one forward more than the
    # explanations and the run's layout check
    assert run_calls == direct_calls + 2
    assert (result.shards, result.computed, result.skipped) == (3, (0, 1, 2), ())
    assert (result.images, result.errors) == (40, 0)
    run = result.open()
    index = run.to_pandas()
    assert index["index"].tolist() == list(range(40))
    assert index["label"].tolist() == data.labels
    assert index["target"].tolist() == data.labels
    with torch.no_grad():
        probs = torch.softmax(net.module(data.x).double(), dim=1)
    assert index["predicted"].tolist() == probs.argmax(1).tolist()
    top = probs.max(1).values.numpy()
    np.testing.assert_allclose(index["probability"], top, rtol=1e-5, atol=1e-7)
    own = probs.gather(1, torch.tensor(data.labels)[:, None])[:, 0].numpy()
    np.testing.assert_allclose(index["target_probability"], own, rtol=1e-5, atol=1e-7)
    for m, name in enumerate(METHODS):
        maps = torch.cat([d[m].to_input_size().attributions for d in direct])
        summed = maps.sum(dim=1, keepdim=True)
        stored = run.maps(name)
        assert stored.dtype == torch.float16 and stored.shape == (40, 1, 28, 28)
        assert torch.equal(stored, summed.half())  # same numbers, then the storage cast
        torch.testing.assert_close(stored.float(), summed, rtol=FLOAT16_RTOL, atol=FLOAT16_ATOL)
        stats = map_statistics(maps)
        for stat, values in stats.items():
            np.testing.assert_allclose(index[f"{name}.{stat}"], values, rtol=1e-12, atol=0)
    ig = torch.cat([d[2].relative_completeness_error for d in direct]).double().numpy()
    np.testing.assert_array_equal(index["integrated_gradients.completeness_error"], ig)
    assert "gradient.completeness_error" not in index


def test_full_channels_float32_and_a_plain_module(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 3)
    )
    model.eval()
    x = torch.randn(10, 3, 8, 8)
    data = torch.utils.data.TensorDataset(x, torch.arange(10) % 3)
    options = dict(shard_size=4, batch_size=3, dtype="float32")
    full = explain_dataset(model, data, "gradient", tmp_path / "full", channels="full", **options)
    summed = explain_dataset(model, data, "gradient", tmp_path / "sum", channels="sum", **options)
    maps = full.open().maps("gradient")
    assert maps.dtype == torch.float32 and maps.shape == (10, 3, 8, 8)
    assert torch.equal(summed.open().maps("gradient"), maps.sum(dim=1, keepdim=True))
    layout = full.open().config["explain"]["layout"]  # decided once for the run
    direct = st.explain(
        model, x[:3], "gradient", torch.tensor([0, 1, 2]), batch_size=3, layout=layout
    )
    assert torch.equal(maps[:3], direct.attributions)


def test_map_statistics_hand_values() -> None:
    flat = torch.ones(1, 1, 10, 10)
    peaked = torch.zeros(1, 1, 10, 10)
    peaked[0, 0, :2, :5] = 5.0  # 10 of 100 pixels hold everything
    mixed = torch.zeros(1, 2, 10, 10)
    mixed[0, 0] = 1.0
    mixed[0, 1, 0, 0] = -3.0  # |A| over channels: 4 at one pixel, 1 elsewhere
    stats = map_statistics(torch.cat([flat, peaked]))
    assert stats["top10_share"].tolist() == [pytest.approx(0.1, rel=1e-15), 1.0]
    assert stats["sum"].tolist() == stats["abs_sum"].tolist() == [100.0, 50.0]
    assert (stats["max"].tolist(), stats["min"].tolist()) == ([1.0, 5.0], [1.0, 0.0])
    mix = map_statistics(mixed)
    assert mix["sum"].tolist() == [97.0]
    assert mix["abs_sum"].tolist() == [103.0]
    assert (mix["max"].tolist(), mix["min"].tolist()) == ([1.0], [-3.0])
    assert mix["top10_share"].tolist() == [pytest.approx(13 / 103, rel=1e-15)]
    assert math.isnan(map_statistics(torch.zeros(1, 1, 4, 4))["top10_share"][0])
    # the same number as core.focus's concentration, on maps of every sign
    maps = torch.randn(5, 3, 9, 7, generator=torch.Generator().manual_seed(1))
    expected = [f.concentration for f in focus(maps.double().abs().sum(dim=1))]
    np.testing.assert_allclose(map_statistics(maps)["top10_share"], expected, rtol=1e-12)


def test_logit_tap_keeps_the_last_complete_sweep() -> None:
    x = torch.arange(12.0).reshape(6, 2)
    tap = _LogitTap(x)
    model = nn.Identity()
    tap.hook(model, (x[:1] + 0,), x[:1] * 10)  # a layout probe of row 0
    tap.hook(model, (x[2:4] * 2,), x[2:4])  # a path point: not the rows
    assert tap.logits is None
    for a, b in [(0, 4), (4, 6)]:
        tap.hook(model, (x[a:b].clone(),), x[a:b] + 100)
    assert torch.equal(tap.logits, x + 100)
    tap.hook(model, (x[0:4].clone(),), x[0:4] - 1)  # complete: later passes are not read
    assert torch.equal(tap.logits, x + 100)


# ---------------------------------------------------------------- resume and refusal


def test_resume_recomputes_only_missing_shards(net, tmp_path: Path) -> None:
    out = tmp_path / "run"
    data = FashionImages(30)
    first = explain_dataset(net, data, ["gradient", "smoothgrad"], out, shard_size=8, samples=4)
    before = files(out)
    for suffix in (".parquet", ".safetensors", ".errors.jsonl"):
        next((out / "shards").glob(f"00002{suffix}")).unlink()
    (out / "index.parquet").unlink()
    again = explain_dataset(net, data, ["gradient", "smoothgrad"], out, shard_size=8, samples=4)
    assert first.computed == (0, 1, 2, 3)
    assert (again.computed, again.skipped) == ((2,), (0, 1, 3))
    assert files(out) == before  # byte-identical, random method included
    idle = explain_dataset(net, data, ["gradient", "smoothgrad"], out, shard_size=8, samples=4)
    assert (idle.computed, idle.images) == ((), 30)


def test_other_settings_are_refused_and_nothing_is_lost(net, tmp_path: Path) -> None:
    out = tmp_path / "run"
    data = FashionImages(12)
    explain_dataset(net, data, "gradient", out, shard_size=8)
    before = files(out)
    with pytest.raises(RunMismatchError, match="seed"):
        explain_dataset(net, data, "gradient", out, shard_size=8, seed=1)
    changed = copy.deepcopy(net.module)
    with torch.no_grad():
        next(changed.parameters()).view(-1)[0] += 1e-3
    with pytest.raises(RunMismatchError, match="model"):
        explain_dataset(changed, data, "gradient", out, shard_size=8)
    assert files(out) == before


def test_bad_arguments_are_named(net, tmp_path: Path) -> None:
    data = FashionImages(4)
    with pytest.raises(InvalidOptionError, match="given twice"):
        explain_dataset(net, data, ["gradient", "gradient"], tmp_path / "a")
    with pytest.raises(InvalidOptionError, match="steps"):
        explain_dataset(net, data, "integrated_gradients", tmp_path / "b", stepz=3)
    with pytest.raises(InvalidOptionError, match="channels"):
        explain_dataset(net, data, "gradient", tmp_path / "c", channels="mean")
    with pytest.raises(InvalidOptionError, match="target='predicted'"):
        explain_dataset(net, Unlabelled(4), "gradient", tmp_path / "d")
    predicted = explain_dataset(net, Unlabelled(4), "gradient", tmp_path / "e", target="predicted")
    index = predicted.open().to_pandas()
    assert index["target"].tolist() == index["predicted"].tolist()
    assert index["label"].tolist() == [-1] * 4


# ---------------------------------------------------------------- files, classes, errors


def write_fashion_folder(root: Path, corrupt: int = 0) -> list[tuple[Path, int]]:
    """A few Fashion-MNIST test images as PNGs in folders named by class (Bag, Trouser),
    with ``corrupt`` unreadable files sorted first in Bag; (path, label) in order."""
    data = load_fashion_mnist("test")
    written = []
    for cls in ("Bag", "Trouser"):
        folder = root / cls
        folder.mkdir(parents=True)
        label = FASHION_MNIST_CLASSES.index(cls)
        for k in range(corrupt if cls == "Bag" else 0):
            (folder / f"a{k}.png").write_bytes(b"not an image" if k % 2 else b"\x89PNG\r\n\x1a\n")
        for j, i in enumerate((data.labels == label).nonzero()[:3, 0].tolist()):
            path = folder / f"b{j}.png"
            Image.fromarray(data.images[i].numpy()).save(path)
            written.append((path, label))
    return written


def test_folder_labels_from_model_names_and_bad_files(net, tmp_path: Path) -> None:
    written = write_fashion_folder(tmp_path / "data", corrupt=4)
    snapshot = Snapshot.take(net.module)
    result = explain_dataset(net, tmp_path / "data", "gradient", tmp_path / "run", shard_size=4)
    snapshot.assert_unchanged(net.module)
    # shard 0 holds only the four bad files: written empty, the run goes on
    assert (result.shards, result.images, result.errors) == (3, 6, 4)
    run = result.open()
    errors = run.errors
    assert [e["index"] for e in errors] == [0, 1, 2, 3]
    assert all(e["error"] and e["path"].endswith(f"a{k}.png") for k, e in enumerate(errors))
    assert (tmp_path / "run" / "errors.jsonl").read_text().count("\n") == 4
    index = run.to_pandas()
    # labels from the model's class names (Bag = 8, Trouser = 1), not sorted folder order
    assert index["label"].tolist() == [label for _, label in written]
    assert [Path(p).name for p in index["path"]] == [p.name for p, _ in written]
    # the good images are items 4..9: shard 1 is one batch from item 4, shard 2 from 8
    x = torch.cat([net.preprocess(load_image(p)) for p, _ in written])
    labels = torch.tensor([label for _, label in written])
    for rows, seed in ((slice(0, 4), 4), (slice(4, 6), 8)):
        direct = st.explain(net, x[rows], "gradient", labels[rows], seed=seed, batch_size=64)
        direct = direct.attributions
        stored = run.maps("gradient", list(range(6))[rows])
        assert torch.equal(stored, direct.half())
    assert run.names == ("gradient",)


def test_statistics_thread_writes_what_the_main_thread_writes(
    net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # with a core to spare, a thread makes each batch's columns and stored maps while
    # the model explains the next batch: the files are those of the main-thread path
    threads: list[str] = []

    def statistics(maps: Tensor, top_fraction: float = 0.1) -> dict[str, np.ndarray]:
        threads.append(threading.current_thread().name)
        return map_statistics(maps, top_fraction)

    monkeypatch.setattr(explain_module, "map_statistics", statistics)
    options = dict(methods=["gradient", "grad_cam"], shard_size=8, batch_size=3, limit=20)
    for beside, out in ((False, "main"), (True, "beside")):
        monkeypatch.setattr(explain_module, "_core_to_spare", lambda device, b=beside: b)
        threads.clear()
        explain_dataset(net, "fashion-mnist:test", out=tmp_path / out, **options)
        assert len(threads) == 2 * 8  # shards of 8, 8, 4 in batches of 3: 3 + 3 + 2, 2 methods
        assert all(t.startswith("seethrough-shard") == beside for t in threads)
    assert files(tmp_path / "beside") == files(tmp_path / "main")


def test_an_error_in_the_statistics_thread_is_raised_and_nothing_half_written(
    net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(explain_module, "_core_to_spare", lambda device: True)
    calls: list[str] = []

    def broken(maps: Tensor, top_fraction: float = 0.1) -> dict[str, np.ndarray]:
        calls.append(threading.current_thread().name)
        if len(calls) > 3:  # the first shard (3 batches, one method) is fine
            raise RuntimeError("statistics failed")
        return map_statistics(maps, top_fraction)

    monkeypatch.setattr(explain_module, "map_statistics", broken)
    snapshot = Snapshot.take(net.module)
    with pytest.raises(RuntimeError, match="statistics failed"):
        explain_dataset(
            net,
            "fashion-mnist:test",
            ["gradient"],
            tmp_path / "run",
            shard_size=6,
            batch_size=2,
            limit=18,
        )
    snapshot.assert_unchanged(net.module)
    assert calls[0].startswith("seethrough-shard")  # it ran beside the model
    shards = sorted(p.name for p in (tmp_path / "run" / "shards").iterdir())
    assert shards == ["00000.errors.jsonl", "00000.parquet", "00000.safetensors"]


def test_model_untouched_when_a_shard_fails(net, tmp_path: Path) -> None:
    snapshot = Snapshot.take(net.module)
    with pytest.raises(TargetError):
        explain_dataset(net, FashionImages(12, bad=9), "gradient", tmp_path / "run", shard_size=4)
    snapshot.assert_unchanged(net.module)
    shards = sorted(p.name for p in (tmp_path / "run" / "shards").glob("*.parquet"))
    assert shards == ["00000.parquet", "00001.parquet"]  # kept for the resumed run


# ---------------------------------------------------------------- classes and hashes


def test_class_mapping() -> None:
    assert class_mapping(None) is None
    mapping = class_mapping(["cat", "dog", "cat", "1"])
    assert mapping == {"0": 0, "1": 1, "2": 2, "3": 3, "dog": 1}  # "cat" is ambiguous
    imagenet = class_mapping(imagenet_labels())
    assert imagenet is not None
    wnids = imagenet_wnids()
    assert imagenet[wnids[0]] == 0 and imagenet[wnids[999]] == 999
    assert imagenet["tench"] == 0 and imagenet["999"] == 999
    assert (imagenet["crane bird"], imagenet["crane"]) == (134, 517)  # names are unique here
    fashion = class_mapping(FASHION_MNIST_CLASSES)
    assert fashion is not None and fashion["Ankle boot"] == 9 and "n01440764" not in fashion


def test_model_hash() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    same = copy.deepcopy(model)
    assert model_hash(model) == model_hash(same) == model_hash(load_model(same))
    assert len(model_hash(model)) == 64
    with torch.no_grad():
        same[0].weight.view(-1)[0] = torch.nextafter(same[0].weight.view(-1)[0], torch.tensor(9.0))
    assert model_hash(same) != model_hash(model)
    buffers = copy.deepcopy(model)
    buffers[1].running_mean += 1
    assert model_hash(buffers) != model_hash(model)


def test_config_records_methods_and_source(net, tmp_path: Path) -> None:
    result = explain_dataset(
        net,
        FashionImages(5),
        "integrated_gradients",
        tmp_path / "r",
        steps=8,
        rule="riemann_trapezoid",
    )
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    config = manifest["config"]
    assert config["methods"][0]["name"] == "integrated_gradients"
    assert config["methods"][0]["options"]["steps"] == 8
    assert config["methods"][0]["options"]["rule"] == "riemann_trapezoid"
    assert config["model"] == model_hash(net)
    assert (config["items"], config["shard_size"], config["dtype"]) == (5, 256, "float16")
    assert result.engine == "local"


def test_mixed_sizes_without_a_resizing_transform_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "0"
    folder.mkdir(parents=True)
    for name, size in (("a", 8), ("b", 8), ("c", 9)):
        pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{name}.png")
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    # c.png is alone in its shard and its batch: the run, not the batch, must notice
    with pytest.raises(InvalidInputError, match=r"differ in size: .*a\.png is \(3, 8, 8\)"):
        explain_dataset(model, tmp_path / "data", "gradient", tmp_path / "run", shard_size=2)
    # the first shard (a, b: the same size) was written before the refusal
    assert [p.name for p in (tmp_path / "run" / "shards").glob("*.parquet")] == ["00000.parquet"]
    done = explain_dataset(
        model, tmp_path / "data", "gradient", tmp_path / "run2", transform=Crop8()
    )
    assert done.open().maps("gradient").shape == (3, 1, 8, 8)


class Crop8:
    """A resizing transform: the top-left 8 × 8 pixels, channels first."""

    def __call__(self, raw: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(raw[:8, :8])).permute(2, 0, 1)


def test_batch_warnings_are_said_once_per_kind(net, tmp_path: Path) -> None:
    """IG at its fewest adaptive points misses its tolerance on many images: one warning
    for the run, counting the batches, not one per batch."""
    with pytest.warns(UserWarning, match="integrated gradients") as said:
        done = explain_dataset(
            net,
            "fashion-mnist:test",
            "integrated_gradients",
            tmp_path / "run",
            steps=65,
            tolerance=1e-4,
            limit=48,
            shard_size=16,
            batch_size=8,
        )
    ours = [str(w.message) for w in said if "integrated gradients" in str(w.message)]
    assert len(ours) == 1
    assert ours[0].startswith("6 batches warned, the first: integrated gradients")
    errors = done.open().to_pandas()["integrated_gradients.completeness_error"]
    assert (errors > 1e-4).sum() >= 6  # the images the warning was about are in the index
