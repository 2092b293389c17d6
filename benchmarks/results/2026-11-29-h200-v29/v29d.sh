#!/bin/bash
# v29d: tests/sglang on the GPU (v28f ran out of its time after 17 passed), then the suite's decode groups with
# SGLang 0.5.23 (issue 4's grid, not rerun since v24; the kernels have not changed since)
MSA_KERNEL_EXAMPLES=4 OUT=$OUT timeout 330 bash benchmarks/sglang_gpu/run_tests.sh > /dev/null 2>&1; echo "sglang rc=$?"; tail -2 $OUT/sglang_gpu.txt; grep -E "FAILED|ERROR" $OUT/sglang_gpu.txt | head -10
mv $OUT/sglang_gpu.txt $OUT/sglang_gpu_d.txt
mkdir -p /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site benchmarks/_scratch/whl_bench/*.whl
export PYTHONPATH=/tmp/site:$PWD
timeout 220 python3 -m pytest -q -p no:cacheprovider -rs benchmarks/test_bench_kernels.py -k "decode" --benchmark-enable --benchmark-json=$OUT/bench_decode_d.json > $OUT/bench_decode_run_d.txt 2>&1; echo "bench rc=$?"; tail -1 $OUT/bench_decode_run_d.txt
python3 benchmarks/bench_table.py $OUT/bench_decode_d.json > $OUT/bench_decode_d.md 2>&1; grep -v "^$" $OUT/bench_decode_d.md | grep -E "^###|decode_msa|decode_sglang|decode_dense \(|q_len" | cut -c1-160
