#!/bin/bash
# v30a: (1) the GPU check v29j could not run: the committed 8-bit one-wave rule (from 8 tiles) through the plan
# tests and decode_ab.py fp8rule at the points where it and the unrestricted rule differ; (2) v29k's bf16 one-wave
# knob (decode_ab.py bf16wave: rule / wave8 / wave1) at the predicted points
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
MSA_KERNEL_EXAMPLES=4 timeout 120 python3 -m pytest -q -p no:cacheprovider tests/unit/test_index_score_forms.py tests/unit/test_wrapper_workspace.py > $OUT/gpu_tests_a.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_a.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_a.txt | head -10
OUT=$OUT timeout 150 python3 benchmarks/decode_ab.py fp8rule --fp8 --points 8x1048576,2x1048576,4x1048576,8x131072 > $OUT/decode_ab_fp8rule.txt 2>&1; echo "fp8 rc=$?"; tail -6 $OUT/decode_ab_fp8rule.txt
OUT=$OUT timeout 260 python3 benchmarks/decode_ab.py bf16wave --points 8x1048576,8x131072,8x32768,64x131072,64x32768,16x131072,4x1048576,2x1048576 > $OUT/decode_ab_bf16wave.txt 2>&1; echo "bf16 rc=$?"; tail -10 $OUT/decode_ab_bf16wave.txt
