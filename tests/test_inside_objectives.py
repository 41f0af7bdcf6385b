"""Objective algebra on hand-made activations: every value computed by hand or by a plain
loop, the vectorised batch plan against one-row-at-a-time evaluation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seethrough.errors import InvalidOptionError, LayerError
from seethrough.inside.objectives import (
    Captured,
    as_objective,
    blur,
    channel,
    channels,
    class_logit,
    compile_objectives,
    direction,
    diversity,
    l2,
    layer_objective,
    neuron,
    total_variation,
)

CPU = torch.device("cpu")


def known() -> Captured:
    """Two images; layer "a" is (2, 3, 2, 2) with values 0..23, "f" is (2, 4)."""
    a = torch.arange(24, dtype=torch.float64).reshape(2, 3, 2, 2)
    f = torch.tensor([[1.0, -2.0, 3.0, 0.5], [0.0, 4.0, -1.0, 2.0]], dtype=torch.float64)
    out = torch.tensor([[0.1, 0.2, 0.3], [3.0, 2.0, 1.0]], dtype=torch.float64)
    image = torch.zeros(2, 3, 3, 3, dtype=torch.float64)
    image[0, :, :, 1] = 1.0  # a vertical bar in image 0
    image[1, 0, 1, 1] = 0.5  # one bright red pixel in image 1
    return Captured({"a": a, "f": f}, out, image)


def rows(captured: Captured, index: int) -> Captured:
    return Captured(
        {k: v[index : index + 1] for k, v in captured.layers.items()},
        None if captured.output is None else captured.output[index : index + 1],
        captured.image[index : index + 1],
    )


def test_channel_neuron_logit_layer_by_hand() -> None:
    c = known()
    # channel 1 of image 0 holds 4, 5, 6, 7; of image 1: 16..19
    torch.testing.assert_close(channel("a", 1)(c), torch.tensor([5.5, 17.5], dtype=torch.float64))
    # the centre of a 2×2 map is (1, 1): the last element of each channel (Lucent's choice)
    torch.testing.assert_close(neuron("a", 2)(c), torch.tensor([11.0, 23.0], dtype=torch.float64))
    torch.testing.assert_close(
        neuron("a", 0, y=0, x=1)(c), torch.tensor([1.0, 13.0], dtype=torch.float64)
    )
    torch.testing.assert_close(class_logit(2)(c), torch.tensor([0.3, 1.0], dtype=torch.float64))
    expected = torch.tensor(
        [sum(v * v for v in range(12)) / 12, sum(v * v for v in range(12, 24)) / 12],
        dtype=torch.float64,
    )
    torch.testing.assert_close(layer_objective("a")(c), expected)
    # linear layers: a channel is a unit
    torch.testing.assert_close(channel("f", 1)(c), torch.tensor([-2.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(
        layer_objective("f")(c), torch.tensor([3.5625, 5.25], dtype=torch.float64)
    )


def test_direction_cosine_and_dot_by_hand() -> None:
    c = known()
    v = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    a = c.layers["a"]
    cos = []
    dot = []
    for i in range(2):
        per = []
        for y in range(2):
            for x in range(2):
                vec = a[i, :, y, x]
                per.append(float(vec @ v) / (float(vec.norm()) * math.sqrt(2.0)))
        cos.append(sum(per) / 4)
        dot.append(float((a[i] * v[:, None, None]).sum(0).mean()))
    torch.testing.assert_close(direction("a", v)(c), torch.tensor(cos, dtype=torch.float64))
    torch.testing.assert_close(
        direction("a", [1, 0, -1], cosine=False)(c), torch.tensor(dot, dtype=torch.float64)
    )


def test_diversity_by_hand() -> None:
    c = known()
    a = c.layers["a"]
    grams = []
    for i in range(2):
        flat = a[i].reshape(3, 4)
        gram = flat @ flat.T
        grams.append(gram / gram.norm())
    similarity = float((grams[0] * grams[1]).sum())
    # each image: minus its similarity to the other one, over the batch size 2
    expected = torch.tensor([-similarity / 2, -similarity / 2], dtype=torch.float64)
    torch.testing.assert_close(diversity("a")(c), expected)
    assert diversity("a").couples_rows
    assert not channel("a", 0).couples_rows


def test_regularisers_by_hand() -> None:
    c = known()
    # image 0: a vertical bar of ones in column 1 of all 3 channels: no vertical change;
    # all 18 horizontal differences (3 channels × 3 rows × 2) are ±1 → TV 1.
    # image 1: one 0.5 pixel in the middle of channel 0: 2 of the 18 vertical and 2 of the
    # 18 horizontal differences are 0.5.
    tv = total_variation()(c)
    torch.testing.assert_close(tv, torch.tensor([1.0, 2 * (2 * 0.5 / 18)], dtype=torch.float64))
    tv2 = total_variation(beta=2)(c)
    torch.testing.assert_close(tv2, torch.tensor([1.0, 2 * (2 * 0.25 / 18)], dtype=torch.float64))
    # l2 from 0.5: image 0 is 1 on 9 of 27 pixels, 0 elsewhere → all distances 0.5
    torch.testing.assert_close(
        l2()(c), torch.tensor([0.25, (26 * 0.25 + 0) / 27], dtype=torch.float64)
    )
    torch.testing.assert_close(l2(0.0)(c), torch.tensor([9 / 27, 0.25 / 27], dtype=torch.float64))
    # blur penalty of image 1, from an explicit edge-normalised 3×3 blur
    kernel = torch.tensor([[0.5, 0.5, 0.5], [0.5, 1.0, 0.5], [0.5, 0.5, 0.5]], dtype=torch.float64)
    img = c.image[1, 0]
    padded = F.pad(img, (1, 1, 1, 1))
    ones = F.pad(torch.ones_like(img), (1, 1, 1, 1))
    blurred = torch.empty_like(img)
    for y in range(3):
        for x in range(3):
            blurred[y, x] = (padded[y : y + 3, x : x + 3] * kernel).sum() / (
                ones[y : y + 3, x : x + 3] * kernel
            ).sum()
    expected = 0.5 * float(((img - blurred) ** 2).sum()) / 27  # channels 1, 2 are zero
    torch.testing.assert_close(blur()(c)[1], torch.tensor(expected, dtype=torch.float64))


def test_algebra_combines_values_and_names() -> None:
    c = known()
    a, t, k = channel("a", 1), total_variation(), class_logit(0)
    combined = a - 0.5 * t + 2 * k
    expected = a(c) - 0.5 * t(c) + 2 * k(c)
    torch.testing.assert_close(combined(c), expected)
    assert combined.name == "channel('a', 1) - 0.5 * total_variation() + 2 * class_logit(0)"
    torch.testing.assert_close((-a)(c), -a(c))
    torch.testing.assert_close((a / 4)(c), a(c) / 4)
    assert (-a).name == "-channel('a', 1)"
    # sum() starts from 0; equal terms merge; a - a is the zero objective
    total = sum([a, a, k])
    assert total.name == "2 * channel('a', 1) + class_logit(0)"
    torch.testing.assert_close(total(c), 2 * a(c) + k(c))
    zero = a - a
    assert zero.name == "0"
    assert torch.equal(zero(c), torch.zeros(2, dtype=torch.float64))
    assert combined.layers == frozenset({"a"})
    assert combined.needs_output and not a.needs_output
    assert as_objective("a:2").name == "channel('a', 2)"


def test_algebra_rejects_non_numbers() -> None:
    a = channel("a", 1)
    with pytest.raises(TypeError):
        a * a  # type: ignore[operator]
    with pytest.raises(TypeError):
        a + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        a * "2"  # type: ignore[operator]
    with pytest.raises(InvalidOptionError, match="channel must be an integer"):
        channel("a", 1.5)  # type: ignore[arg-type]
    with pytest.raises(LayerError):
        channel("", 1)
    with pytest.raises(InvalidOptionError, match="all zeros"):
        direction("a", [0.0, 0.0, 0.0])
    with pytest.raises(InvalidOptionError, match="beta"):
        total_variation(beta=0.5)
    with pytest.raises(InvalidOptionError, match="cannot use"):
        as_objective(3)


def test_batch_plan_equals_rows_one_at_a_time() -> None:
    """The vectorised plan groups like terms across rows; each row's score must equal the
    objective evaluated on that row alone."""
    c = known()
    mixed = [
        channel("a", 2) - 0.1 * total_variation() + l2(),
        neuron("a", 1, y=1, x=0) + 3 * class_logit(1) - blur(),
    ]
    scores = compile_objectives(mixed, CPU, torch.float64)(c)
    for i, objective in enumerate(mixed):
        torch.testing.assert_close(scores[i], objective(rows(c, i))[0], rtol=0, atol=1e-15)
    atlas = channels("a", [2, 0])
    torch.testing.assert_close(
        compile_objectives(atlas, CPU, torch.float64)(c),
        torch.stack([channel("a", 2)(c)[0], channel("a", 0)(c)[1]]),
    )
    with pytest.raises(InvalidOptionError, match="one objective per image"):
        compile_objectives(atlas[:1], CPU, torch.float64)(c)
