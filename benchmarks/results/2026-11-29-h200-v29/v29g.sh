#!/bin/bash
# v29g: the 8-bit-key decode scan's launch knobs on the H200 (decode_ab.py h200fp8) at the points within ~2% of
# issue 4's 8-bit targets (8 x 1M: 12x dense, 8 x 128K: 1.6x SGLang) and at batch 1
export PYTHONPATH=$PWD
OUT=$OUT timeout 480 python3 benchmarks/decode_ab.py h200fp8 --fp8 --points 8x1048576,8x131072,1x131072,1x1048576 > $OUT/decode_ab_h200fp8.txt 2>&1; echo "ab rc=$?"; tail -8 $OUT/decode_ab_h200fp8.txt
