#!/bin/bash
# v31a: (1) bf16 decode scan stages where the launch puts 2-3 programs an SM (decode_ab.py stages64, new
# _STAGED_PROGRAMS_PER_SM knob), back to back and behind the suite's matmul lead (--lead, new); (2) the KV-outer
# form with each pass's merge beside the next pass's partial kernel (overlap_ab.py, new knobs in main_branch)
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
OUT=$OUT timeout 280 python3 benchmarks/decode_ab.py stages64 --lead --points 64x131072,64x32768,32x131072,16x131072 > $OUT/decode_ab_stages64.txt 2>&1; echo "stages rc=$?"; tail -14 $OUT/decode_ab_stages64.txt | cut -c1-200
OUT=$OUT timeout 280 python3 benchmarks/overlap_ab.py --prefixes 0,114688 > $OUT/overlap_ab_a.txt 2>&1; echo "overlap rc=$?"; tail -22 $OUT/overlap_ab_a.txt | cut -c1-250
mv $OUT/overlap_ab.json $OUT/overlap_ab_a.json 2>/dev/null
