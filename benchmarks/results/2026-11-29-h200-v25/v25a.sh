#!/bin/bash
# v25a: the Gluon warp-specialized KV-outer partial kernel - smoke, GPU tests, A/B against the Triton kernel
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $OUT/gpu.txt 2>&1
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" >> $OUT/gpu.txt
timeout 90 python3 - > $OUT/smoke.txt 2>&1 <<'PY'
import torch
from harness import bench as hb
from msa_sgl import ops
from msa_sgl.ops import main_branch as mb
prob = hb.make_big_problem([300, 200], [2085, 4096], dtype=torch.bfloat16, seed=1)
topk = ops.index_topk(**prob.index_args())
aa = prob.attention_args(topk)
tri = ops.sparse_attention(**aa, method="kv_outer")
mb._KV_WS = True
ws = ops.sparse_attention(**aa, method="kv_outer")
torch.cuda.synchronize()
print("finite", bool(torch.isfinite(ws).all()), "max diff", float((ws.float() - tri.float()).abs().max()),
      "rel", float((ws.double() - tri.double()).norm() / tri.double().norm()))
PY
echo "smoke rc=$?"; cat $OUT/smoke.txt | tail -5
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/unit/test_kv_outer_ws.py > $OUT/gpu_tests_ws.txt 2>&1; echo "tests rc=$?"; tail -3 $OUT/gpu_tests_ws.txt; grep -E "FAILED|Error|assert" $OUT/gpu_tests_ws.txt | head -8
OUT=$OUT timeout 280 python3 benchmarks/prefill_ab.py ws > $OUT/prefill_ab_ws.txt 2>&1; echo "ab rc=$?"; grep "^{'off'" $OUT/prefill_ab_ws.txt; tail -2 $OUT/prefill_ab_ws.txt | cut -c1-300
