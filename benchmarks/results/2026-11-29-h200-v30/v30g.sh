#!/bin/bash
# v30g: the kept state on the GPU: KV_OUTER_MIN_QUERIES 1024 and the pipelined query-outer form through the prefill
# and decode property tests, goldens and the prefill wrapper; then tests/sglang (the backend's extend and decode paths)
export PYTHONPATH=$PWD
MSA_KERNEL_EXAMPLES=4 timeout 200 python3 -m pytest -q -p no:cacheprovider tests/unit/test_q_outer_sub.py tests/unit/test_dense_rows.py tests/property/test_against_reference.py tests/property/test_chunked.py tests/property/test_prefill_wrapper.py tests/property/test_invariance.py tests/golden > $OUT/gpu_tests_g.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_g.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_g.txt | head -10
MSA_KERNEL_EXAMPLES=4 OUT=$OUT timeout 330 bash benchmarks/sglang_gpu/run_tests.sh > /dev/null 2>&1; echo "sglang rc=$?"; tail -2 $OUT/sglang_gpu.txt; grep -E "FAILED|ERROR" $OUT/sglang_gpu.txt | head -10
mv $OUT/sglang_gpu.txt $OUT/sglang_gpu_g.txt
