#!/usr/bin/env bash
# Builds .whl_gpu/sglang_bundle.tar.xz: SGLang 0.5.23's Python code plus the pure/small packages
# its modules import, unpacked for CPython 3.12 / x86-64 and xz-compressed (~20 MB), so that
# tests/sglang can run on the GPU machine (no internet, 64 MiB per call). Run here (needs PyPI).
#
# What is left out, and why:
# * sglang/srt/rust_extensions/_{server,bench,grpc,multimodal}*.so (17 MB compressed: the HTTP
#   server, benchmarks, gRPC and multimodal front ends) and sglang/multimodal_gen: not imported by
#   the attention backend, the pools, the radix cache or the attention test kit.
# * sglang-kernel / flashinfer (CUDA wheels, ~370 MB): tests/sglang/kernel_wheel_stub.py stands in
#   for them (every attribute raises when called; none is called by the code under test).
# * transformers / huggingface_hub and whatever the GPU machine's image already has (see
#   /work/.library/device/KINDS.md): the image's versions are used.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PKGS=(
  sglang==0.5.23 annotated_types asttokens executing ipython ipython_pygments_lexers jedi parso
  matplotlib_inline msgspec orjson pexpect prompt_toolkit ptyprocess pure_eval pybase64
  pydantic==2.14.4 pydantic_core==2.50.5 pyzmq stack_data starlette traitlets typing_inspection wcwidth
  apache-tvm-ffi==0.1.11 compressed-tensors==0.18.0 dill fastapi gguf openai==2.8.0
  partial_json_parser uvicorn zstandard loguru jiter sniffio opentelemetry-api importlib-metadata
  truststore distro lazy-importer
)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WORK/wheels" "${PKGS[@]}"
mkdir -p "$WORK/site"
for w in "$WORK"/wheels/*.whl; do python3 -m zipfile -e "$w" "$WORK/site"; done
rm -rf "$WORK"/site/sglang/srt/rust_extensions/_{server,bench,grpc,multimodal}*.so "$WORK/site/sglang/multimodal_gen"
find "$WORK/site" -name __pycache__ -prune -exec rm -rf {} +
mkdir -p .whl_gpu
tar -cf - -C "$WORK/site" . | xz -T2 -6 > .whl_gpu/sglang_bundle.tar.xz
ls -la .whl_gpu/sglang_bundle.tar.xz
