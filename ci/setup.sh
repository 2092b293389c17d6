#!/usr/bin/env bash
# Creates .venv in the repository root and installs msa_sgl with what its tests need.
# CPU-only machines run the kernels through Triton's interpreter (TRITON_INTERPRET=1).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1 triton numpy hypothesis pytest pytest-benchmark
# SGLang for the integration tests (tests/sglang): the package without its CUDA wheels, and the
# small Python packages its modules import (one list: ci/sglang-cpu-requirements.txt; its
# utilities also import torchvision, installed beside torch above)
.venv/bin/python -m pip install --quiet --no-deps sglang==0.5.23
.venv/bin/python -m pip install --quiet -r ci/sglang-cpu-requirements.txt torch==2.14.1 torchvision==0.29.1
# matplotlib: benchmarks/bench_plots.py (its test draws the figures); python-dateutil as SGLang
# 0.5.23 pins it (matplotlib alone would pull a newer one)
.venv/bin/python -m pip install --quiet matplotlib "python-dateutil<3"
.venv/bin/python -m pip install --quiet --no-deps -e .
.venv/bin/python -c "import torch, triton, msa_sgl, sglang; print(f'msa_sgl {msa_sgl.__version__}: torch {torch.__version__}, triton {triton.__version__}, sglang {sglang.__version__}')"
