#!/bin/bash
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
K="kernel or golden or graph or wrapper or quantize or misuse or bad or splits or score_form or window or slot or kv_outer or workspace or sub_rule or dense or confines or token or builds or call_rows or block_tiles"
MSA_KERNEL_EXAMPLES=5 timeout 330 python3 -m pytest -q -p no:cacheprovider tests/unit tests/golden tests/property/test_decode_wrapper.py tests/property/test_selection.py tests/property/test_dense.py -k "$K" > $OUT/gpu_tests_v22.txt 2>&1; echo "suite rc=$?"; tail -3 $OUT/gpu_tests_v22.txt
PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout 120 compute-sanitizer --tool memcheck python3 benchmarks/sanitize_case.py > $OUT/memcheck_v22.txt 2>&1; echo "memcheck rc=$?"; tail -3 $OUT/memcheck_v22.txt
timeout 130 python3 benchmarks/_scratch/host_ab_v22.py > $OUT/host_ab_v22.txt 2>&1; echo "ab rc=$?"; cat $OUT/host_ab_v22.txt | tail -8
