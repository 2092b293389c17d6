#!/bin/bash
# v30d: the query-outer launch rule (64-key sub-blocks; 5 stages while the grid fits 3 programs an SM, else 3):
# GPU tests, qouter_ab.py whole / s64_st3 / s64_st5 / rule, the q_outer / kv_outer crossover by chunk size, then the
# suite's decode groups with SGLang 0.5.23 (both columns: events behind the matmul lead, wall clock)
mkdir -p /tmp/site && tar -xJf .whl_gpu/sglang_bundle.tar.xz -C /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site benchmarks/_scratch/whl_bench/*.whl
export PYTHONPATH=$PWD
MSA_KERNEL_EXAMPLES=4 timeout 150 python3 -m pytest -q -p no:cacheprovider tests/unit/test_q_outer_sub.py tests/unit/test_workspace_option.py tests/property/test_decode_wrapper.py tests/property/test_against_reference.py tests/golden > $OUT/gpu_tests_d.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_d.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_d.txt | head -10
OUT=$OUT timeout 120 python3 benchmarks/qouter_ab.py --rounds 2 --variants whole,s64_st3,s64_st5,rule > $OUT/qouter_ab_d.txt 2>&1; echo "ab rc=$?"; grep "us " $OUT/qouter_ab_d.txt | cut -c1-200; mv $OUT/qouter_ab.json $OUT/qouter_ab_d.json
OUT=$OUT timeout 100 python3 benchmarks/qouter_ab.py --crossover --rounds 2 > $OUT/qouter_crossover_d.txt 2>&1; echo "crossover rc=$?"; grep crossover: $OUT/qouter_crossover_d.txt
export PYTHONPATH=/tmp/site:$PWD
timeout 220 python3 -m pytest -q -p no:cacheprovider -rs benchmarks/test_bench_kernels.py -k "decode" --benchmark-enable --benchmark-json=$OUT/bench_decode_d.json > $OUT/bench_decode_run_d.txt 2>&1; echo "bench rc=$?"; tail -1 $OUT/bench_decode_run_d.txt
python3 benchmarks/bench_table.py $OUT/bench_decode_d.json > $OUT/bench_decode_d.md 2>&1; grep -v "^$" $OUT/bench_decode_d.md | grep -E "^###|decode_msa|decode_sglang|decode_dense \(|q_len" | cut -c1-160
