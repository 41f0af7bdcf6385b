"""The one re-initialiser (``seethrough.core.reinit``): seeded, on the named modules only,
and the caller's random state (CPU and CUDA) comes back unchanged."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import tiny_model
from seethrough.anatomy.probes import random_copy
from seethrough.core.reinit import reinitialize
from seethrough.errors import InvalidOptionError


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _trained() -> nn.Module:
    """The tiny CNN with every parameter moved off its initial value."""
    model = tiny_model().eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.rand(p.shape, generator=g, dtype=p.dtype) + 0.1)
    return model


@pytest.mark.parametrize("options", [{}, {"init": "normal", "std": 0.5}])
def test_cpu_rng_state_and_seed_come_back_unchanged(options: dict) -> None:
    first, second = tiny_model(), tiny_model()  # (tiny_model seeds the global RNG)
    torch.manual_seed(1234)
    torch.rand(3)  # a state that is not the freshly seeded one
    state, seed = torch.get_rng_state(), torch.initial_seed()
    reinitialize(first, seed=7, **options)
    random_copy(second, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.initial_seed() == seed


def test_no_seed_is_queued_for_cuda_to_apply_when_it_starts() -> None:
    """``torch.manual_seed`` while CUDA is not initialised queues the seed for CUDA's
    start, where it would replace the caller's CUDA random state (fork_rng cannot undo a
    queued seed). The CPU-visible half of the CUDA check below; torch's queue is private."""
    tracker = getattr(torch.cuda, "_lazy_seed_tracker", None)
    if tracker is None or torch.cuda.is_initialized():
        pytest.skip("needs torch's lazy CUDA seed queue, before CUDA starts")
    model = tiny_model()  # (tiny_model itself calls torch.manual_seed: queued already)
    queued = list(tracker.get_calls())
    random_copy(model, seed=5)
    reinitialize(copy.deepcopy(model), ["conv1"], seed=6)
    assert list(tracker.get_calls()) == queued


def test_only_the_named_modules_change_and_the_seed_fixes_them() -> None:
    model = _trained()
    before = _state(model)
    reinitialize(model, ["conv2", "bn1"], seed=3)
    after = _state(model)
    for key, value in before.items():
        module, leaf = key.rsplit(".", 1)
        changed = not torch.equal(value, after[key])
        # weights and biases of the named modules only; BN running statistics kept
        assert changed == (module in ("conv2", "bn1") and leaf in ("weight", "bias")), key
    again = _trained()
    reinitialize(again, ["conv2", "bn1"], seed=3)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in after.items())
    other = _trained()
    reinitialize(other, ["conv2", "bn1"], seed=4)
    assert not torch.equal(other.conv2.weight, model.conv2.weight)


def test_order_follows_the_names_given() -> None:
    # reset_parameters draws from one seeded stream: the order of the modules matters
    ab, ba = tiny_model(), tiny_model()
    reinitialize(ab, ["conv1", "conv2"], seed=3)
    reinitialize(ba, ["conv2", "conv1"], seed=3)
    assert not torch.equal(ab.conv1.weight, ba.conv1.weight)


def test_running_statistics_reset_on_request() -> None:
    model = tiny_model()
    reinitialize(model, ["bn1"], seed=0, reset_running_stats=True)
    assert torch.equal(model.bn1.running_var, torch.ones_like(model.bn1.running_var))
    assert torch.equal(model.bn1.running_mean, torch.zeros_like(model.bn1.running_mean))


class _Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


def test_a_module_without_reset_parameters_is_refused_not_skipped() -> None:
    model = nn.Sequential(nn.Linear(3, 3), _Scale())
    with pytest.raises(InvalidOptionError, match="'1' \\(_Scale\\) has parameters but no"):
        reinitialize(copy.deepcopy(model), seed=0)
    normal = copy.deepcopy(model)
    reinitialize(normal, seed=0, init="normal", std=0.1)
    assert not torch.equal(normal[1].gain, model[1].gain)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"init": "xavier"}, "unknown init 'xavier'"), ({"std": 0.0}, "std must be a positive")],
)
def test_bad_options(options: dict, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        reinitialize(tiny_model(), seed=0, **options)


# ------------------------------------------------------------------------- on a CUDA device


def _cuda_states() -> list[torch.Tensor]:
    return [torch.cuda.get_rng_state(d) for d in range(torch.cuda.device_count())]


@pytest.mark.gpu
def test_cuda_rng_states_come_back_unchanged() -> None:
    assert torch.cuda.is_available(), "gpu tests run only where CUDA is (select with -m gpu)"
    torch.cuda.manual_seed_all(99)
    torch.rand(3, device="cuda")
    cuda, cpu = _cuda_states(), torch.get_rng_state()
    model = tiny_model().cuda()
    random_copy(model, seed=5)  # before: forked the CPU's generator only
    reinitialize(copy.deepcopy(model), ["conv1"], seed=5, init="normal")
    reinitialize(tiny_model(), seed=5)  # a CPU model while CUDA is initialised
    assert all(torch.equal(a, b) for a, b in zip(_cuda_states(), cuda)), "CUDA RNG changed"
    assert torch.equal(torch.get_rng_state(), cpu)


_FIRST_CUDA_DRAW = """
import sys, torch
sys.path.insert(0, sys.argv[2])
if sys.argv[1] == "reinit":
    from helpers import tiny_model
    from seethrough.anatomy.probes import random_copy
    random_copy(tiny_model(), seed=5)  # CUDA not initialised yet
print(torch.rand(4, device="cuda").tolist())
"""


@pytest.mark.gpu
def test_a_cpu_reinitialisation_does_not_seed_cuda_lazily() -> None:
    """``torch.manual_seed`` before CUDA starts queues the seed for CUDA's initialisation:
    the caller's first CUDA draws would then come from our seed."""
    assert torch.cuda.is_available(), "gpu tests run only where CUDA is (select with -m gpu)"

    def first_draw(mode: str) -> str:
        run = [sys.executable, "-c", _FIRST_CUDA_DRAW, mode, str(Path(__file__).parent)]
        return subprocess.run(run, capture_output=True, text=True, check=True).stdout

    assert first_draw("reinit") == first_draw("plain")
