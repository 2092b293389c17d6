#!/bin/bash
# v32b: the tile bound (loose = before, tight) x the partial kernel's grid order ((tiles, splits) = before,
# (splits, tiles) where the grid may hold empty tiles), MTP points, bf16 and 8-bit keys (NOTES.md v32b)
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
OUT=$OUT timeout 250 python3 benchmarks/decode_ab.py mtp_order --lead --points 1x1048576x8,2x1048576x8,4x131072x8,8x131072x8,2x131072x8,8x131072x2,1x131072x8 > $OUT/decode_ab_mtp_order.txt 2>&1; echo "bf16 rc=$?"; tail -16 $OUT/decode_ab_mtp_order.txt | cut -c1-200
OUT=$OUT timeout 170 python3 benchmarks/decode_ab.py mtp_order --fp8 --lead --points 1x1048576x8,2x1048576x8,4x131072x8,8x131072x2,8x131072x8 > $OUT/decode_ab_mtp_order_fp8.txt 2>&1; echo "fp8 rc=$?"; tail -12 $OUT/decode_ab_mtp_order_fp8.txt | cut -c1-200
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw --format=csv,noheader
