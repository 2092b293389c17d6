#!/bin/bash
# v26f: the GPU suite's tail v26e's 290 s limit cut (property tests of selection, dense rows, prefill wrapper); the suite's prefill chunks and whole prompts
mkdir -p /tmp/site && tar -xJf .whl_gpu/sglang_bundle.tar.xz -C /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site benchmarks/_scratch/whl_bench/*.whl
export PYTHONPATH=/tmp/site:$PWD
K="kernel or golden or graph or wrapper or quantize or misuse or bad or splits or score_form or window or slot or kv_outer or workspace or sub_rule or dense or confines or token or builds or call_rows or block_tiles or ws"
MSA_KERNEL_EXAMPLES=5 timeout 110 python3 -m pytest -q -p no:cacheprovider tests/property/test_selection.py tests/property/test_dense.py tests/property/test_prefill_wrapper.py -k "$K" > $OUT/gpu_tests_v26f_tail.txt 2>&1; echo "tail rc=$?"; tail -1 $OUT/gpu_tests_v26f_tail.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_v26f_tail.txt | head
timeout 160 python3 -m pytest -q -p no:cacheprovider -rs benchmarks/test_bench_kernels.py -k "prefill and not flash and not fp8 and not wrapper" --benchmark-enable --benchmark-json=$OUT/bench_prefill.json > $OUT/bench_prefill_run.txt 2>&1; echo "bench rc=$?"; tail -1 $OUT/bench_prefill_run.txt
timeout 210 python3 -m pytest -q -p no:cacheprovider -rs benchmarks/test_bench_kernels.py -k "prompt" --benchmark-enable --benchmark-json=$OUT/bench_prompt.json > $OUT/bench_prompt_run.txt 2>&1; echo "prompt rc=$?"; tail -1 $OUT/bench_prompt_run.txt
python3 benchmarks/bench_table.py $OUT/bench_prefill.json > $OUT/bench_prefill.md 2>&1; grep -E "^###|prefill_msa \||prefill_sglang all|prefill_msa_main|prefill_dense \(" $OUT/bench_prefill.md
python3 benchmarks/bench_table.py $OUT/bench_prompt.json > $OUT/bench_prompt.md 2>&1; grep -v "^$" $OUT/bench_prompt.md | tail -22
