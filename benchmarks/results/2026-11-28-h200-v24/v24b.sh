#!/bin/bash
# v24 call B: is the 16K chunk at P = 0 slower when it is the session's first benchmark?
# The P = 0 prefill group three times, each in a fresh process; the third with the msa entries last.
mkdir -p /tmp/site && tar -xJf .whl_gpu/sglang_bundle.tar.xz -C /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site benchmarks/_scratch/whl_bench/*.whl
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
for r in 1 2; do
  timeout 150 python3 -m pytest -q -p no:cacheprovider benchmarks/test_bench_kernels.py -k "P0 and prefill" --benchmark-enable --benchmark-json=$OUT/p0_run$r.json > $OUT/p0_run$r.txt 2>&1; echo "run $r rc=$?"
  python3 benchmarks/bench_table.py $OUT/p0_run$r.json | grep -E "prefill_(msa|sglang all|dense)"
done
timeout 150 python3 -m pytest -q -p no:cacheprovider benchmarks/test_bench_kernels.py -k "P0 and prefill" --benchmark-enable --benchmark-json=$OUT/p0_run3.json \
  "benchmarks/test_bench_kernels.py::test_prefill_sglang" "benchmarks/test_bench_kernels.py::test_prefill_dense" "benchmarks/test_bench_kernels.py::test_prefill_msa_main" "benchmarks/test_bench_kernels.py::test_prefill_msa_index" "benchmarks/test_bench_kernels.py::test_prefill_msa" > $OUT/p0_run3.txt 2>&1; echo "run 3 rc=$?"
python3 benchmarks/bench_table.py $OUT/p0_run3.json | grep -E "prefill_(msa|sglang all|dense)"
nvidia-smi --query-gpu=clocks.sm,power.draw,temperature.gpu --format=csv,noheader
