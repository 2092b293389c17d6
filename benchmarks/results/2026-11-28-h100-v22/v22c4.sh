#!/bin/bash
mkdir -p /tmp/site && tar -xJf .whl_gpu/sglang_bundle.tar.xz -C /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site benchmarks/_scratch/whl_bench/*.whl
export PYTHONPATH=/tmp/site:$PWD
timeout 300 python3 -m pytest -q -p no:cacheprovider benchmarks/test_bench_kernels.py -k prefill --benchmark-enable --benchmark-json=$OUT/bench_prefill_wrapper.json > $OUT/bench_prefill_wrapper_run.txt 2>&1; echo "bench rc=$?"; tail -2 $OUT/bench_prefill_wrapper_run.txt
python3 benchmarks/bench_table.py $OUT/bench_prefill_wrapper.json > $OUT/bench_prefill_wrapper.md 2>&1; cat $OUT/bench_prefill_wrapper.md | head -50
