"""The optimisation engine shared by maximize, dream and inversion: the Adam loop's first
steps by hand, progress counted in row-steps across chunks, and the metadata every result
records (settings in the documented order, one timing per call, versions)."""

from __future__ import annotations

import pytest
import torch

from helpers import tiny_inputs, tiny_model
from seethrough.inside import channels, dream, invert_layers, maximize
from seethrough.inside._engine import adam_descent, progress_counter


def test_adam_descent_first_step_moves_each_row_by_the_learning_rate() -> None:
    """Adam's first update is ``lr · g / (|g| + ε)`` = ``lr · sign(g)`` to ``ε / |g|``; the
    trace holds each row's loss before each update; ``decay`` lowers the rate linearly to 0,
    so over ``steps = 1`` it is the undecayed rate; ``project`` runs after each update."""
    x = torch.tensor([3.0, -2.0], dtype=torch.float64, requires_grad=True)
    counted: list[int] = []
    trace = adam_descent(
        [x],
        lambda step: x.square(),
        steps=1,
        lr=0.1,
        advance=counted.append,
        decay=True,
        project=lambda: x.clamp_(max=2.85),
    )
    torch.testing.assert_close(trace, torch.tensor([[9.0, 4.0]], dtype=torch.float64))
    # 3 − 0.1 = 2.9 is clamped to 2.85; −2 + 0.1 = −1.9 (ε = 1e-8 against |g| = 4)
    torch.testing.assert_close(
        x.detach(), torch.tensor([2.85, -1.9], dtype=torch.float64), rtol=0, atol=1e-9
    )
    assert counted == [2]


def test_adam_descent_decays_the_rate_linearly() -> None:
    """With ``steps = 2`` the second update uses ``lr / 2``; on a loss with a constant
    gradient Adam's bias-corrected step is exactly ``lr``, so the moves are 0.1 then 0.05."""
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    trace = adam_descent(
        [x], lambda step: 4.0 * x, steps=2, lr=0.1, advance=lambda n: None, decay=True
    )
    torch.testing.assert_close(
        x.detach(), torch.tensor([-0.15], dtype=torch.float64), atol=1e-9, rtol=0
    )
    torch.testing.assert_close(
        trace[:, 0], torch.tensor([0.0, -0.4], dtype=torch.float64), atol=1e-9, rtol=0
    )


def test_progress_counter_caps_at_the_total() -> None:
    calls: list[tuple[int, int]] = []
    advance = progress_counter(lambda done, total: calls.append((done, total)), 5)
    for count in (2, 2, 2):
        advance(count)
    assert calls == [(2, 5), (4, 5), (5, 5)]
    progress_counter(None, 5)(3)  # no callback: nothing to report, no error


def test_progress_is_counted_in_row_steps_across_chunks() -> None:
    """Hand-counted: rows advance together within a chunk, chunks run one after another."""
    model, x = tiny_model(), tiny_inputs(2)
    calls: list[tuple[int, int]] = []
    record = calls.append

    maximize(
        model,
        channels("conv2", range(3)),
        size=12,
        steps=2,
        batch_size=2,
        progress=lambda d, t: record((d, t)),
    )
    assert calls == [(2, 6), (4, 6), (5, 6), (6, 6)]  # chunks of 2 and 1 rows, 2 steps
    calls.clear()
    dream(model, x, "conv2", octaves=2, steps=2, batch_size=1, progress=lambda d, t: record((d, t)))
    assert calls == [(i, 8) for i in range(1, 9)]  # 1 row × 2 octaves × 2 steps, twice
    calls.clear()
    invert_layers(
        model, x, ["conv1", "conv2"], steps=2, batch_size=3, progress=lambda d, t: record((d, t))
    )
    assert calls == [(3, 8), (6, 8), (7, 8), (8, 8)]  # 4 rows (2 layers × 2 images)


def test_results_record_settings_in_order_and_one_timing_per_call() -> None:
    model, x = tiny_model(), tiny_inputs(1)
    dreamed = dream(model, x, "conv2", octaves=1, steps=1, seed=4)
    assert list(dreamed.settings.items()) == [
        ("octaves", 1),
        ("octave_scale", 1.4),
        ("steps", 1),
        ("lr", 0.01),
        ("jitter", 32),
        ("normalize", "none"),
    ]
    assert dreamed.seed == 4 and dreamed.seconds > 0
    assert set(dreamed.versions) == {"seethrough", "torch"}
    inverted = invert_layers(model, x, ["conv1", "conv2"], steps=1)
    assert list(inverted.results[0].settings) == [
        "steps",
        "lr",
        "tv_weight",
        "tv_beta",
        "alpha",
        "alpha_weight",
        "noise",
        "normalize",
    ]
    # both layers ran in one call: one settings mapping, one timing
    first, second = inverted.results
    assert first.settings is second.settings
    assert first.seconds == second.seconds == inverted.seconds > 0
    with pytest.raises(TypeError):
        first.settings["steps"] = 2  # type: ignore[index]
