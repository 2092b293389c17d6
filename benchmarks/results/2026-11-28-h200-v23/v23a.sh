#!/bin/bash
# v23 call A: the GPU kernel suite (with the prefill wrapper's tests), compute-sanitizer memcheck
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
K="kernel or golden or graph or wrapper or quantize or misuse or bad or splits or score_form or window or slot or kv_outer or workspace or sub_rule or dense or confines or token or builds or call_rows or block_tiles"
MSA_KERNEL_EXAMPLES=5 timeout 400 python3 -m pytest -q -p no:cacheprovider tests/unit tests/golden tests/property/test_decode_wrapper.py tests/property/test_selection.py tests/property/test_dense.py tests/property/test_prefill_wrapper.py -k "$K" > $OUT/gpu_tests_v23.txt 2>&1; echo "suite rc=$?"; tail -3 $OUT/gpu_tests_v23.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_v23.txt | head -20
PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout 150 compute-sanitizer --tool memcheck python3 benchmarks/sanitize_case.py > $OUT/memcheck_v23.txt 2>&1; echo "memcheck rc=$?"; tail -3 $OUT/memcheck_v23.txt
