#!/bin/bash
# v25c: the Gluon kernel on by default - GPU kernel suite, memcheck, ncu of one launch at P = 0
export PYTHONPATH=$PWD
K="kernel or golden or graph or wrapper or quantize or misuse or bad or splits or score_form or window or slot or kv_outer or workspace or sub_rule or dense or confines or token or builds or call_rows or block_tiles or ws"
MSA_KERNEL_EXAMPLES=5 timeout 300 python3 -m pytest -q -p no:cacheprovider tests/unit tests/golden tests/property/test_decode_wrapper.py tests/property/test_selection.py tests/property/test_dense.py tests/property/test_prefill_wrapper.py -k "$K" > $OUT/gpu_tests_v25c.txt 2>&1; echo "suite rc=$?"; tail -2 $OUT/gpu_tests_v25c.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_v25c.txt | head -20
PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout 150 compute-sanitizer --tool memcheck python3 benchmarks/sanitize_case.py > $OUT/memcheck_v25c.txt 2>&1; echo "memcheck rc=$?"; tail -3 $OUT/memcheck_v25c.txt
timeout 110 ncu --kernel-name regex:kv_outer_ws --launch-skip 1 --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section ComputeWorkloadAnalysis python3 benchmarks/results/2026-11-29-h200-v25/ncu/driver_ncu_ws.py 0 > $OUT/ncu_kv_outer_ws_P0.txt 2>&1; echo "ncu rc=$?"; grep -E "Throughput|Duration|Busy|Hit Rate|Pipe|Issue" $OUT/ncu_kv_outer_ws_P0.txt | head -30
