#!/bin/bash
# v31d: v31c found more splits at batch 1 x 1M faster, most of all behind the matmul lead (bf16 min8_max256 82.8 us
# against the rule's 92.8; 8-bit cap512 63.0 against 66.6): the split cap at batch 1-2 and 128K-1M, both columns,
# with the suite's narrow page tables and with SGLang's 1M-wide ones
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
OUT=$OUT timeout 170 python3 benchmarks/decode_ab.py cap1m --lead --points 1x1048576,2x1048576,1x524288,1x131072,1x131072x8,1x1048576x8 > $OUT/decode_ab_cap1m.txt 2>&1; echo "bf16 rc=$?"; tail -14 $OUT/decode_ab_cap1m.txt | cut -c1-200
OUT=$OUT timeout 170 python3 benchmarks/decode_ab.py cap1m_fp8 --fp8 --lead --points 1x1048576,2x1048576,1x524288,4x1048576,1x1048576x8 > $OUT/decode_ab_cap1m_fp8.txt 2>&1; echo "fp8 rc=$?"; tail -12 $OUT/decode_ab_cap1m_fp8.txt | cut -c1-200
OUT=$OUT timeout 120 python3 benchmarks/decode_ab.py cap1m --wide --lead --points 1x131072,1x32768,1x1048576 > $OUT/decode_ab_cap1m_wide.txt 2>&1; echo "wide rc=$?"; tail -8 $OUT/decode_ab_cap1m_wide.txt | cut -c1-200
