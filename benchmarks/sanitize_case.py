"""A representative call of every kernel, small enough for compute-sanitizer: varlen batch with
a prefill, a chunk after a prefix and decode rows, the three main-branch forms (KV-outer also in
sub-blocks and in passes), the dense rows, the decode
wrapper (both index score forms, 8-bit keys with e4m3 and with bf16 queries, the heads-first list
merge), 8-bit index keys (store and read), bf16, M3 head shapes.

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck python3 benchmarks/sanitize_case.py

(Without PYTORCH_NO_CUDA_MEMORY_CACHING=1 torch's caching allocator carves tensors out of large
segments, and memcheck cannot see an access past a tensor that stays inside its segment.)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import msa_sgl  # noqa: E402
from harness import bench as hb  # noqa: E402
from msa_sgl import ops  # noqa: E402

prob = hb.make_big_problem([1500, 700, 1, 4], [1500, 3000, 4096, 300], dtype=torch.bfloat16, seed=3)
topk = ops.index_topk(**prob.index_args())
a = ops.sparse_attention(**prob.attention_args(topk), method="kv_outer")  # Gluon partials on Hopper (kv_outer_ws)
b = ops.sparse_attention(**prob.attention_args(topk), method="q_outer")
# the KV-outer form's other shapes: tiles in pipelined sub-blocks, passes of two groups (a budget
# of 2205 rows x 2 groups), one group at a time in row ranges (8 MiB: 126 rows)
# (and the Triton partial kernel, whole block and in sub-blocks, where the Gluon one would run)
ops.main_branch._KV_WS = False
a_tri = ops.sparse_attention(**prob.attention_args(topk), method="kv_outer")
ops.main_branch._KV_SUB = 32
a_sub = ops.sparse_attention(**prob.attention_args(topk), method="kv_outer")
ops.main_branch._KV_SUB = None
ops.main_branch._KV_WS = True
a_pass = [ops.sparse_attention(**prob.attention_args(topk), method="kv_outer", workspace_bytes=ws)
          for ws in (2205 * 2 * 16 * 16 * (128 * 2 + 4), 8 << 20)]
one = hb.make_big_problem([1] * 4, [5000, 130, 70000, 9000], dtype=torch.bfloat16, seed=4)  # decode: split index
t1 = ops.index_topk(**one.index_args())
c = ops.sparse_attention(**one.attention_args(t1), method="split")
# dense rows (main_branch._dense_rows_kernel): msa_attention on the varlen batch (KV-outer form; the
# first and last requests' rows are dense), and a call whose page table is 16 blocks wide (every
# row dense, no index branch), and 300 short requests of 1-37 queries after up to 2000 tokens
# (every row dense: the dense kernel's tile map)
a_dense = msa_sgl.msa_attention(**prob.msa_args())
tiny = hb.make_big_problem([300, 2000], [1000, 2000], dtype=torch.bfloat16, seed=6)
assert tiny.args["page_table"].shape[1] <= tiny.config.topk
short_q = [1 + (i * 7) % 37 for i in range(300)]
short = hb.make_big_problem(short_q, [q + (i * 131) % 2000 for i, q in enumerate(short_q)], dtype=torch.bfloat16,
                            seed=8)
assert short.args["page_table"].shape[1] <= short.config.topk
a_dense = torch.cat([a_dense, msa_sgl.msa_attention(**tiny.msa_args()), msa_sgl.msa_attention(**short.msa_args())])


def keys_8bit(k):
    """The 8-bit copy of index keys k [pages, B, d_idx] (quantize-on-store kernel): (e4m3, scales)."""
    k8 = torch.empty(k.shape, dtype=torch.float8_e4m3fn, device="cuda")
    sc = torch.empty(k.shape[:2], dtype=torch.float32, device="cuda")
    msa_sgl.quantize_index_keys(k.view(-1, k.shape[2]), torch.arange(k.shape[0] * k.shape[1], device="cuda"), k8, sc)
    return k8, sc


k8, sc = keys_8bit(one.args["k_idx_cache"])
w = msa_sgl.MSADecodeWrapper(one.config, num_q_heads=64, num_kv_heads=4, head_dim=128, index_dim=128, max_batch=6,
                             max_pages=one.args["page_table"].shape[1] + 2, max_q_len=2, device="cuda",
                             index_fp8=True)
oa = one.args
w.plan(oa["page_table"], oa["cu_seqlens_q"], oa["seq_lens_k"], total_q=4)
d = w.run(oa["q"], oa["k_cache"], oa["v_cache"], oa["q_idx"], k8, k_idx_scale=sc).clone()
# steps small enough that the split form's slot kernel merges the index lists itself (fused
# select): one request with bf16 keys, two with 8-bit keys
sub = dict(page_table=oa["page_table"][:2], cu_seqlens_q=oa["cu_seqlens_q"][:3], seq_lens_k=oa["seq_lens_k"][:2])
w.plan(sub["page_table"], sub["cu_seqlens_q"], sub["seq_lens_k"], total_q=2)
assert w.step_plan.fused_select, w.step_plan  # the slot kernel merged the index lists
e = w.run(oa["q"][:2], oa["k_cache"], oa["v_cache"], oa["q_idx"][:2], k8, k_idx_scale=sc).clone()
w16 = msa_sgl.MSADecodeWrapper(one.config, num_q_heads=64, num_kv_heads=4, head_dim=128, index_dim=128, max_batch=1,
                               max_pages=one.args["page_table"].shape[1], max_q_len=1, device="cuda")
w16.plan(oa["page_table"][2:3], oa["cu_seqlens_q"][:2], oa["seq_lens_k"][2:3])  # the 70000-token request
assert w16.step_plan.fused_select, w16.step_plan
f = w16.run(oa["q"][2:3], oa["k_cache"], oa["v_cache"], oa["q_idx"][2:3], oa["k_idx_cache"]).clone()
# 8-bit keys: the other score form (queries x keys) and the bf16-query variant (FP8_QUERY False),
# batch 4 (finalize kernel) and batch 2 (fused select)
from msa_sgl.ops import index_branch as ib  # noqa: E402

extra = []
for knobs in (dict(FP8_QUERY=False), dict(_KEYS_M_MAX_ROWS_FP8=0), dict(_KEYS_M_MAX_ROWS_FP8=0, FP8_QUERY=False)):
    saved = {n: getattr(ib, n) for n in knobs}
    try:
        for n, v in knobs.items():
            setattr(ib, n, v)
        for pt, cu, sl, n_q in ((oa["page_table"], oa["cu_seqlens_q"], oa["seq_lens_k"], 4),
                                (sub["page_table"], sub["cu_seqlens_q"], sub["seq_lens_k"], 2)):
            w.plan(pt, cu, sl, total_q=n_q)
            extra.append(w.run(oa["q"][:n_q], oa["k_cache"], oa["v_cache"], oa["q_idx"][:n_q], k8,
                               k_idx_scale=sc).clone())
    finally:
        for n, v in saved.items():
            setattr(ib, n, v)
# 8-bit keys at 140K tokens with a page table over 1024 blocks wide: 256 lists a row, more than one
# merge chunk, so the slot kernel takes the lists' heads first (index_branch._HEADS_MERGE)
big = hb.make_big_problem([1], [140000], dtype=torch.bfloat16, seed=5)
ba = big.args
kb8, scb = keys_8bit(ba["k_idx_cache"])
wb = msa_sgl.MSADecodeWrapper(big.config, num_q_heads=64, num_kv_heads=4, head_dim=128, index_dim=128, max_batch=1,
                              max_pages=ba["page_table"].shape[1], max_q_len=1, device="cuda", index_fp8=True)
wb.plan(ba["page_table"], ba["cu_seqlens_q"], ba["seq_lens_k"], total_q=1)
assert wb.step_plan.fused_select and wb.step_plan.index.heads_merge(), wb.step_plan
extra.append(wb.run(ba["q"], ba["k_cache"], ba["v_cache"], ba["q_idx"], kb8, k_idx_scale=scb).clone())
d = torch.cat([d, e, f] + extra)
torch.cuda.synchronize()
print("sanitize case done:", bool(torch.isfinite(a).all() and torch.isfinite(b).all() and torch.isfinite(c).all()
                                  and torch.isfinite(d).all() and torch.isfinite(a_sub).all()
                                  and torch.isfinite(a_tri).all() and torch.isfinite(a_dense).all()),
      "Gluon / Triton partials rel diff", float((a.float() - a_tri.float()).norm() / a_tri.float().norm()),
      "forms rel diff", float((a.float() - b.float()).norm() / b.float().norm()),
      "sub-blocks rel diff", float((a_sub.float() - a.float()).norm() / a.float().norm()),
      "group passes / row ranges bitwise", [bool(torch.equal(x, a)) for x in a_pass])
