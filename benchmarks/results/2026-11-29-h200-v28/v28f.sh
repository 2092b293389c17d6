#!/bin/bash
# v28f: the kept state (the Gluon scan's 128-row tiles up to 256 blocks a request) end to end on the GPU: the prefill
# property / golden / index tests, and tests/sglang (the backend's extend path)
export PYTHONPATH=$PWD
MSA_KERNEL_EXAMPLES=4 timeout 130 python3 -m pytest -q -p no:cacheprovider tests/property/test_selection.py tests/property/test_prefill_wrapper.py tests/golden tests/unit/test_index_splits.py tests/unit/test_index_score_forms.py > $OUT/gpu_tests_f.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_f.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_f.txt | head -10
MSA_KERNEL_EXAMPLES=4 OUT=$OUT timeout 240 bash benchmarks/sglang_gpu/run_tests.sh > /dev/null 2>&1; echo "sglang rc=$?"; tail -3 $OUT/sglang_gpu.txt; grep -E "FAILED|ERROR" $OUT/sglang_gpu.txt | head -10
mv $OUT/sglang_gpu.txt $OUT/sglang_gpu_v28f.txt
