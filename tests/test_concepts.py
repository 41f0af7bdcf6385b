"""Concept relevance (CRP, Achtibat et al. 2023): equal to zennit-crp on a VGG, channel
relevances that add up to the layer's relevance, conditional heatmaps that add up to the
heatmap through the layer, Lite0 on a real photo, words that round-trip, clear errors, and
the model untouched."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import seethrough as st
from helpers import Failing, Snapshot, tiny_inputs, tiny_model
from seethrough.decompose import concepts
from seethrough.decompose.concepts import ConceptRelevance
from seethrough.errors import InvalidOptionError, LayerError, NonFiniteError, TargetError
from seethrough.reporting.serialize import to_jsonable
from seethrough.viz import plot_concepts
from words_helpers import assert_round_trip

crp_attribution = pytest.importorskip("crp.attribution")
crp_concepts = pytest.importorskip("crp.concepts")
zennit_composites = pytest.importorskip("zennit.composites")
zennit_torchvision = pytest.importorskip("zennit.torchvision")
torchvision = pytest.importorskip("torchvision")

RTOL = 1e-5
"""Agreement with zennit-crp in float32: max |ours − theirs| / max |theirs| per quantity."""


def _relative(ours: Tensor, theirs: Tensor) -> float:
    """max |ours − theirs| / max |theirs| (the max norm of the difference, relative)."""
    return float((ours - theirs).abs().max() / theirs.abs().max())


# ------------------------------------------------------------------ zennit-crp oracle


def _vgg16_bn(eps: float = 1e-12) -> nn.Module:
    """torchvision's VGG-16 with batch norm, random weights and non-trivial BN statistics
    (default ones would make the canonizer's merge an identity).

    Zennit 0.4.6's ``MergeBatchNorm`` keeps each merged batch norm's ``eps``, so that batch
    norm then computes ``x / √(1 + eps)`` instead of ``x`` (fixed upstream in
    chr5tphr/zennit#171, after 0.4.6); our fold is exact. With ``eps = 1e-12`` the two
    agree; at the default 1e-5 they differ by ~5e-6 per batch norm
    (:func:`test_zennit_046_merge_keeps_eps_and_scales_relevance`)."""
    torch.manual_seed(0)
    net = torchvision.models.vgg16_bn(weights=None)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = eps
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def _crp_channel_relevance(net: nn.Module, x: Tensor, layer: str, targets: list[int]) -> Tensor:
    """zennit-crp: ``(N, C)`` channel relevance of ``layer`` (``abs_norm=False``). It runs on
    ``net`` itself (a copy of VGG-16 costs seconds): it freezes the parameters for good
    (``no_param_grad``) and restores what its canonizer and hooks change."""
    attribution = crp_attribution.CondAttribution(net)
    composite = zennit_composites.EpsilonPlusFlat(canonizers=[zennit_torchvision.VGGCanonizer()])
    data = x.clone().requires_grad_(True)
    result = attribution(data, [{"y": [t]} for t in targets], composite, record_layer=[layer])
    relevance = result.relevances[layer]
    return crp_concepts.ChannelConcept().attribute(relevance, abs_norm=False)


def _crp_heatmaps(
    net: nn.Module, x: Tensor, layer: str, target: int, channels: list[int]
) -> Tensor:
    """zennit-crp: ``(len(channels), H, W)`` conditional heatmaps of one image."""
    attribution = crp_attribution.CondAttribution(net)
    composite = zennit_composites.EpsilonPlusFlat(canonizers=[zennit_torchvision.VGGCanonizer()])
    data = x.clone().requires_grad_(True)
    conditions = [{"y": [target], layer: [c]} for c in channels]
    return attribution(data, conditions, composite).heatmap.detach()


@pytest.fixture(scope="module")
def vgg() -> tuple[nn.Module, Tensor]:
    net = _vgg16_bn()
    torch.manual_seed(1)
    return net, torch.randn(2, 3, 32, 32)


@pytest.mark.parametrize(
    ("layer", "dtype", "rtol"),
    [
        ("features.40", torch.float32, RTOL),
        ("features.20", torch.float32, RTOL),
        ("classifier.3", torch.float32, RTOL),
        pytest.param("features.40", torch.float64, 1e-9, marks=pytest.mark.slow),
    ],
)
def test_equals_zennit_crp_on_vgg16_bn(
    vgg: tuple[nn.Module, Tensor], layer: str, dtype: torch.dtype, rtol: float
) -> None:
    """Channel relevances and the top channels' conditional heatmaps equal zennit-crp's
    (EpsilonPlusFlat with the VGG canonizer) to ``rtol`` in the max norm: a late conv
    (hooked after the batch norm is merged into it), a middle one and a fully connected
    layer (measured: channel relevance bitwise equal in float32, heatmaps ≤ 7.5e-6; in
    float64 ≤ 1.3e-11, the remaining √(1 + 1e-12) of Zennit's merge)."""
    net = vgg[0] if dtype == torch.float32 else copy.deepcopy(vgg[0]).to(dtype)
    x = vgg[1].to(dtype)
    targets = [3, 7]
    ours = concepts(net, x, layer, target=targets, top=4, batch_size=3)
    theirs = _crp_channel_relevance(net, x, layer, targets)
    assert _relative(ours.channel_relevance, theirs) <= rtol
    assert _relative(ours.total_relevance, theirs.sum(1)) <= rtol
    expected_top = torch.sort(theirs, dim=1, descending=True, stable=True).indices[:, :4]
    assert torch.equal(ours.top_channels, expected_top)
    for row, target in enumerate(targets):
        heatmaps = _crp_heatmaps(net, x[row : row + 1], layer, target, expected_top[row].tolist())
        assert _relative(ours.heatmaps[row], heatmaps) <= rtol


def test_zennit_046_merge_keeps_eps_and_scales_relevance(vgg: tuple[nn.Module, Tensor]) -> None:
    """Where we differ on purpose: at the default ``eps = 1e-5`` Zennit 0.4.6's merged batch
    norms compute ``x / √(1 + eps)``, so zennit-crp's channel relevance of ``classifier.3``
    (13 batch norms below it) is off by more than 1e-5 from ours, whose fold is exact —
    and by less than 1e-3, which a wrong rule would exceed (measured: 2.7e-5)."""
    net, x = vgg
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        for m in norms:
            m.eps = 1e-5
        ours = concepts(net, x[:1], "classifier.3", target=3, top=1)
        theirs = _crp_channel_relevance(net, x[:1], "classifier.3", [3])
    finally:
        for m in norms:
            m.eps = 1e-12
    assert 1e-5 < _relative(ours.channel_relevance, theirs) < 1e-3


# ------------------------------------------------------------------ properties


def test_channel_relevances_sum_to_the_layer_total_and_each_channel_reaches_the_input() -> None:
    """With the ε rule without bias (``bias=False``: LRP conserves relevance exactly), the
    channels' relevances sum to the layer's total relevance, which equals the target
    score, and each top channel's conditional heatmap sums to that channel's relevance:
    what a channel carries arrives at the input, no more, no less (float64)."""
    net, x = tiny_model(), tiny_inputs(3)
    result = concepts(
        net,
        x,
        "conv2",
        top=3,
        composite="epsilon",
        composite_options={"bias": False, "epsilon": 1e-12},
    )
    torch.testing.assert_close(
        result.channel_relevance.sum(1), result.total_relevance, rtol=1e-12, atol=0
    )
    torch.testing.assert_close(result.total_relevance, result.scores, rtol=1e-8, atol=0)
    torch.testing.assert_close(
        result.heatmaps.sum((2, 3)), result.top_relevance, rtol=1e-8, atol=1e-12
    )


def test_every_channels_conditional_heatmap_adds_up_to_the_lrp_heatmap() -> None:
    """Linearity: the conditional heatmaps of all channels of a layer sum to the heatmap
    of everything that passes through it, which — every path of this network passes
    through ``conv2`` — is the plain LRP heatmap of ``st.explain(..., "lrp")`` summed over
    colour channels (float64, default composite epsilon_plus_flat)."""
    net, x = tiny_model(), tiny_inputs(2)
    result = concepts(net, x, "conv2", channels=list(range(8)), batch_size=5)
    lrp = st.explain(net, x, "lrp", composite="epsilon_plus_flat").attributions.sum(1)
    torch.testing.assert_close(result.heatmaps.sum(1), result.heatmap, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(result.heatmap, lrp, rtol=1e-10, atol=1e-14)
    assert result.rank == "given"
    assert result.top_channels.tolist() == [list(range(8))] * 2


def test_batch_size_does_not_change_the_numbers_and_top_is_ranked() -> None:
    net, x = tiny_model(), tiny_inputs(3)
    one = concepts(net, x, "conv2", top=5, batch_size=1)
    many = concepts(net, x, "conv2", top=5, batch_size=7)
    torch.testing.assert_close(one.heatmaps, many.heatmaps, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(one.channel_relevance, many.channel_relevance)
    # signed rank: descending relevance; abs rank: descending magnitude
    assert bool((one.top_relevance[:, :-1] >= one.top_relevance[:, 1:]).all())
    magnitude = concepts(net, x, "conv2", top=5, rank="abs")
    assert bool(
        (magnitude.top_relevance.abs()[:, :-1] >= magnitude.top_relevance.abs()[:, 1:]).all()
    )
    torch.testing.assert_close(
        one.top_share, one.top_relevance / one.channel_relevance.abs().sum(1, keepdim=True)
    )


def test_topk_targets_explain_each_image_once_per_class() -> None:
    net, x = tiny_model(), tiny_inputs(2)
    result = concepts(net, x, "conv3", target="top2", top=2)
    logits = net(x)
    assert result.image_index.tolist() == [0, 0, 1, 1]
    assert result.targets.tolist() == logits.topk(2, dim=1).indices.reshape(-1).tolist()
    single = concepts(net, x[1:], "conv3", target=int(result.targets[3]), top=2)
    torch.testing.assert_close(result.heatmaps[3], single.heatmaps[0])


def test_a_callable_target_is_seeded_with_its_own_score() -> None:
    """A callable picking logit 2 gives the numbers of ``target=2``; its rows have class
    ``-1``, no predicted class, and the words name "the target score"."""
    net, x = tiny_model(), tiny_inputs(2)
    picked = concepts(net, x, "conv2", target=lambda out: out[:, 2], top=3)
    fixed = concepts(net, x, "conv2", target=2, top=3)
    torch.testing.assert_close(picked.heatmaps, fixed.heatmaps, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(picked.channel_relevance, fixed.channel_relevance)
    assert picked.targets.tolist() == [-1, -1] and picked.predicted is None
    assert "the target score (score" in str(picked.describe())
    assert_round_trip(picked.describe(), to_jsonable(picked))


def test_non_finite_relevance_is_an_error_naming_the_rows() -> None:
    net, x = tiny_model(), tiny_inputs(3)
    with torch.no_grad():
        net.fc.bias[2] = float("inf")  # an infinite score for class 2: NaN relevance
    with pytest.raises(NonFiniteError, match=r"not finite \(NaN or inf\) for rows \[0, 2\]"):
        concepts(net, x, "conv2", target=[2, 1, 2], top=2)


# ------------------------------------------------------------------ a real network


def test_efficientnet_lite0_on_a_photo() -> None:
    """Lite0 at ``_blocks.12`` on chelsea (a cat): six channels with their conditional
    heatmaps; the channels carry the layer's relevance, the heatmaps are finite and
    shaped like the image, and the model is untouched."""
    net = st.load_model("efficientnet-lite0")
    x = net.preprocess(st.load_images(["sample:chelsea"]))
    before = Snapshot.take(net.module, x)
    result = concepts(net, x, "_blocks.12", top=6)
    before.assert_unchanged(net.module, x)
    assert result.class_names is not None
    assert result.class_names[int(result.targets[0])] in {"tabby", "tiger cat", "Egyptian cat"}
    assert result.heatmaps.shape == (1, 6, 224, 224)
    assert bool(torch.isfinite(result.heatmaps).all())
    torch.testing.assert_close(
        result.channel_relevance.sum(1), result.total_relevance, rtol=1e-5, atol=0
    )
    assert float(result.coverage[0]) > 0
    assert "_blocks.12" in str(result.describe())


# ------------------------------------------------------------------ words and figure


def test_describe_round_trips_every_number() -> None:
    net, x = tiny_model(), tiny_inputs(2)
    for kwargs in ({}, {"rank": "abs"}, {"channels": [4, 1]}):
        result = concepts(net, x, "conv2", top=3, **kwargs)
        description = result.describe()
        assert len(description.findings) == 3
        assert_round_trip(description, to_jsonable(result))
        assert "conv2" in description.text("zh")


def test_plot_concepts_draws_one_row_per_image_with_each_channel() -> None:
    net, x = tiny_model(), tiny_inputs(3)
    result = concepts(net, x, "conv2", top=3)
    figure = plot_concepts(result, rows=[0, 2])
    axes = figure.axes
    assert len(axes) == 2 * (3 + 2)
    titles = [ax.get_title() for ax in axes]
    assert titles[2].startswith(f"ch {int(result.top_channels[0, 0])}\n")
    assert titles[5 + 4].startswith(f"ch {int(result.top_channels[2, 2])}\n")
    with pytest.raises(InvalidOptionError, match="row indices 0 to 2"):
        plot_concepts(result, rows=[3])


# ------------------------------------------------------------------ errors, state


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"layer": "conv9"}, LayerError, "no layer 'conv9' in TinyCNN; did you mean"),
        ({"top": 0}, InvalidOptionError, "top must be a positive integer"),
        ({"top": 9}, InvalidOptionError, "top=9 asks for more channels than layer 'conv2' has"),
        ({"channels": [1, 8]}, InvalidOptionError, "channel 8 does not exist"),
        ({"channels": [1, 1]}, InvalidOptionError, "lists a channel twice"),
        ({"rank": "magnitude"}, InvalidOptionError, "unknown rank 'magnitude'"),
        ({"target": 5}, TargetError, "out of range"),
        ({"composite": "epsilon_plus_flatt"}, InvalidOptionError, "epsilon_plus_flat"),
    ],
)
def test_bad_input_is_a_clear_error_and_leaves_the_model_untouched(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    net, x = tiny_model(), tiny_inputs(2)
    before = Snapshot.take(net, x)
    options: dict[str, Any] = {"layer": "conv2", **kwargs}
    with pytest.raises(error, match=match):
        concepts(net, x, options.pop("layer"), **options)
    before.assert_unchanged(net, x)


@pytest.mark.parametrize("fail_on", [1, 2, 3])
def test_model_untouched_when_a_pass_raises(fail_on: int) -> None:
    """The forward raises in the first pass (1), in the first conditional batch (2) or
    in a later one (3); every time the model comes back as it was."""
    net, x = Failing(tiny_model(), fail_on).eval(), tiny_inputs(2)
    before = Snapshot.take(net, x)
    with pytest.raises(RuntimeError, match="boom"):
        concepts(net, x, "inner.conv2", top=2, batch_size=2)
    before.assert_unchanged(net, x)


def test_model_untouched_and_result_frozen() -> None:
    net, x = tiny_model(), tiny_inputs(2)
    before = Snapshot.take(net, x)
    result = concepts(net, x, "conv2")
    before.assert_unchanged(net, x)
    assert isinstance(result, ConceptRelevance)
    with pytest.raises(AttributeError):
        result.layer = "conv1"  # type: ignore[misc]
