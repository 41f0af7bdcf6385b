"""Probes, TCAV and module cards over an ``ImageSource`` (issue 15, part 5): streamed in
batches, the source path gives the tensor path's result on the same images — on real
Fashion-MNIST and on a folder of real photos with a corrupt file — and never holds the
dataset's pixels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from torch import Tensor

from helpers import Snapshot
from seethrough.anatomy import (
    anatomy,
    collect_activations,
    probe_layers,
    source_activations,
    tcav,
)
from seethrough.core.datasets import model_source
from seethrough.data import ImageSource, load_image
from seethrough.data.fashion_mnist import load_fashion_mnist
from seethrough.errors import InvalidInputError
from seethrough.models import LoadedModel, load_model

# class folder (a Fashion-MNIST class index, as the model names it) -> a real photo to crop
PHOTO_CLASSES = {"0": skimage.data.chelsea, "1": skimage.data.coffee, "8": skimage.data.astronaut}
CROPS = 24  # per class


def _crops(load: object, count: int, seed: int) -> list[np.ndarray]:
    image = load()  # type: ignore[operator]
    rng = np.random.default_rng(seed)
    side = min(image.shape[:2]) // 3
    out = []
    for _ in range(count):
        top = int(rng.integers(0, image.shape[0] - side))
        left = int(rng.integers(0, image.shape[1] - side))
        out.append(np.ascontiguousarray(image[top : top + side, left : left + side]))
    return out


@pytest.fixture(scope="module")
def net() -> LoadedModel:
    return load_model("fashion-cnn")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of class subfolders of real photo crops (PNG and JPEG) with one truncated
    file among them."""
    root = tmp_path_factory.mktemp("photos") / "val"
    for k, (folder, load) in enumerate(PHOTO_CLASSES.items()):
        (root / folder).mkdir(parents=True)
        for i, crop in enumerate(_crops(load, CROPS, seed=k)):
            suffix = ".jpg" if i % 3 == 0 else ".png"
            Image.fromarray(crop).save(root / folder / f"{i:03d}{suffix}", quality=92)
    whole = (root / "1" / "001.png").read_bytes()
    (root / "1" / "005b.png").write_bytes(whole[: len(whole) // 2])  # corrupt, sorted mid-class
    return root


def _tensor_of(net: LoadedModel, source: ImageSource) -> tuple[Tensor, Tensor, list[str]]:
    """The readable images of a folder source decoded one by one as a single-image run
    would (``load_image`` + the model's preprocessing), stacked: the tensor path's data."""
    xs, ys, bad = [], [], []
    for i in range(len(source)):
        path, label = source.record(i)
        try:
            image = load_image(path)
        except Exception:  # the corrupt file
            bad.append(path)
            continue
        xs.append(net.preprocess(image)[0])
        ys.append(label)
    return torch.stack(xs), torch.tensor(ys), bad


@pytest.fixture(scope="module")
def photo_data(net: LoadedModel, photos: Path) -> tuple[ImageSource, Tensor, Tensor]:
    source = model_source(net, photos).source
    x, y, bad = _tensor_of(net, source)
    assert len(source) == 3 * CROPS + 1 and len(bad) == 1 and bad[0].endswith("005b.png")
    return source, x, y


def _fashion(net: LoadedModel, n: int) -> tuple[ImageSource, Tensor, Tensor]:
    test = load_fashion_mnist("test")
    source = model_source(net, "fashion-mnist:test", limit=n).source
    return source, test.inputs(0, n), test.labels[:n]


def _same_probe(a: object, b: object) -> None:
    assert a.test_accuracy == b.test_accuracy and a.train_accuracy == b.train_accuracy  # type: ignore[attr-defined]
    assert torch.equal(a.test_index, b.test_index)  # type: ignore[attr-defined]
    torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- probes


def test_fashion_source_probes_equal_the_tensor_path(net: LoadedModel) -> None:
    source, x, y = _fashion(net, 300)
    before = Snapshot.take(net.module)
    assert torch.equal(
        collect_activations(net, source, "conv2", batch_size=64),
        collect_activations(net, x, "conv2", batch_size=64),
    )
    kwargs = {"baselines": True, "batch_size": 128, "seed": 3}
    streamed = probe_layers(net, source, None, ["conv2", "fc1"], **kwargs)  # type: ignore[arg-type]
    given = probe_layers(net, x, y, ["conv2", "fc1"], **kwargs)  # type: ignore[arg-type]
    before.assert_unchanged(net.module)
    assert streamed.skipped == 0 == given.skipped
    for a, b in zip(
        (*streamed.trained, *streamed.random, streamed.pixels),  # type: ignore[misc]
        (*given.trained, *given.random, given.pixels),  # type: ignore[misc]
        strict=True,
    ):
        _same_probe(a, b)
    assert streamed.trained[1].test_accuracy > 0.7  # the CNN's fc1 reads the classes


def test_photo_folder_probes_skip_the_corrupt_file_and_equal_the_tensor_path(
    net: LoadedModel, photo_data: tuple[ImageSource, Tensor, Tensor]
) -> None:
    source, x, y = photo_data
    streamed = probe_layers(net, source, None, ["conv1", "fc1"], batch_size=16, seed=1)
    given = probe_layers(net, x, y, ["conv1", "fc1"], batch_size=16, seed=1)
    assert streamed.skipped == 1 and given.skipped == 0
    for a, b in zip(
        (*streamed.trained, *streamed.random, streamed.pixels),  # type: ignore[misc]
        (*given.trained, *given.random, given.pixels),  # type: ignore[misc]
        strict=True,
    ):
        assert a.test_accuracy == b.test_accuracy
    # the folder's images are decoded per image both ways; only the batching differs (the
    # corrupt file shifts the batch boundaries), so the features agree to float32 rounding
    # — the probes' weights are compared exactly where the batches are the same (Fashion-MNIST
    # above): an iterative fit on 8 images per class amplifies rounding without bound
    for layer in ("conv1", "fc1"):
        features = source_activations(net, source, layer, batch_size=16).features
        torch.testing.assert_close(
            features, collect_activations(net, x, layer, batch_size=16), rtol=1e-5, atol=1e-6
        )


def test_source_probes_refuse_labels_given_apart_and_an_unlabelled_source(
    net: LoadedModel, photos: Path, tmp_path: Path
) -> None:
    source, _, y = _fashion(net, 40)
    with pytest.raises(InvalidInputError, match="labels= is for tensor inputs"):
        probe_layers(net, source, y, ["fc1"])
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, crop in enumerate(_crops(skimage.data.chelsea, 8, seed=0)):
        Image.fromarray(crop).save(flat / f"{i}.png")
    unlabelled = model_source(net, flat).source
    with pytest.raises(InvalidInputError, match=r"has no labels.*folder of class subfolders"):
        probe_layers(net, unlabelled, None, ["fc1"], baselines=False)


# ------------------------------------------------------------------------------ TCAV

TCAV_SETTINGS = {"runs": 2, "null_sets": 9, "alpha": 0.15, "seed": 5, "batch_size": 32}


def _same_tcav(a: object, b: object) -> None:
    for field in ("scores", "cav_accuracy", "null_scores", "null_cav_accuracy"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field), rtol=0, atol=0)
    assert (a.p_value, a.cav_p_value, a.examples) == (b.p_value, b.cav_p_value, b.examples)  # type: ignore[attr-defined]


def test_fashion_source_tcav_equals_the_tensor_path(net: LoadedModel) -> None:
    source, x, _ = _fashion(net, 400)
    train = load_fashion_mnist("train")
    concept = train.inputs(0, 2000)[train.labels[:2000] == 7][:10]  # sneakers
    before = Snapshot.take(net.module)
    streamed = tcav(net, "fc1", concept, source, source, 9, **TCAV_SETTINGS)  # type: ignore[arg-type]
    given = tcav(net, "fc1", concept, x, x, 9, **TCAV_SETTINGS)  # type: ignore[arg-type]
    before.assert_unchanged(net.module)
    _same_tcav(streamed, given)
    assert streamed.skipped == 0 and streamed.null_scores.shape == (9, 2)


def _flat(root: Path, crops: list[np.ndarray], corrupt: str | None) -> Path:
    root.mkdir(parents=True)
    for i, crop in enumerate(crops):
        Image.fromarray(crop).save(root / f"{i:03d}.png")
    if corrupt is not None:
        whole = (root / "000.png").read_bytes()
        (root / corrupt).write_bytes(whole[: len(whole) // 3])
    return root


@pytest.fixture(scope="module")
def tcav_photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tcav")
    pool = [
        c
        for k, load in enumerate(
            (skimage.data.astronaut, skimage.data.rocket, skimage.data.camera, skimage.data.coins)
        )
        for c in _crops(load, 18, seed=10 + k)
    ]
    return {
        "concept": _flat(
            root / "concept", _crops(skimage.data.chelsea, 6, seed=1), corrupt="001b.png"
        ),
        "class": _flat(root / "class", _crops(skimage.data.coffee, 12, seed=2), corrupt="001b.png"),
        "pool": _flat(root / "pool", pool, corrupt=None),
        "bad_pool": _flat(root / "bad_pool", pool, corrupt="045b.png"),
    }


def test_photo_folder_tcav_skips_corrupt_files_and_equals_the_tensor_path(
    net: LoadedModel, tcav_photos: dict[str, Path]
) -> None:
    opened = {k: model_source(net, p).source for k, p in tcav_photos.items()}
    tensors = {k: _tensor_of(net, s)[0] for k, s in opened.items()}
    assert [len(tensors[k]) for k in ("concept", "class", "pool")] == [6, 12, 72]
    streamed = tcav(
        net, "fc1", opened["concept"], opened["pool"], opened["class"], 0, **TCAV_SETTINGS
    )  # type: ignore[arg-type]
    given = tcav(
        net, "fc1", tensors["concept"], tensors["pool"], tensors["class"], 0, **TCAV_SETTINGS
    )  # type: ignore[arg-type]
    _same_tcav(streamed, given)
    assert streamed.skipped == 2 and streamed.examples == 6  # the concept's readable examples


def test_a_corrupt_pool_image_gives_its_place_to_the_next_along_the_permutation(
    net: LoadedModel, tcav_photos: dict[str, Path]
) -> None:
    bad_pool = model_source(net, tcav_photos["bad_pool"]).source
    clean = _tensor_of(net, bad_pool)[0]  # the 72 readable images, in source order
    concept = _tensor_of(net, model_source(net, tcav_photos["concept"]).source)[0]
    klass = _tensor_of(net, model_source(net, tcav_photos["class"]).source)[0]
    streamed = tcav(net, "fc1", concept, bad_pool, klass, 0, **TCAV_SETTINGS)  # type: ignore[arg-type]
    # the rule, rebuilt by hand: the readable images along the seeded permutation of all 73
    order = torch.randperm(73, generator=torch.Generator().manual_seed(5)).tolist()
    bad = 46  # "045b.png" sorts after "045.png"
    readable = [i - (i > bad) for i in order if i != bad]
    assert order.index(bad) < 6 * 11  # the corrupt image is among those drawn
    assert bad_pool.record(bad)[0].endswith("045b.png")
    # a 73-row tensor pool laid out so that the tensor path's draw along the same
    # permutation meets exactly those images (the 73rd slot is never drawn)
    laid_out = torch.empty((73, *clean.shape[1:]))
    sequence = clean[torch.tensor([*readable, readable[-1]])]
    laid_out[torch.tensor(order)] = sequence
    given = tcav(net, "fc1", concept, laid_out, klass, 0, **TCAV_SETTINGS)  # type: ignore[arg-type]
    _same_tcav(streamed, given)
    assert streamed.skipped == 1 and given.skipped == 0


# ---------------------------------------------------------------------- module cards


def test_fashion_source_anatomy_equals_the_tensor_path(net: LoadedModel) -> None:
    source, x, y = _fashion(net, 160)
    settings = {"sweep_size": 48, "probe_size": 120, "seed": 2, "batch_size": 64}
    before = Snapshot.take(net.module)
    streamed = anatomy(net, source, None, ["conv2", "fc1"], **settings)  # type: ignore[arg-type]
    given = anatomy(net, x, y, ["conv2", "fc1"], **settings)  # type: ignore[arg-type]
    before.assert_unchanged(net.module)
    assert streamed.settings["skipped"] == 0
    assert {k: v for k, v in streamed.settings.items() if k != "skipped"} == given.settings
    # accuracies are counts over the same images; losses and gradients are sums over
    # batches that may be taken in another order: equal to float32 rounding
    assert streamed.baseline.accuracy == given.baseline.accuracy
    for a, b in zip(streamed.cards, given.cards, strict=True):
        assert (a.accuracy_drop, a.channel_order, a.cumulative) == (
            b.accuracy_drop,
            b.channel_order,
            b.cumulative,
        )
        torch.testing.assert_close(a.channel_drop, b.channel_drop, rtol=0, atol=0)
        assert a.probe.test_accuracy == b.probe.test_accuracy  # type: ignore[union-attr]
        assert a.random_probe.test_accuracy == b.random_probe.test_accuracy  # type: ignore[union-attr]
        torch.testing.assert_close(a.ablation.loss, b.ablation.loss, rtol=1e-5, atol=1e-6)  # type: ignore[union-attr]
    assert streamed.pixel_probe.test_accuracy == given.pixel_probe.test_accuracy  # type: ignore[union-attr]


def test_photo_folder_anatomy_skips_the_corrupt_file(
    net: LoadedModel, photo_data: tuple[ImageSource, Tensor, Tensor]
) -> None:
    source, x, y = photo_data
    settings = {"sweep_size": None, "probe_size": None, "seed": 0, "batch_size": 16}
    streamed = anatomy(net, source, None, ["conv1"], **settings)  # type: ignore[arg-type]
    given = anatomy(net, x, y, ["conv1"], **settings)  # type: ignore[arg-type]
    assert streamed.settings["skipped"] == 1 and streamed.probes.skipped == 1  # type: ignore[union-attr]
    assert streamed.settings["inputs"] == len(x) + 1 and given.settings["inputs"] == len(x)
    assert streamed.baseline.accuracy == given.baseline.accuracy
    (a,), (b,) = streamed.cards, given.cards
    assert a.accuracy_drop == b.accuracy_drop and a.channel_order == b.channel_order
    assert a.probe.test_accuracy == b.probe.test_accuracy  # type: ignore[union-attr]


# ------------------------------------------------------------------------ the job


def test_anatomy_job_streams_a_source_and_tests_concepts_like_the_tensor_path(
    net: LoadedModel, tcav_photos: dict[str, Path], tmp_path: Path
) -> None:
    from seethrough.jobs.anatomy import labelled_data, labelled_source, run_anatomy

    settings = {
        "modules": ["fc1"],
        "channel_sweep": False,
        "probes": False,
        "concepts": {"cat": str(tcav_photos["concept"])},  # 6 readable crops + a corrupt file
        "concept_class": 0,
        "concept_layer": "fc1",
        "runs": 2,
        "seed": 4,
    }
    streamed_data = labelled_source(net, "fashion-mnist", limit=400)
    assert len(streamed_data.images) == 400 and streamed_data.source == "fashion-mnist"
    streamed = run_anatomy(net, streamed_data, tmp_path / "a", **settings)  # type: ignore[arg-type]
    data = labelled_data(net, "fashion-mnist", limit=400)
    concept = _tensor_of(net, model_source(net, tcav_photos["concept"]).source)[0]
    given = tcav(
        net,
        "fc1",
        concept,
        data.inputs,
        data.inputs[data.labels == 0],
        0,
        concept_name="cat",
        runs=2,
        seed=4,
    )
    (tested,) = streamed.concepts
    _same_tcav(tested, given)
    assert tested.skipped == 1  # the concept folder's corrupt file
    written = json.loads((tmp_path / "a" / "anatomy.json").read_text())
    assert written["data"] == "fashion-mnist" and written["anatomy"]["settings"]["inputs"] == 400
    assert written["concepts"][0]["p_value"] == given.p_value


# --------------------------------------------------------------------------- memory

_MEMORY_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from torch import nn
    from torch.utils.data import Dataset
    from seethrough.anatomy import probe_layers
    from seethrough.data import open_source

    class Synthetic(Dataset):  # (3, 128, 128) model inputs made on demand, 2 classes
        def __init__(self, n): self.n = n
        def __len__(self): return self.n
        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return torch.rand(3, 128, 128, generator=g) + (i % 2), i % 2

    n, whole = int(sys.argv[1]), sys.argv[2] == "tensor"
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(1, 3, 128, 128)); net.eval()
    source = open_source(Synthetic(n))
    if whole:  # the tensor path: every image in memory at once (the control)
        items = [source[i] for i in range(n)]
        x, y = torch.stack([it.pixels for it in items]), torch.tensor([it.label for it in items])
        del items
        table = probe_layers(net, x, y, ["1"], baselines=False, max_features=64)
    else:
        table = probe_layers(net, source, None, ["1"], baselines=False, max_features=64)
    assert table.trained[0].test_accuracy > 0.9, table.trained[0].test_accuracy
    # VmHWM (KiB), not ru_maxrss: after fork + exec, ru_maxrss keeps the forking parent's
    # (pytest's) peak
    print(int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM"))))
    """
)


def _peak_kib(n: int, how: str) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(n), how],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


@pytest.mark.slow
def test_probing_a_source_holds_features_not_pixels() -> None:
    """Peak RSS (VmHWM) for 3,000 streamed images stays within 120 MiB of that for 200 (the
    peak's run-to-run noise is up to ~60 MiB here); the same 3,000 images as a tensor (the
    control: 3,000 × 3 × 128 × 128 float32 = 563 MiB) grow it by more than 300 MiB — so the
    check can fail."""
    small, large = _peak_kib(200, "source"), _peak_kib(3000, "source")
    whole = _peak_kib(3000, "tensor")
    assert large - small < 120 * 1024, (small, large)
    assert whole - small > 300 * 1024, (small, whole)
