#!/bin/bash
# v24c: decode split caps on the H200 (decode_ab.py cap / fp8cap)
export PYTHONPATH=$PWD
timeout 270 python3 benchmarks/decode_ab.py cap --points 1x1048576,1x131072,8x1048576 > $OUT/decode_ab_cap.txt 2>&1; echo "cap rc=$?"; tail -25 $OUT/decode_ab_cap.txt
timeout 200 python3 benchmarks/decode_ab.py fp8cap --fp8 --points 1x1048576,1x131072 > $OUT/decode_ab_fp8cap.txt 2>&1; echo "fp8cap rc=$?"; tail -20 $OUT/decode_ab_fp8cap.txt
