#!/bin/bash
export PYTHONPATH=$PWD
MSA_KERNEL_EXAMPLES=10 timeout 150 python3 -m pytest -q -p no:cacheprovider tests/property/test_prefill_wrapper.py tests/unit/test_block_tiles.py > $OUT/gpu_tests_prefill_wrapper.txt 2>&1; echo "wrapper tests rc=$?"; tail -2 $OUT/gpu_tests_prefill_wrapper.txt
timeout 120 python3 benchmarks/host_time.py wrapper > $OUT/host_wrapper_v22.txt 2>&1; echo "host rc=$?"; cat $OUT/host_wrapper_v22.txt
timeout 320 bash benchmarks/sglang_gpu/run_tests.sh > $OUT/sglang_run.txt 2>&1; echo "sglang rc=$?"; tail -3 $OUT/sglang_gpu.txt
