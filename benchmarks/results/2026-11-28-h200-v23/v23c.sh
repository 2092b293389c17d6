#!/bin/bash
# v23 call C: tests/sglang on the GPU (all of it; call B's 200 s limit cut test_backend.py short)
mkdir -p $OUT && OUT=$OUT timeout 540 bash benchmarks/sglang_gpu/run_tests.sh > /dev/null 2>&1; echo "sglang rc=$?"; tail -15 $OUT/sglang_gpu.txt
