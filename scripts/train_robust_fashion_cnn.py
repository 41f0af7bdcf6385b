"""Make the shipped robust Fashion-MNIST CNNs: PGD adversarially trained and gradient-regularised.

    PYTHONPATH=src python scripts/train_robust_fashion_cnn.py            # all four
    PYTHONPATH=src python scripts/train_robust_fashion_cnn.py --only pgd_0.1
    for m in pgd_0.1 pgd_0.05 pgd_0.2 gradreg; do      # in parallel, one thread each
        OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/train_robust_fashion_cnn.py --only $m &
    done

* ``pgd_0.05``, ``pgd_0.1``, ``pgd_0.2``: Madry et al. (2018) PGD-k adversarial training
  (L∞, ε in pixels of [0, 1], ``--steps`` steps of 2.5 ε / k, random start), every batch
  replaced by its adversarial examples.
* ``gradreg``: double backpropagation, cross-entropy + λ · mean ‖∇ₓ ℓ‖² with the gradient
  taken with respect to pixels (Ross & Doshi-Velez, 2018), λ = ``--gradreg-weight``.

**Deviation from Madry et al.:** each model is *fine-tuned* from the shipped reference CNN
(``fashion_cnn.safetensors``, itself made from seed 0 by ``train_fashion_cnn.py``) for
``--epochs`` epoch(s) (default 1) of the robust objective with a fresh Adam (lr 1e-3, batch
128), not trained from a random initialisation for tens of epochs — the budget of a 2-core
CPU (≈ 5 min per PGD-7 epoch when idle; the four ran in parallel, one thread each, on a
machine busy with other work, ≈ 45 min). Shuffle seed 0, random-start seed 1, all 60,000
training images.

Writes ``src/seethrough/models/weights/fashion_cnn_<name>.safetensors`` (float16) and
``fashion_cnn_robust_training.json`` (settings, per-epoch losses, clean test accuracy,
PGD-20 robust accuracy on the first 1,000 test images at the training ε, seconds per epoch
next to a plain epoch's, versions), after each model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

import seethrough
from seethrough.data.fashion_mnist import FASHION_MEAN, FASHION_STD, load_fashion_mnist
from seethrough.models.fashion_cnn import FASHION_CNN_WEIGHTS, FashionCNN, fashion_cnn
from seethrough.models.training import (
    AdversarialTraining,
    GradientPenalty,
    accuracy,
    train_classifier,
)
from seethrough.robust import pgd

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "seethrough" / "models" / "weights"
ROBUST = ("pgd_0.1", "pgd_0.05", "pgd_0.2", "gradreg")  # the named model first
VALID_RANGE = ((0 - FASHION_MEAN) / FASHION_STD, (1 - FASHION_MEAN) / FASHION_STD)


def _say(name: str, every: int = 50) -> object:
    def report(done: int, total: int) -> None:
        if done % every == 0 or done == total:
            print(f"{name}: batch {done}/{total}", file=sys.stderr, flush=True)

    return report


def robust_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    """PGD-20 (L∞, pixel ε, one random start, seed 0) accuracy: the attack of the evaluation."""
    adv = pgd(
        model,
        x,
        target="true",
        labels=y,
        eps=eps / FASHION_STD,  # pixel ε in input units
        steps=20,
        seed=0,
        valid_range=VALID_RANGE,
    )
    return accuracy(model, adv.adversarial, y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=ROBUST, default=None)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--gradreg-weight", type=float, default=10.0)
    parser.add_argument("--eval-images", type=int, default=1000)
    args = parser.parse_args()
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    x_train, y_train = train.inputs(), train.labels
    x_eval, y_eval = test.inputs()[: args.eval_images], test.labels[: args.eval_images]
    record_path = WEIGHTS / "fashion_cnn_robust_training.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    record["versions"] = {"seethrough": seethrough.__version__, "torch": torch.__version__}
    record["threads"] = torch.get_num_threads()

    # One plain epoch's time on this machine, for the pass-count roofline of PGD-k training.
    sample = 6400
    started = time.perf_counter()
    train_classifier(fashion_cnn(), x_train[:sample], y_train[:sample], epochs=1, seed=0)
    plain_epoch = (time.perf_counter() - started) * len(x_train) / sample
    record["plain_epoch_seconds_estimate"] = round(plain_epoch, 1)

    for name in ROBUST:
        if args.only not in (None, name):
            continue
        model = fashion_cnn()  # fine-tune from the shipped reference model
        robustness: AdversarialTraining | GradientPenalty
        if name.startswith("pgd_"):
            eps = float(name.split("_")[1])
            robustness = AdversarialTraining(
                eps=eps, steps=args.steps, pixel_std=FASHION_STD, valid_range=VALID_RANGE
            )
        else:
            eps = 0.1
            robustness = GradientPenalty(weight=args.gradreg_weight, pixel_std=FASHION_STD)
        log = train_classifier(
            model,
            x_train,
            y_train,
            epochs=args.epochs,
            seed=0,
            robustness=robustness,
            batch_progress=_say(name),
            progress=lambda e, loss, acc, n=name: print(
                f"{n}: epoch {e} loss {loss:.4f} train acc {acc:.4f}", file=sys.stderr, flush=True
            ),
        )
        state = {
            k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
        }
        save_file(state, str(WEIGHTS / FASHION_CNN_WEIGHTS[name]))
        shipped = FashionCNN()
        shipped.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
        shipped.eval()
        entry: dict[str, object] = {
            "objective": "pgd" if name.startswith("pgd_") else "double_backprop",
            "init": "fashion_cnn.safetensors (fine-tuned)",
            "epochs": len(log.losses),
            "losses": [round(v, 5) for v in log.losses],
            "train_accuracy_running": [round(v, 5) for v in log.train_accuracies],
            "test_accuracy": round(accuracy(shipped, test.inputs(), test.labels), 5),
            f"pgd20_accuracy_eps_{eps}_first_{len(x_eval)}": round(
                robust_accuracy(shipped, x_eval, y_eval, eps), 5
            ),
            "seconds": round(log.seconds, 1),
            "seconds_per_epoch": round(log.seconds / len(log.losses), 1),
            "shuffle_seed": log.seed,
            "start_seed": log.seed + 1,
            "lr": 1e-3,
            "batch_size": 128,
        }
        if isinstance(robustness, AdversarialTraining):
            entry.update(
                eps_pixels=eps,
                norm=robustness.norm,
                steps=robustness.steps,
                step_size_pixels=round(robustness.step, 6),
                random_start=robustness.random_start,
            )
        else:
            entry.update(weight=robustness.weight, gradient_with_respect_to="pixels")
        print(json.dumps({name: entry}, indent=1), file=sys.stderr, flush=True)
        # After each model; re-read first, so runs of --only in parallel keep each other's.
        record = {**(json.loads(record_path.read_text()) if record_path.exists() else {}), **record}
        record[name] = entry
        record_path.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
