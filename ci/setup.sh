#!/usr/bin/env bash
# Creates .venv in the repository root and installs msa_sgl with what its tests need.
# CPU-only machines run the kernels through Triton's interpreter (TRITON_INTERPRET=1).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.14.1 triton numpy hypothesis pytest pytest-benchmark
.venv/bin/python -m pip install --quiet --no-deps -e .
.venv/bin/python -c "import torch, triton, msa_sgl; print(f'msa_sgl {msa_sgl.__version__}: torch {torch.__version__}, triton {triton.__version__}')"
