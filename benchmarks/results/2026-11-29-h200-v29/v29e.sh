#!/bin/bash
# v29e: the SM clock a timed call meets (idle / behind the suite's matmul lead / after it plus 1 ms), and decode
# steps at 1 x 1M (bf16 keys) and 8 x 1M (8-bit keys) with dense cuDNN at 1 x 1M, back to back against behind the lead
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.draw,power.limit,temperature.gpu --format=csv
OUT=$OUT timeout 300 python3 benchmarks/clock_probe.py > $OUT/clock_probe_e.txt 2>&1; echo "probe rc=$?"; cut -c1-600 $OUT/clock_probe_e.txt | tail -8
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv
