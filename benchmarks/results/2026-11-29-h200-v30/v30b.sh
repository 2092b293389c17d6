#!/bin/bash
# v30b: where the bf16 decode step's clock sensitivity sits (the event column's 0.98x SGLang at 64 x 128K, v29d):
# each kernel's time back to back and behind the suite's matmul lead (profile_decode.py --hot), at 64 x 128K,
# 64 x 32K, 8 x 1M and 1 x 1M; then clock_probe.py as fbd3bd4 left it (never run on a GPU)
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
timeout 300 python3 benchmarks/profile_decode.py --hot --bf16-only --rotate --points 64x131072,64x32768,8x1048576,1x1048576 --out $OUT/profile_hot_b.json > $OUT/profile_hot_b.txt 2>&1; echo "profile rc=$?"; cat $OUT/profile_hot_b.txt | cut -c1-200
OUT=$OUT timeout 250 python3 benchmarks/clock_probe.py > $OUT/clock_probe_b.txt 2>&1; echo "probe rc=$?"; cut -c1-400 $OUT/clock_probe_b.txt | tail -8
mv $OUT/clock_probe.json $OUT/clock_probe_b.json 2>/dev/null
