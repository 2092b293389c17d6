#!/bin/bash
# v25l: the suite's prefill chunks with 8-bit index keys, now with the Gluon main branch
mkdir -p /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site benchmarks/_scratch/whl_bench/*.whl
export PYTHONPATH=/tmp/site:$PWD
timeout 150 python3 -m pytest -q -p no:cacheprovider -rs benchmarks/test_bench_kernels.py -k "prefill_msa_fp8 or prefill_msa_index_fp8" --benchmark-enable --benchmark-json=$OUT/bench_prefill_fp8.json > $OUT/bench_prefill_fp8_run.txt 2>&1; echo "bench rc=$?"; tail -1 $OUT/bench_prefill_fp8_run.txt
python3 benchmarks/bench_table.py $OUT/bench_prefill_fp8.json > $OUT/bench_prefill_fp8.md 2>&1; grep -E "^###|\| prefill" $OUT/bench_prefill_fp8.md
