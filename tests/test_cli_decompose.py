"""``seethrough decompose concepts|circuit`` and ``explain --methods lrp,deeplift,deepshap``:
bad input is one line and exit 2 with nothing written; a run writes exactly its files, its
JSON holds the library's numbers on the same inputs, and its pages render in a browser."""

from __future__ import annotations

import contextlib
import io
import json
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

import test_cli
from seethrough.models import LoadedModel
from test_cli import TINY_MODULE, run_cli, tree
from test_cli_startup import _imported_after

assets = test_cli.assets  # the CLI tests' fixtures: the tiny model and its image files
tiny = test_cli.tiny


def _cli(*args: str) -> tuple[int, str, str]:
    """The CLI in-process, outside a test (module fixtures): exit code, stdout, stderr."""
    from seethrough.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _tiny_net(assets: Path) -> LoadedModel:
    from seethrough.models import load_model

    return load_model(
        f"{TINY_MODULE}:build", weights=assets / "tiny.safetensors", labels=assets / "labels.txt"
    )


def _one_line(result: test_cli.Run, message: str) -> None:
    assert result.code == 2, result.err
    assert message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layer", "featurs"], "did you mean 'features'"),
        ([], f"--layer is required for model '{TINY_MODULE}:build'"),
        (["--layer", "features", "--top", "0"], "Invalid value for '--top'"),
        (["--layer", "features", "--top", "7"], "top=7 asks for more channels than layer"),
        (["--layer", "features", "--composite", "epsilon_plus_flt"], "did you mean"),
        (["--layer", "features", "--rank", "absolute"], "unknown rank 'absolute'"),
        (["--layer", "features", "--target", "zebra"], "unknown class name 'zebra'"),
        (["--layer", "features", "--data", "nowhere"], "--data 'nowhere': not 'fashion-mnist"),
        (["--layer", "features", "--data", "fashion-mnist:val"], "unknown split 'val'"),
        (["--layer", "features", "--data", "fashion-mnist"], "holds 28×28 grayscale images"),
        (["--layer", "features", "--limit", "5"], "--limit goes with --data"),
        (["--layer", "features", "--no-visualize", "--steps", "3"], "--no-visualize skips"),
        (["--layer", "features", "--lang", "fr"], "Invalid value for '--lang'"),
    ],
)
def test_concepts_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path,
    assets: Path,
    tiny: list[str],
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "out"
    image = str(assets / "a.png")
    result = run_cli(capsys, "decompose", "concepts", image, *tiny, *extra, "-q", "--out", str(out))
    _one_line(result, message)
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--class", "Coat", "--keep", "1.5"], "Invalid value for '--keep': 1.5 is not in"),
        (["--class", "Coat", "--keep", "0"], "Invalid value for '--keep'"),
        (["--class", "Cot"], "unknown class name 'Cot'"),
        (["--class", "Coat,4"], "class 4 is given twice"),
        (["--class", "Coat,"], "--class 'Coat,' has an empty item"),
        (["--class", "11"], "out of range"),
        (["--class", "Coat", "--layers", "pool3"], "did you mean 'pool2'"),
        (["--class", "Coat", "--ablation", "men"], "unknown ablation 'men'; did you mean 'mean'"),
        (["--class", "Coat", "--data", "nowhere"], "not a folder of class subfolders"),
        (["--class", "Coat", "--held-out", "1"], "Invalid value for '--held-out'"),
        (["--class", "3", "--model", "efficientnet-lite0"], "holds 28×28 grayscale images"),
        ([], "Missing option '--class'"),
    ],
)
def test_circuit_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    args = ["decompose", "circuit", "--device", "cpu", "--limit", "40", *extra]
    _one_line(run_cli(capsys, *args, "--out", str(out)), message)
    assert not out.exists()


def test_help_imports_no_heavy_module_and_names_match_the_library() -> None:
    code = (
        "from seethrough.cli import main\n"
        "for command in (['decompose'], ['decompose', 'concepts'], ['decompose', 'circuit']):\n"
        "    assert main([*command, '--help']) == 0\n"
        "assert main(['decompose', 'circuit', '--class', 'Coat', '--keep', '2']) == 2\n"
        "assert main(['decompose', 'concepts', '--composite', 'nope']) == 2\n"
    )
    assert _imported_after(code) == []
    from seethrough import decompose
    from seethrough.cli import decompose as cli_decompose
    from seethrough.core.relevance import composite_names
    from seethrough.jobs import decompose as job

    assert sorted(cli_decompose.COMPOSITES) == sorted(composite_names())
    assert cli_decompose.COMPOSITES[0] == "epsilon_plus_flat"  # the library's default
    assert cli_decompose.RANKS == decompose.RANKS
    assert cli_decompose.ABLATIONS == decompose.ABLATIONS
    assert cli_decompose.DEFAULT_LAYERS == job.DEFAULT_LAYERS
    assert cli_decompose.STEPS == job.STEPS


# ---------------------------------------------------------------------- linking


def test_a_conv_with_a_folded_batch_norm_is_linked_at_the_batch_norm() -> None:
    """Concept relevance folds ``bn`` into ``conv``: what a hook on ``conv`` sees under the
    relevance rule is ``bn``'s output in a plain forward pass (to float32 rounding), not
    the conv's own output — so the examples and the optimised image of a channel of
    ``conv`` must be taken at ``bn``."""
    from seethrough.core.relevance import RelevanceRule, make_composite
    from seethrough.jobs.decompose import link_layer

    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
    head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    net = nn.Sequential(OrderedDict(conv=conv, bn=bn, relu=nn.ReLU(), head=head)).eval()
    assert bn.running_mean is not None and bn.running_var is not None
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    assert link_layer(net, "conv") == "bn"
    assert link_layer(net, "relu") == "relu" and link_layer(net, "head.1") == "head.1"
    x = torch.randn(2, 3, 8, 8)
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable[..., None]:
        return lambda m, i, o: seen.__setitem__(name, o.detach().clone())

    handles = [conv.register_forward_hook(keep("canonized")), bn.register_forward_hook(keep("bn"))]
    with RelevanceRule(make_composite("epsilon_plus_flat"), net):
        net(x.requires_grad_())
    canonized = seen["canonized"]
    net(x)
    for h in handles:
        h.remove()
    torch.testing.assert_close(canonized, seen["bn"], rtol=1e-5, atol=1e-5)
    assert (canonized - conv(x)).abs().max() > 0.1  # the conv alone is something else


# ---------------------------------------------------------------------- concepts


@pytest.fixture(scope="module")
def fashion_concepts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Concept relevance of the Fashion-MNIST CNN's conv2 for two photos, linked to the
    first 200 test images and to 3-step activation maximization."""
    out = tmp_path_factory.mktemp("concepts") / "out"
    code, _, err = _cli(
        "decompose", "concepts", "sample:chelsea", "sample:coffee", "--model", "fashion-cnn",
        "--layer", "conv2", "--top", "3", "--data", "fashion-mnist", "--limit", "200",
        "--examples", "4", "--steps", "3", "--device", "cpu", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    return out, err


def test_concepts_write_their_files_and_the_librarys_numbers(
    fashion_concepts: tuple[Path, str],
) -> None:
    from seethrough.data import load_images
    from seethrough.data.fashion_mnist import load_fashion_mnist
    from seethrough.decompose import concepts
    from seethrough.inside import channels, maximize, top_examples
    from seethrough.models import load_model

    out, err = fashion_concepts
    files = ["concepts-000.png", "concepts.json", "concepts.safetensors", "index.html"]
    assert sorted(tree(out)) == sorted([*files, "links-000.png"])
    summary = json.loads((out / "concepts.json").read_text(encoding="utf-8"))
    assert sorted(summary["files"]) == sorted(tree(out))
    net = load_model("fashion-cnn")
    x = net.preprocess(load_images(["sample:chelsea", "sample:coffee"]))
    crp = concepts(net, x, "conv2", top=3)
    c = summary["concepts"]
    assert "heatmaps" not in c and "inputs" not in c  # tensors: concepts.safetensors
    assert torch.equal(torch.tensor(c["channel_relevance"]), crp.channel_relevance)
    assert c["top_channels"] == crp.top_channels.tolist()
    assert torch.equal(torch.tensor(c["top_share"]), crp.top_share)
    assert c["targets"] == crp.targets.tolist()
    tensors = load_file(str(out / "concepts.safetensors"))
    assert torch.equal(tensors["heatmaps"], crp.heatmaps)
    assert torch.equal(tensors["inputs"], x)
    # the linked channels: every top channel once, in order of first appearance
    ids = list(dict.fromkeys(crp.top_channels.flatten().tolist()))
    assert [ch["channel"] for ch in summary["channels"]] == ids
    assert summary["linked_layer"] == "conv2"  # no batch norm after it
    tops = top_examples(net, load_fashion_mnist("test").inputs(0, 200), "conv2", channels=ids, k=4)
    hits = summary["top_examples"]["channels"]
    assert [[h["image"] for h in ch["hits"]] for ch in hits] == tops.indices.tolist()
    assert torch.equal(torch.tensor([[h["value"] for h in ch["hits"]] for ch in hits]), tops.values)
    labels = load_fashion_mnist("test").labels
    assert net.labels is not None
    assert hits[0]["hits"][0]["name"].endswith(net.labels[int(labels[tops.indices[0, 0]])])
    vis = maximize(net, channels("conv2", ids), steps=3, seed=0, input_size=28)
    assert torch.equal(torch.tensor(summary["visualization"]["values"]), vis.values)
    assert torch.equal(tensors["maximization"], vis.images)
    assert [f["text"] for f in summary["description"]["findings"]] == crp.describe().sentences()
    assert crp.describe().sentences()[0] in err  # the notes


def test_concepts_and_circuit_pages_in_a_real_browser(
    fashion_concepts: tuple[Path, str], fashion_circuit: tuple[Path, str]
) -> None:
    from browser import check_page

    for out, summary_file, shot in (
        (fashion_concepts[0], "concepts.json", "pages-decompose-concepts.png"),
        (fashion_circuit[0], "circuit.json", "pages-decompose-circuit.png"),
    ):
        check = check_page(out / "index.html", screenshot=shot)
        assert check.console_errors == ()
        assert check.outside() == ()  # only files of its own folder
        assert check.broken_images == ()
        assert check.serious_violations == ()
        assert check.scripts == 0
        assert check.images == len([f for f in tree(out) if f.endswith(".png")])
        summary = json.loads((out / summary_file).read_text(encoding="utf-8"))
        description = summary["description"]
        first = (description if isinstance(description, list) else [description])[0]
        assert first["findings"][0]["text"] in check.text


# ---------------------------------------------------------------------- circuit


@pytest.fixture(scope="module")
def fashion_circuit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The circuits of Coat and Trouser at pool2 of the Fashion-MNIST CNN on the first 100
    test images (half held out), keeping 60 %, with the pruned models."""
    out = tmp_path_factory.mktemp("circuit") / "out"
    code, _, err = _cli(
        "decompose", "circuit", "--limit", "100", "--class", "Coat,1", "--keep", "0.6",
        "--save-pruned", "--device", "cpu", "--lang", "zh", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    return out, err


def test_circuit_writes_its_files_and_the_librarys_numbers(
    fashion_circuit: tuple[Path, str],
) -> None:
    from seethrough.data.fashion_mnist import load_fashion_mnist
    from seethrough.decompose import circuit, circuit_overlap
    from seethrough.models import load_model
    from seethrough.reporting.serialize import to_jsonable

    out, err = fashion_circuit
    assert sorted(tree(out)) == sorted(
        [
            "circuit-Coat.png",
            "circuit-Trouser.png",
            "circuit-overlap.png",
            "circuit.json",
            "index.html",
            "pruned-Coat.safetensors",
            "pruned-Trouser.safetensors",
        ]
    )
    summary = json.loads((out / "circuit.json").read_text(encoding="utf-8"))
    assert sorted(summary["files"]) == sorted(tree(out))
    net = load_model("fashion-cnn")
    test = load_fashion_mnist("test")
    data = (test.inputs(0, 100), test.labels[:100])
    ours = [circuit(net, data, cls, keep=0.6, seed=0) for cls in ("Coat", "Trouser")]
    for written, c in zip(summary["circuits"], ours, strict=True):
        expected = to_jsonable(c)
        for key in ("seconds", "settings"):  # wall time; batching notes of the run
            written.pop(key), expected.pop(key)
        assert written == expected
        assert "module" not in written and "fills" not in written
        pruned = load_file(str(out / f"pruned-{c.class_name}.safetensors"))
        state = c.pruned_model().state_dict()
        assert sorted(pruned) == sorted(state)
        assert all(torch.equal(pruned[k], state[k]) for k in state)
    overlap = circuit_overlap(ours)
    assert summary["overlap"]["jaccard"] == overlap.jaccard.tolist()
    assert summary["overlap"]["classes"] == ["Coat", "Trouser"]
    sentences = [f["text"] for d in summary["description"] for f in d["findings"]]
    assert sentences == [
        *ours[0].describe().sentences("zh"),
        *ours[1].describe().sentences("zh"),
        *overlap.describe().sentences("zh"),
    ]
    assert f"Coat: {ours[0].size} of 64 channels" in err


# ---------------------------------------------------------------------- explain


def _references(folder: Path) -> Path:
    refs = folder / "refs"
    (refs / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("r1.png", "sub/r2.png"):
        Image.fromarray(rng.integers(0, 256, size=(30, 30, 3), dtype=np.uint8)).save(refs / name)
    return refs


def test_explain_reaches_lrp_deeplift_and_deepshap_with_their_options(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--set lrp.composite=...`` and ``--references FOLDER`` arrive; the maps are the
    library's on the same inputs, and the page and summary say what the references are."""
    from seethrough import explain
    from seethrough.attribution import make_method
    from seethrough.data import load_images

    refs = _references(tmp_path)
    images = [str(assets / "a.png"), str(assets / "b.png")]
    out = tmp_path / "out"
    result = run_cli(
        capsys, "explain", *images, *tiny, "--methods", "lrp,deeplift,deepshap",
        "--set", "lrp.composite=epsilon_gamma_box", "--set", "deeplift.baseline=blur",
        "--references", str(refs), "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert f"references of deepshap: 2 images from {refs}" in result.err
    net = _tiny_net(assets)
    x = net.preprocess(load_images(images))
    batch = net.preprocess(load_images(str(refs), recursive=True))
    methods = [
        make_method("lrp", composite="epsilon_gamma_box"),
        make_method("deeplift", baseline="blur"),
        make_method("deepshap", baselines=batch),
    ]
    saved = load_file(str(out / "attributions.safetensors"))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    entries = {m["method"]: m for m in summary["methods"]}
    for method in methods:
        ex = explain(net, x, method)
        torch.testing.assert_close(saved[f"{method.name}.attributions"], ex.attributions)
    assert entries["lrp"]["composite"] == "epsilon_gamma_box"
    assert any("ZBox" in rule for rule in entries["lrp"]["rules"])  # the box rule fired
    assert entries["deepshap"]["settings"]["baselines"] == "tensor(2, 3, 224, 224)"
    assert summary["references"] == f"2 images from {refs}"
    page = (out / "index.html").read_text(encoding="utf-8")
    assert f"2 images from {refs}" in page and "summation to delta" in page
    for row in entries["deepshap"]["rows"]:
        assert abs(row["relative_summation_error"]) < 1e-4


def test_deepshap_without_references_uses_the_bundled_photos(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from seethrough import explain
    from seethrough.attribution import make_method
    from seethrough.data import SAMPLES, load_images

    out = tmp_path / "out"
    image = str(assets / "a.png")
    result = run_cli(capsys, "explain", image, *tiny, "--methods", "deepshap", "--out", str(out))
    assert result.code == 0, result.err
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["references"] == "the 24 bundled sample photos" and len(SAMPLES) == 24
    net = _tiny_net(assets)
    batch = net.preprocess(load_images([f"sample:{s}" for s in SAMPLES]))
    ex = explain(
        net, net.preprocess(load_images([image])), make_method("deepshap", baselines=batch)
    )
    saved = load_file(str(out / "attributions.safetensors"))
    torch.testing.assert_close(saved["deepshap.attributions"], ex.attributions)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "gradient", "--references", "x"], "--references is used by deepshap"),
        (["--methods", "deepshap", "--set", "deepshap.baselines=3"], "come from --references"),
        (["--methods", "deepshap", "--set", "deepshap.eps=-1"], "deepshap"),
        (["--methods", "deepshap", "--references", "fashion-mnist"], "holds 28×28 grayscale"),
        (["--methods", "deepshap", "--references", "fashion-mnist:val"], "unknown split 'val'"),
        (["--methods", "deepshap", "--references", "nowhere"], "nowhere"),
        (["--methods", "lrp", "--set", "lrp.composite=epsilon_plux"], "epsilon_plux"),
    ],
)
def test_explain_reference_errors_are_one_line(
    tmp_path: Path,
    assets: Path,
    tiny: list[str],
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "out"
    result = run_cli(capsys, "explain", str(assets / "a.png"), *tiny, *extra, "--out", str(out))
    _one_line(result, message)
    assert not out.exists()


# ---------------------------------------------------------------------- slow


@pytest.mark.slow
def test_concepts_on_lite0_default_layer_linked_at_the_block_output(tmp_path: Path) -> None:
    """No --layer on EfficientNet-Lite0: _blocks.12, a block output (linked there); a
    conv with a folded batch norm is linked at the batch norm."""
    refs = _references(tmp_path)
    out = tmp_path / "out"
    code, _, err = _cli(
        "decompose", "concepts", "sample:chelsea", "--top", "2", "--steps", "1",
        "--data", str(refs), "--examples", "2", "--device", "cpu", "-q", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads((out / "concepts.json").read_text(encoding="utf-8"))
    assert summary["layer"] == summary["linked_layer"] == "_blocks.12"
    assert summary["concepts"]["top_channels"][0][0] == 127  # docs/concepts.md: chelsea
    out = tmp_path / "conv"
    code, _, err = _cli(
        "decompose", "concepts", "sample:chelsea", "--layer", "_blocks.12._project_conv",
        "--top", "2", "--no-visualize", "--data", str(refs), "--examples", "2",
        "--device", "cpu", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads((out / "concepts.json").read_text(encoding="utf-8"))
    assert summary["linked_layer"] == summary["top_examples"]["layer"] == "_blocks.12._bn2"
    assert "linked at _blocks.12._bn2" in err
    assert "_blocks.12._bn2" in (out / "index.html").read_text(encoding="utf-8")
