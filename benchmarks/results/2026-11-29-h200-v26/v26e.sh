#!/bin/bash
# v26e: the kept kernel (pipelined consumers, diagonal-only mask) - GPU kernel suite, memcheck, A/B
export PYTHONPATH=$PWD
K="kernel or golden or graph or wrapper or quantize or misuse or bad or splits or score_form or window or slot or kv_outer or workspace or sub_rule or dense or confines or token or builds or call_rows or block_tiles or ws"
MSA_KERNEL_EXAMPLES=5 timeout 290 python3 -m pytest -q -p no:cacheprovider tests/unit tests/golden tests/property/test_decode_wrapper.py tests/property/test_selection.py tests/property/test_dense.py tests/property/test_prefill_wrapper.py -k "$K" > $OUT/gpu_tests_v26e.txt 2>&1; echo "suite rc=$?"; tail -1 $OUT/gpu_tests_v26e.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_v26e.txt | head -20
PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout 120 compute-sanitizer --tool memcheck python3 benchmarks/sanitize_case.py > $OUT/memcheck_v26e.txt 2>&1; echo "memcheck rc=$?"; tail -3 $OUT/memcheck_v26e.txt
OUT=$OUT timeout 150 python3 benchmarks/prefill_ab.py pipe > $OUT/prefill_ab_pipe_e.txt 2>&1; echo "ab rc=$?"; grep "^{'triton'" $OUT/prefill_ab_pipe_e.txt; mv $OUT/prefill_ab.json $OUT/prefill_ab_pipe_e.json
