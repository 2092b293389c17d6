import os
import sys

sys.path.insert(0, os.getcwd())
import torch  # noqa: E402

from harness import bench as hb  # noqa: E402
from msa_sgl import ops  # noqa: E402

P = int(sys.argv[1])
prob = hb.make_big_problem([16384], [P + 16384], dtype=torch.bfloat16, seed=P + 3)
topk = ops.index_topk(**prob.index_args())
aa = prob.attention_args(topk)
for _ in range(2):
    ops.sparse_attention(**aa, method="kv_outer")
torch.cuda.synchronize()
