#!/bin/bash
# v32f: the Gluon KV-outer kernel's tests with the new out-of-contract case; tests/sglang on the GPU (the backend's
# decode / verify plans now take the tight tile bound and the split-major grid)
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/unit/test_kv_outer_ws.py > $OUT/gpu_tests_f.txt 2>&1; echo "ws tests rc=$?"; tail -1 $OUT/gpu_tests_f.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_f.txt | head -10
MSA_KERNEL_EXAMPLES=4 OUT=$OUT timeout 330 bash benchmarks/sglang_gpu/run_tests.sh > /dev/null 2>&1; echo "sglang rc=$?"; tail -2 $OUT/sglang_gpu.txt; grep -E "FAILED|ERROR" $OUT/sglang_gpu.txt | head -10
mv $OUT/sglang_gpu.txt $OUT/sglang_gpu_f.txt
