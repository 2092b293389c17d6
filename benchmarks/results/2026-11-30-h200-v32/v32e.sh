#!/bin/bash
# v32e: MTP at batch 2-8, splits aimed at the real tiles (uniform q_len) against the plan's bound (NOTES.md v32e)
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
OUT=$OUT timeout 200 python3 benchmarks/decode_ab.py mtp_exact --lead --points 2x1048576x8,2x131072x8,4x131072x8,8x131072x8 > $OUT/decode_ab_mtp_exact.txt 2>&1; echo "bf16 rc=$?"; tail -10 $OUT/decode_ab_mtp_exact.txt | cut -c1-200
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw --format=csv,noheader
