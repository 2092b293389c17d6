#!/bin/bash
# v24d: the suite's whole-prompt groups (128K, 256K, 1M in 16K chunks; dense cuDNN to 256K)
mkdir -p /tmp/site && tar -xJf .whl_gpu/sglang_bundle.tar.xz -C /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site benchmarks/_scratch/whl_bench/*.whl
export PYTHONPATH=/tmp/site:$PWD
timeout 480 python3 -m pytest -q -p no:cacheprovider -rs benchmarks/test_bench_kernels.py -k prompt --benchmark-enable --benchmark-json=$OUT/bench_prompt.json > $OUT/bench_prompt_run.txt 2>&1; echo "bench rc=$?"; tail -6 $OUT/bench_prompt_run.txt
python3 benchmarks/bench_table.py $OUT/bench_prompt.json > $OUT/bench_prompt.md 2>&1; grep -v "^$" $OUT/bench_prompt.md
