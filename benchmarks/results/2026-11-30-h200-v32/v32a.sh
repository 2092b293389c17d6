#!/bin/bash
# v32a: MTP plans - tile_grid's tight bound (loose = before) and a bf16 split cap for 32-64-row tiles on wide
# tables (NOTES.md v32a), narrow and SGLang-wide tables, bf16 and 8-bit keys, both columns
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
OUT=$OUT timeout 250 python3 benchmarks/decode_ab.py mtp --lead --points 1x1048576x8,1x1048576x16,1x524288x8,2x1048576x8,1x131072x8,4x131072x8,1x1048576x2 > $OUT/decode_ab_mtp.txt 2>&1; echo "bf16 rc=$?"; tail -16 $OUT/decode_ab_mtp.txt | cut -c1-200
OUT=$OUT timeout 130 python3 benchmarks/decode_ab.py mtp --wide --lead --points 1x131072x8,1x32768x8,1x1048576x8 > $OUT/decode_ab_mtp_wide.txt 2>&1; echo "wide rc=$?"; tail -8 $OUT/decode_ab_mtp_wide.txt | cut -c1-200
OUT=$OUT timeout 110 python3 benchmarks/decode_ab.py mtp_fp8 --fp8 --lead --points 1x1048576x8,2x1048576x8,4x131072x8,8x131072x2,1x1048576x2 > $OUT/decode_ab_mtp_fp8.txt 2>&1; echo "fp8 rc=$?"; tail -12 $OUT/decode_ab_mtp_fp8.txt | cut -c1-200
OUT=$OUT timeout 60 python3 benchmarks/decode_ab.py mtp_fp8 --fp8 --wide --lead --points 1x131072x8 > $OUT/decode_ab_mtp_fp8_wide.txt 2>&1; echo "fp8 wide rc=$?"; tail -4 $OUT/decode_ab_mtp_fp8_wide.txt | cut -c1-200
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw --format=csv,noheader
