#!/bin/bash
# v31e: the kept state on the GPU (v31's plan rule, the KV-outer out-of-contract case, decode graph / wrapper,
# goldens, prefill property tests; then tests/sglang), and decode_ab.py cap128k_fp8 (8-bit keys, batch 1, narrow tables)
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
OUT=$OUT timeout 100 python3 benchmarks/decode_ab.py cap128k_fp8 --fp8 --lead --points 1x131072,1x65536,1x131072x8 > $OUT/decode_ab_cap128k_fp8.txt 2>&1; echo "cap rc=$?"; tail -8 $OUT/decode_ab_cap128k_fp8.txt | cut -c1-200
MSA_KERNEL_EXAMPLES=4 timeout 170 python3 -m pytest -q -p no:cacheprovider tests/unit/test_index_score_forms.py tests/unit/test_out_of_contract.py tests/unit/test_decode_graph.py tests/property/test_decode_wrapper.py tests/property/test_against_reference.py tests/property/test_chunked.py tests/golden > $OUT/gpu_tests_e.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_e.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_e.txt | head -10
MSA_KERNEL_EXAMPLES=4 OUT=$OUT timeout 320 bash benchmarks/sglang_gpu/run_tests.sh > /dev/null 2>&1; echo "sglang rc=$?"; tail -2 $OUT/sglang_gpu.txt; grep -E "FAILED|ERROR" $OUT/sglang_gpu.txt | head -10
mv $OUT/sglang_gpu.txt $OUT/sglang_gpu_e.txt
