"""The reference CNN of the sanity-check paper, trained on Fashion-MNIST by our own code.

Adebayo et al. (2018), "Sanity Checks for Saliency Maps", used for MNIST and Fashion-MNIST
a CNN of two conv5×5 layers (32 and 64 channels, ReLU, 2×2 max-pool), a 1024-unit hidden
layer and a 10-way output. :class:`FashionCNN` is that network; every nonlinearity is its
own module (named in execution order) so that hooks, ablations and randomization can
address each one. The shipped weights (``weights/fashion_cnn.safetensors``, float16, made
by ``python scripts/train_fashion_cnn.py``) reach ≥ 90 % on the test set
(``tests/test_fashion_cnn.py`` checks it on the real test set).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "FASHION_CNN_WEIGHTS",
    "FashionCNN",
    "fashion_cnn",
    "packaged_weights",
]

FASHION_CNN_WEIGHTS = {
    "true_labels": "fashion_cnn.safetensors",
    "random_labels": "fashion_cnn_random_labels.safetensors",
    "pgd_0.05": "fashion_cnn_pgd_0.05.safetensors",
    "pgd_0.1": "fashion_cnn_pgd_0.1.safetensors",
    "pgd_0.2": "fashion_cnn_pgd_0.2.safetensors",
    "gradreg": "fashion_cnn_gradreg.safetensors",
}
"""The shipped weights of this architecture: the reference model, its random-label twin
(``scripts/train_fashion_cnn.py``), and the robust siblings
(``scripts/train_robust_fashion_cnn.py``): PGD-7 adversarially trained at L∞ ε = 0.05,
0.1 and 0.2 (pixels in [0, 1]), and double-backpropagation gradient-regularised."""


class FashionCNN(nn.Module):
    """conv5×5×32 – ReLU – pool – conv5×5×64 – ReLU – pool – FC1024 – ReLU – FC10.

    Input ``(N, 1, 28, 28)``, normalised with the training set's mean and std
    (:data:`~seethrough.data.fashion_mnist.FASHION_MEAN` /
    :data:`~seethrough.data.fashion_mnist.FASHION_STD`; as
    :meth:`~seethrough.data.fashion_mnist.FashionMNIST.inputs` does); output: logits ``(N, 10)``.
    """

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * 7 * 7, 1024)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(1024, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc2(self.relu3(self.fc1(x.flatten(1))))


def packaged_weights(which: str = "true_labels") -> Path:
    """The path of a shipped state dict: ``"true_labels"`` (the reference model) or
    ``"random_labels"`` (the same network trained on permuted labels)."""
    name = FASHION_CNN_WEIGHTS[which]
    resource = importlib.resources.files("seethrough.models").joinpath("weights").joinpath(name)
    return Path(str(resource))


def fashion_cnn(which: str = "true_labels") -> FashionCNN:
    """The reference CNN with shipped weights, float32, in eval mode."""
    from safetensors.torch import load_file

    model = FashionCNN()
    state = {k: v.to(torch.float32) for k, v in load_file(str(packaged_weights(which))).items()}
    model.load_state_dict(state)
    return model.eval()
