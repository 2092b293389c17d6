#!/usr/bin/env bash
# tests/sglang on the GPU machine (issue 5), in one device call, from the repository root:
#   run(command="bash benchmarks/sglang_gpu/run_tests.sh", carry=[".whl_gpu"])
# (.whl_gpu/sglang_bundle.tar.xz from benchmarks/sglang_gpu/make_bundle.sh). Output: $OUT/sglang_gpu.txt.
#
# Environment of that machine, and what this script does about it:
# * no SGLang: the bundle is unpacked into $SITE and put on PYTHONPATH;
# * no sglang-kernel / flashinfer wheels: MSA_SGL_STUB_KERNEL_WHEELS=1 (tests/sglang/kernel_wheel_stub.py);
# * torch 2.11 where SGLang 0.5.23 pins 2.14.1: SGLang's Rust radix-tree core (built against 2.14)
#   fails there on tensor dtypes, so the radix cache uses SGLang's Python tree core
#   (SGLANG_UNIFIED_RADIX_TREE_CORE_BACKEND=python; on the CPU the Python core is used as well);
# * msa_sgl not pip-installed: its dist-info (the sglang.srt.plugins entry point) is placed in
#   $SITE, the code itself is the checkout's.
set -euo pipefail
SITE=${SITE:-/tmp/site}
OUT=${OUT:-/tmp}
if [ ! -d "$SITE/sglang" ]; then
  mkdir -p "$SITE"
  tar -xJf .whl_gpu/sglang_bundle.tar.xz -C "$SITE"
fi
if ! ls -d "$SITE"/msa_sgl-*.dist-info >/dev/null 2>&1; then
  META=$(mktemp -d)
  python3 -m pip install -q --no-deps --no-build-isolation --no-index --target "$META" .
  cp -r "$META"/msa_sgl-*.dist-info "$SITE"/
  rm -rf "$META" build ./*.egg-info
fi
export PYTHONPATH=$SITE:$PWD MSA_SGL_STUB_KERNEL_WHEELS=1 MSA_REQUIRE_SGLANG=1
export SGLANG_UNIFIED_RADIX_TREE_CORE_BACKEND=python MSA_KERNEL_EXAMPLES=${MSA_KERNEL_EXAMPLES:-10}
{
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch, triton, sglang; print('torch', torch.__version__, 'triton', triton.__version__, 'sglang', sglang.__version__)"
  python3 -m pytest -q -p no:cacheprovider -rfEs tests/sglang "$@"
} 2>&1 | tee "$OUT/sglang_gpu.txt" | tail -40
