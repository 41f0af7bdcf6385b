"""Shared test helpers: tiny models, the method-case table, and a model-state snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# One entry per registered method: options that keep the suite fast. A new method must be
# added here; test_invariants checks that the table covers every registered name.
METHOD_CASES: dict[str, dict[str, Any]] = {
    "gradient": {},
    "gradient_x_input": {},
    "integrated_gradients": {"steps": 80},  # adaptive rule, at most 80 points
    "expected_gradients": {"samples": 4},  # uniform-noise references, seeded per row
    "guided_integrated_gradients": {"steps": 8},
    "smoothgrad": {"samples": 3},
    "guided_backprop": {},
    "deconvnet": {},
    "lrp": {},  # epsilon_plus_flat, batch norms folded
    "deeplift": {},
    "deepshap": {"baselines": torch.linspace(-1, 1, 864, dtype=torch.float64).view(2, 3, 12, 12)},
    "grad_cam": {},
    "guided_grad_cam": {},
    "grad_cam_pp": {},
    "xgrad_cam": {},
    "hires_cam": {},
    "layer_cam": {},
    "score_cam": {},
    "ablation_cam": {},
    "eigen_cam": {},
    "cam": {},
    "occlusion": {"window": 4, "stride": 3},
    "rise": {"masks": 10, "cell": 3},
    "lime": {"samples": 40},
    "kernel_shap": {"samples": 40},
    "edge_detector": {},
    "random_noise": {},
}


class TinyCNN(nn.Module):
    """Conv–BN–ReLU(inplace) twice with a *reused* ReLU module, a functional ReLU,
    global pooling and a linear head. Float64 by default."""

    def __init__(self, classes: int = 5, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)  # reused twice
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)
        self.to(dtype)
        with torch.no_grad():  # non-trivial running statistics in the buffers
            for bn in (self.bn1, self.bn2):
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 1.5)
                bn.weight.uniform_(0.5, 1.5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.conv3(x))
        return self.fc(self.pool(x).flatten(1))


class Failing(nn.Module):
    """Wraps a model; its forward raises on call number ``fail_on`` (1-based)."""

    def __init__(self, inner: nn.Module, fail_on: int) -> None:
        super().__init__()
        self.inner = inner
        self.fail_on = fail_on
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls >= self.fail_on:
            raise RuntimeError("boom inside forward")
        return self.inner(x)


def tiny_model(seed: int = 0, **kwargs: Any) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN(**kwargs).eval()


def tiny_inputs(n: int = 3, seed: int = 1, size: int = 12) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g, dtype=torch.float64)


def _hook_keys(module: nn.Module) -> tuple[tuple[Any, ...], ...]:
    names = [
        "_forward_hooks",
        "_forward_pre_hooks",
        "_backward_hooks",
        "_backward_pre_hooks",
        "_state_dict_hooks",
        "_load_state_dict_pre_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_pre_hooks_with_kwargs",
    ]
    return tuple(tuple(getattr(module, n, {}).keys()) for n in names)


def _global_hooks() -> tuple[tuple[Any, ...], ...]:
    import torch.nn.modules.module as mm

    names = [
        "_global_forward_hooks",
        "_global_forward_pre_hooks",
        "_global_backward_hooks",
        "_global_backward_pre_hooks",
    ]
    return tuple(tuple(getattr(mm, n, {}).keys()) for n in names)


@dataclass
class Snapshot:
    """Everything of a model, an input and the RNG that an explanation must not change."""

    params: dict[str, Tensor]
    param_ids: dict[str, int]
    requires_grad: dict[str, bool]
    grads: dict[str, Tensor | None]
    buffers: dict[str, Tensor]
    training: dict[str, bool]
    hooks: dict[str, tuple[tuple[Any, ...], ...]]
    global_hooks: tuple[tuple[Any, ...], ...]
    module_ids: dict[str, int]
    rng: Tensor
    input_value: Tensor | None
    input_requires_grad: bool | None
    input_grad: Tensor | None
    grad_enabled: bool

    @classmethod
    def take(cls, model: nn.Module, x: Tensor | None = None) -> Snapshot:
        return cls(
            params={n: p.detach().clone() for n, p in model.named_parameters()},
            param_ids={n: id(p) for n, p in model.named_parameters()},
            requires_grad={n: p.requires_grad for n, p in model.named_parameters()},
            grads={
                n: None if p.grad is None else p.grad.detach().clone()
                for n, p in model.named_parameters()
            },
            buffers={n: b.detach().clone() for n, b in model.named_buffers()},
            training={n: m.training for n, m in model.named_modules()},
            hooks={n: _hook_keys(m) for n, m in model.named_modules()},
            global_hooks=_global_hooks(),
            module_ids={n: id(m) for n, m in model.named_modules()},
            rng=torch.get_rng_state(),
            input_value=None if x is None else x.detach().clone(),
            input_requires_grad=None if x is None else x.requires_grad,
            input_grad=None if x is None or x.grad is None else x.grad.clone(),
            grad_enabled=torch.is_grad_enabled(),
        )

    def assert_unchanged(self, model: nn.Module, x: Tensor | None = None) -> None:
        after = Snapshot.take(model, x)
        assert after.param_ids == self.param_ids, "parameters were replaced"
        assert after.module_ids == self.module_ids, "modules were replaced"
        for name, value in self.params.items():
            assert torch.equal(after.params[name], value), f"parameter {name} changed"
        assert after.requires_grad == self.requires_grad, "requires_grad changed"
        for name, grad in self.grads.items():
            other = after.grads[name]
            assert (grad is None) == (other is None), f".grad of {name} appeared or vanished"
            if grad is not None:
                assert torch.equal(grad, other), f".grad of {name} changed"
        for name, value in self.buffers.items():
            assert torch.equal(after.buffers[name], value), f"buffer {name} changed"
        assert after.training == self.training, "train/eval flags changed"
        assert after.hooks == self.hooks, "module hooks changed"
        assert after.global_hooks == self.global_hooks, "global hooks changed"
        assert torch.equal(after.rng, self.rng), "global RNG state changed"
        assert after.grad_enabled == self.grad_enabled, "grad mode changed"
        if x is not None:
            assert torch.equal(after.input_value, self.input_value), "input values changed"
            assert after.input_requires_grad == self.input_requires_grad, "input requires_grad"
            assert (after.input_grad is None) == (self.input_grad is None), "input .grad"


class QuantusNet(nn.Module):
    """A float32 net whose registration order is its execution order, with one
    parametrised module per step: Quantus's layer sequence is ours, so its randomization
    tests (MPRT, sMPRT, eMPRT) can be compared with ours step by step."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.bn(self.conv1(x)))
        return self.fc(torch.relu(self.conv2(h)).mean(dim=(2, 3)))
