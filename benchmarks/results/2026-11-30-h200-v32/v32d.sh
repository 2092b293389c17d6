#!/bin/bash
# v32d: the bf16 decode scan at batch 1-2 (one or two programs an SM): stages (key blocks in flight) and warps
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
OUT=$OUT timeout 250 python3 benchmarks/decode_ab.py b1scan --lead --points 1x1048576,1x524288,1x131072,2x1048576,1x1048576x8 > $OUT/decode_ab_b1scan.txt 2>&1; echo "bf16 rc=$?"; tail -12 $OUT/decode_ab_b1scan.txt | cut -c1-200
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw --format=csv,noheader
