#!/bin/bash
# v24e: decode plan's row metadata by call_rows - GPU decode tests, SGLang graph hooks, plan host time
export PYTHONPATH=$PWD
MSA_KERNEL_EXAMPLES=5 timeout 220 python3 -m pytest -q -p no:cacheprovider tests/unit/test_decode_graph.py tests/unit/test_slot_sub.py tests/unit/test_wrapper_workspace.py tests/unit/test_bad_inputs.py tests/unit/test_metadata_host.py tests/property/test_decode_wrapper.py tests/property/test_fp8_index.py > $OUT/gpu_tests_v24e.txt 2>&1; echo "suite rc=$?"; tail -2 $OUT/gpu_tests_v24e.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_v24e.txt | head
OUT=$OUT timeout 200 bash benchmarks/sglang_gpu/run_tests.sh tests/sglang/test_cuda_graph.py tests/sglang/test_backend.py -k "graph or decode" > /dev/null 2>&1; echo "sglang rc=$?"; tail -2 $OUT/sglang_gpu.txt
timeout 100 python3 benchmarks/host_time.py plan > $OUT/host_plan_v24e.txt 2>&1; echo "host rc=$?"; cat $OUT/host_plan_v24e.txt | tail -8
