#!/bin/bash
# v27f: the kept state (v27a softmax, Gluon index scan on 256-row tiles) - prefill GPU tests, the suite's prompts and chunks with SGLang
mkdir -p /tmp/site && tar -xJf .whl_gpu/sglang_bundle.tar.xz -C /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site benchmarks/_scratch/whl_bench/*.whl
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $OUT/gpu_f.txt; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" >> $OUT/gpu_f.txt; cat $OUT/gpu_f.txt
MSA_KERNEL_EXAMPLES=4 timeout 130 python3 -m pytest -q -p no:cacheprovider tests/property/test_selection.py tests/property/test_prefill_wrapper.py tests/golden tests/unit/test_index_splits.py tests/unit/test_index_score_forms.py > $OUT/gpu_tests_f.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_f.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_f.txt | head -10
timeout 200 python3 -m pytest -q -p no:cacheprovider -rs benchmarks/test_bench_kernels.py -k "prompt" --benchmark-enable --benchmark-json=$OUT/bench_prompt.json > $OUT/bench_prompt_run.txt 2>&1; echo "prompt rc=$?"; tail -1 $OUT/bench_prompt_run.txt
timeout 150 python3 -m pytest -q -p no:cacheprovider -rs benchmarks/test_bench_kernels.py -k "prefill and not flash and not fp8 and not wrapper" --benchmark-enable --benchmark-json=$OUT/bench_prefill.json > $OUT/bench_prefill_run.txt 2>&1; echo "bench rc=$?"; tail -1 $OUT/bench_prefill_run.txt
python3 benchmarks/bench_table.py $OUT/bench_prompt.json > $OUT/bench_prompt.md 2>&1; grep -v "^$" $OUT/bench_prompt.md | tail -14
python3 benchmarks/bench_table.py $OUT/bench_prefill.json > $OUT/bench_prefill.md 2>&1; grep -E "^###|prefill_msa \||prefill_sglang all|prefill_msa_main|prefill_msa_index|prefill_dense \(" $OUT/bench_prefill.md | cut -c1-200
