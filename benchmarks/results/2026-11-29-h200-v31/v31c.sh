#!/bin/bash
# v31c: where batch-1 decode spends its step (the unmet 8-bit 1 x 128K 1.6x SGLang, 1 x 1M 12x / bf16 7x dense):
# each kernel back to back and behind the matmul lead (profile_decode.py --hot --rotate), then the split cap at
# batch 1 in both columns (decode_ab.py fp8cap --fp8 --lead; cap --lead for bf16 keys)
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
timeout 200 python3 benchmarks/profile_decode.py --hot --rotate --points 1x131072,1x1048576 --out $OUT/profile_hot_c.json > $OUT/profile_hot_c.txt 2>&1; echo "profile rc=$?"; cut -c1-200 $OUT/profile_hot_c.txt | grep -v "^$" | tail -40
OUT=$OUT timeout 150 python3 benchmarks/decode_ab.py fp8cap --fp8 --lead --points 1x131072,1x1048576,2x1048576 > $OUT/decode_ab_fp8cap_c.txt 2>&1; echo "fp8cap rc=$?"; tail -9 $OUT/decode_ab_fp8cap_c.txt | cut -c1-200
OUT=$OUT timeout 150 python3 benchmarks/decode_ab.py cap --lead --points 1x131072,1x1048576 > $OUT/decode_ab_cap_c.txt 2>&1; echo "cap rc=$?"; tail -7 $OUT/decode_ab_cap_c.txt | cut -c1-200
