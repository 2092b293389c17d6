#!/bin/bash
# v27g: tests/sglang on the GPU (the backend's extend path takes the Gluon index scan) and the chunked-prefill property tests
MSA_KERNEL_EXAMPLES=4 OUT=$OUT timeout 250 bash benchmarks/sglang_gpu/run_tests.sh > /dev/null 2>&1; echo "sglang rc=$?"; tail -3 $OUT/sglang_gpu.txt; grep -E "FAILED|ERROR" $OUT/sglang_gpu.txt | head -10
mv $OUT/sglang_gpu.txt $OUT/sglang_gpu_v27g.txt
export PYTHONPATH=$PWD
MSA_KERNEL_EXAMPLES=4 timeout 100 python3 -m pytest -q -p no:cacheprovider tests/property/test_chunked.py tests/property/test_invariance.py > $OUT/gpu_tests_g.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_g.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_g.txt | head -10
