#!/bin/bash
# v32g: tests/sglang on the GPU again, whole (v32f's call ran out of its 330 s one test before the end; the
# extra file argument is passed after tests/sglang, so the run is the whole directory)
MSA_KERNEL_EXAMPLES=4 timeout 300 bash benchmarks/sglang_gpu/run_tests.sh tests/sglang/test_real_pools.py -k "not nothing" > /dev/null 2>&1; echo "rc=$?"; tail -4 $OUT/sglang_gpu.txt; mv $OUT/sglang_gpu.txt $OUT/sglang_gpu_f2.txt
