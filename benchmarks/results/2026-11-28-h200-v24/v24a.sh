#!/bin/bash
# v24 call A: the pytest-benchmark suite with the issues' whole grid (decode batch {1,8,64} x
# {32K,128K,1M}, MTP q=8, dense by cuDNN and the flash backend, prefill with 8-bit index keys)
mkdir -p /tmp/site && tar -xJf .whl_gpu/sglang_bundle.tar.xz -C /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site benchmarks/_scratch/whl_bench/*.whl
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
timeout 540 python3 -m pytest -q -p no:cacheprovider -rs benchmarks/test_bench_kernels.py --benchmark-enable --benchmark-json=$OUT/bench.json > $OUT/bench_run.txt 2>&1; echo "bench rc=$?"; tail -12 $OUT/bench_run.txt
python3 benchmarks/bench_table.py $OUT/bench.json > $OUT/bench.md 2>&1; cat $OUT/bench.md | grep -v "^$" | head -150
