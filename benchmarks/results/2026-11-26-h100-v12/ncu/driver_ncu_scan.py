import sys, os
sys.path.insert(0, os.getcwd()); sys.path.insert(0, "benchmarks")
import torch, msa_sgl
from harness import bench as hb
from profile_decode import quantized, M3
ctx = int(sys.argv[1]); fp8 = sys.argv[2] == "fp8"
prob = hb.make_big_problem([1], [ctx], dtype=torch.bfloat16, seed=ctx)
a = prob.args
kidx, scale = quantized(prob) if fp8 else (a["k_idx_cache"], None)
w = msa_sgl.MSADecodeWrapper(prob.config, **M3, max_batch=1, max_pages=a["page_table"].shape[1], max_q_len=1,
                             dtype=torch.bfloat16, device="cuda", pdl=False, index_fp8=fp8)
w.plan(a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"], total_q=1)
for _ in range(5):
    w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], kidx, k_idx_scale=scale)
torch.cuda.synchronize()
