"""A representative call of every kernel, small enough for compute-sanitizer: varlen batch with
a prefill, a chunk after a prefix and decode rows, both main-branch forms, bf16, M3 head shapes.

    compute-sanitizer --tool memcheck python3 benchmarks/sanitize_case.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from harness import bench as hb  # noqa: E402
from msa_sgl import ops  # noqa: E402

prob = hb.make_big_problem([1500, 700, 1, 4], [1500, 3000, 4096, 300], dtype=torch.bfloat16, seed=3)
topk = ops.index_topk(**prob.index_args())
a = ops.sparse_attention(**prob.attention_args(topk), method="kv_outer")
b = ops.sparse_attention(**prob.attention_args(topk), method="q_outer")
one = hb.make_big_problem([1] * 4, [5000, 130, 70000, 9000], dtype=torch.bfloat16, seed=4)  # decode: split index
t1 = ops.index_topk(**one.index_args())
c = ops.sparse_attention(**one.attention_args(t1))
torch.cuda.synchronize()
print("sanitize case done:", bool(torch.isfinite(a).all() and torch.isfinite(b).all() and torch.isfinite(c).all()),
      "forms rel diff", float((a.float() - b.float()).norm() / b.float().norm()))
