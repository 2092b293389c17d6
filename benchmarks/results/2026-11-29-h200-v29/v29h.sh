#!/bin/bash
# v29h: 8-bit-key decode, 3 / 4 / 5 / 6 / 8 scan programs an SM (decode_ab.py fp8x) over issue 4's batch-8 / 64
# grid and MTP, after v29g's 4
export PYTHONPATH=$PWD
OUT=$OUT timeout 480 python3 benchmarks/decode_ab.py fp8x --fp8 --points 8x1048576,8x131072,8x32768,64x131072,64x32768,1x131072x8,1x32768 > $OUT/decode_ab_fp8x.txt 2>&1; echo "ab rc=$?"; tail -10 $OUT/decode_ab_fp8x.txt
