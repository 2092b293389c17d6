#!/bin/bash
# v23 call B: the pytest-benchmark suite on this card, then tests/sglang/test_backend.py on the GPU
mkdir -p /tmp/site && tar -xJf .whl_gpu/sglang_bundle.tar.xz -C /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site benchmarks/_scratch/whl_bench/*.whl
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
timeout 330 python3 -m pytest -q -p no:cacheprovider benchmarks/test_bench_kernels.py --benchmark-enable --benchmark-json=$OUT/bench.json > $OUT/bench_run.txt 2>&1; echo "bench rc=$?"; tail -3 $OUT/bench_run.txt
python3 benchmarks/bench_table.py $OUT/bench.json > $OUT/bench.md 2>&1; head -70 $OUT/bench.md
OUT=$OUT timeout 200 bash benchmarks/sglang_gpu/run_tests.sh tests/sglang/test_backend.py > /dev/null 2>&1; echo "sglang rc=$?"; tail -3 $OUT/sglang_gpu.txt
