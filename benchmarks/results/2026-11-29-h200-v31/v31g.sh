#!/bin/bash
# v31g: the shipped stage rule against the one before it with an A/A pair (rule, rule_aa) and the variant order
# rotated each round (a review of v31a-d: the lead column's spread between identical plans reached 4.6% in v31d),
# at the measured batch 16-64 points and a serving-sized batch of 300 short requests (one split each, 2.3 an SM)
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
OUT=$OUT timeout 220 python3 benchmarks/decode_ab.py stages64 --lead --points 64x131072,32x131072,16x131072,300x8192 > $OUT/decode_ab_stages64_g.txt 2>&1; echo "stages rc=$?"; tail -10 $OUT/decode_ab_stages64_g.txt | cut -c1-200
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw --format=csv,noheader
