"""Make the shipped Fashion-MNIST CNN weights: the reference model and its random-label twin.

    PYTHONPATH=src python scripts/train_fashion_cnn.py            # both
    PYTHONPATH=src python scripts/train_fashion_cnn.py --only true_labels

* ``true_labels``: all 60,000 training images, ``--epochs`` epochs of Adam (lr 1e-3,
  batch 128), seed 0.
* ``random_labels``: the same architecture on the first ``--random-subset`` training
  images with their labels permuted (seed 1), trained with Adam at ``--random-lr``
  (1e-4: at 1e-3 the network settles on the uniform output and never leaves it) until it
  memorises them (running training accuracy ≥ 0.95, at most ``--random-epochs``
  epochs) — the data-randomization test of Adebayo et al. (2018).

Writes ``src/seethrough/models/weights/<name>.safetensors`` (float16) and
``fashion_cnn_training.json`` (accuracies, epochs, seconds, seeds, versions).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import seethrough
from seethrough.data.fashion_mnist import load_fashion_mnist
from seethrough.models.fashion_cnn import FASHION_CNN_WEIGHTS, FashionCNN
from seethrough.models.training import accuracy, train_classifier

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "seethrough" / "models" / "weights"


def _say(name: str) -> object:
    def report(epoch: int, loss: float, acc: float) -> None:
        print(f"{name}: epoch {epoch} loss {loss:.4f} train acc {acc:.4f}", file=sys.stderr)

    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(FASHION_CNN_WEIGHTS), default=None)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--random-subset", type=int, default=10_000)
    parser.add_argument("--random-epochs", type=int, default=200)
    parser.add_argument("--random-lr", type=float, default=1e-4)
    args = parser.parse_args()
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    x_train, x_test = train.inputs(), test.inputs()
    record_path = WEIGHTS / "fashion_cnn_training.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    record["versions"] = {"seethrough": seethrough.__version__, "torch": torch.__version__}
    for which in sorted(FASHION_CNN_WEIGHTS, reverse=True):  # true_labels first
        if args.only not in (None, which):
            continue
        torch.manual_seed(0)  # the initialisation
        model = FashionCNN()
        if which == "true_labels":
            x, y = x_train, train.labels
            log = train_classifier(model, x, y, epochs=args.epochs, seed=0, progress=_say(which))
        else:
            x = x_train[: args.random_subset]
            permutation = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
            y = train.labels[: args.random_subset][permutation]
            log = train_classifier(
                model,
                x,
                y,
                epochs=args.random_epochs,
                lr=args.random_lr,
                seed=0,
                stop_at_train_accuracy=0.95,
                progress=_say(which),
            )
        state = {
            k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
        }
        save_file(state, str(WEIGHTS / FASHION_CNN_WEIGHTS[which]))
        shipped = FashionCNN()
        shipped.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
        shipped.eval()
        record[which] = {
            "training_images": len(x),
            "label_permutation_seed": None if which == "true_labels" else 1,
            "epochs": len(log.losses),
            "losses": [round(v, 5) for v in log.losses],
            "train_accuracy_running": [round(v, 5) for v in log.train_accuracies],
            "train_accuracy": round(accuracy(shipped, x, y), 5),
            "test_accuracy": round(accuracy(shipped, x_test, test.labels), 5),
            "seconds": round(log.seconds, 1),
            "init_seed": 0,
            "shuffle_seed": log.seed,
            "lr": 1e-3 if which == "true_labels" else args.random_lr,
            "batch_size": 128,
        }
        print(json.dumps({which: record[which]}, indent=1), file=sys.stderr)
        record_path.write_text(json.dumps(record, indent=1) + "\n")  # after each model


if __name__ == "__main__":
    main()
