"""The main job: MSA on a synthetic long-context problem, side by side with dense attention.

    python -m msa_sgl.demo [--tokens N] [--seed 0]

One request prefills N tokens in one call through msa_sgl's kernels: on a GPU at MiniMax-M3
shapes in bf16 (default N = 32768), on a CPU through Triton's interpreter at a small float32
size (default N = 2048). The data has the structure sparse attention relies on: every block
has a topic, keys are their block's topic plus noise, and each query looks for the topics of a
few earlier blocks (a "retrieval" pattern), with index queries/keys taken as the group means
of the main ones. The job prints how many blocks each query kept, how much of dense
attention's probability mass those blocks hold, the error of MSA's output against dense
attention (torch SDPA; and of a random selection of the same size, as a control), the cost
model of MSA.md section 5, and times.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

import msa_sgl
from msa_sgl import MSAConfig


def build_problem(tokens: int, seed: int, num_kv_heads=2, group=4, head_dim=64, block_size=64, dtype=torch.float32):
    """CPU tensors: the call's arguments (paged, shuffled pages) and the logical q, k, v."""
    gen = torch.Generator().manual_seed(seed)
    n_blocks = (tokens + block_size - 1) // block_size
    Hq, D = num_kv_heads * group, head_dim
    topics = torch.randn(n_blocks, D, generator=gen)
    block_of = torch.arange(tokens) // block_size
    k = 1.5 * topics[block_of][:, None, :] + 0.7 * torch.randn(tokens, num_kv_heads, D, generator=gen)
    v = torch.randn(tokens, num_kv_heads, D, generator=gen)
    # each query looks for two random earlier blocks and its own block
    p = block_of
    targets = (torch.rand(tokens, 2, generator=gen) * p[:, None].clamp(min=1)).long()
    want = topics[targets].sum(1) + 0.5 * topics[p]  # [tokens, D]
    q = 1.2 * want[:, None, :] + 0.7 * torch.randn(tokens, Hq, D, generator=gen)
    q_idx = q.view(tokens, num_kv_heads, group, D).mean(2)  # group mean: one index head per group
    k_idx = k.mean(1)  # one index-key head shared by the groups
    pages = torch.randperm(n_blocks, generator=gen)  # a shuffled physical layout

    def paged(x):
        out = torch.zeros(n_blocks * block_size, *x.shape[1:])
        out[:tokens] = x
        out = out.view(n_blocks, block_size, *x.shape[1:])
        shuffled = torch.empty_like(out)
        shuffled[pages] = out
        return shuffled.to(dtype).contiguous()

    args = dict(
        q=q.to(dtype),
        k_cache=paged(k),
        v_cache=paged(v),
        q_idx=q_idx.to(dtype),
        k_idx_cache=paged(k_idx),
        page_table=pages.to(torch.int32)[None],
        cu_seqlens_q=torch.tensor([0, tokens], dtype=torch.int32),
        seq_lens_k=torch.tensor([tokens], dtype=torch.int32),
    )
    return args, (q.to(dtype), k.to(dtype), v.to(dtype))


def dense_mass_in_selection(q, k, topk_idx, block_size, group, rows):
    """Share of dense attention's probability held by the selected blocks, for sampled rows."""
    Hkv = k.shape[1]
    shares = []
    for t in rows.tolist():
        qt = q[t].double().view(Hkv, group, -1)  # [Hkv, G, D]
        logits = torch.einsum("gqd,jgd->gqj", qt, k[: t + 1].double()) / math.sqrt(q.shape[-1])
        probs = torch.softmax(logits, dim=-1)  # [Hkv, G, t+1]
        blocks = torch.arange(t + 1) // block_size
        keep = (blocks[None, :, None] == topk_idx[t][:, None, :].long()).any(-1)  # [Hkv, t+1]
        shares.append((probs * keep[:, None, :]).sum(-1).flatten())
    return torch.cat(shares)


def _dense_sdpa(q, k, v):
    """Dense causal GQA through torch SDPA (cuDNN/flash on a GPU), [N, H, D] layouts."""
    import torch.nn.functional as F

    out = F.scaled_dot_product_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
                                         is_causal=True, enable_gqa=True)
    return out[0].transpose(0, 1)


def _timed(fn, device):
    if device.type == "cuda":
        fn()  # warm-up (compilation)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize()
        return out, start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=None, help="default 32768 on a GPU, 2048 on the CPU")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    gpu = torch.cuda.is_available()
    if not gpu:  # the kernels run in Triton's interpreter; chosen before their first import
        os.environ.setdefault("TRITON_INTERPRET", "1")
    device = torch.device("cuda" if gpu else "cpu")
    # a GPU runs MiniMax-M3's shapes in bf16; the CPU a small float32 problem (the interpreter
    # cannot run bf16 products)
    if gpu:
        Hkv, G, D, B, topk, dtype, N = 4, 16, 128, 128, 16, torch.bfloat16, a.tokens or 32768
    else:
        Hkv, G, D, B, topk, dtype, N = 2, 4, 64, 64, 8, torch.float32, a.tokens or 2048
    config = MSAConfig(block_size=B, topk=topk, num_init_blocks=0, num_local_blocks=1)
    args, (q, k, v) = build_problem(N, a.seed, Hkv, G, D, B, dtype=dtype)
    args = {name: t.to(device) for name, t in args.items()}
    Hq, n_blocks = Hkv * G, (N + B - 1) // B
    where = f"{torch.cuda.get_device_name()} (Triton kernels)" if gpu else "CPU (Triton kernels in the interpreter)"
    print(f"MSA demo on {where}: one request, a whole {N}-token prompt in one call; Hq={Hq} Hkv={Hkv} D={D} "
          f"d_idx={D} B={B} topk={topk} (n_init 0, n_local 1), {str(dtype)[6:]}, {n_blocks} blocks")

    def run_msa():
        topk_idx = msa_sgl.index_topk(args["q_idx"], args["k_idx_cache"], args["page_table"], args["cu_seqlens_q"],
                                      args["seq_lens_k"], config)
        return topk_idx, msa_sgl.sparse_attention(args["q"], args["k_cache"], args["v_cache"], topk_idx,
                                                  args["page_table"], args["cu_seqlens_q"], args["seq_lens_k"], config)

    (topk_idx, out), t_msa = _timed(run_msa, device)
    qd, kd, vd = q.to(device), k.to(device), v.to(device)
    dense, t_dense = _timed(lambda: _dense_sdpa(qd, kd, vd), device)
    topk_idx, out, dense = topk_idx.cpu(), out.cpu().double(), dense.cpu().double()

    kept = (topk_idx >= 0).sum(-1).double()  # [N, Hkv]
    visible = (torch.arange(N) // B + 1).double()
    print(f"blocks kept per (query, group): min {int(kept.min())}, mean {kept.mean():.2f}, max {int(kept.max())} "
          f"of up to {n_blocks} (visible blocks per query: mean {visible.mean():.1f})")
    rows = torch.linspace(N // 2, N - 1, 32).long()
    mass = dense_mass_in_selection(q, k, topk_idx, B, G, rows)
    print(f"dense attention mass inside the kept blocks (32 queries of the second half): "
          f"mean {mass.mean():.3f}, min {mass.min():.3f}")

    gen = torch.Generator().manual_seed(a.seed + 1)
    rand_idx = topk_idx.clone()  # control: same counts, local block kept, the other blocks random
    p = torch.arange(N) // B
    for t in torch.nonzero(p + 1 > topk).flatten().tolist():
        for g in range(Hkv):
            rand_idx[t, g, :-1] = torch.randperm(int(p[t]), generator=gen)[: topk - 1].sort().values.to(torch.int32)
    rand_out = msa_sgl.sparse_attention(args["q"], args["k_cache"], args["v_cache"], rand_idx.to(device),
                                        args["page_table"], args["cu_seqlens_q"], args["seq_lens_k"], config)
    err = float((out - dense).norm() / dense.norm())
    rand_err = float((rand_out.cpu().double() - dense).norm() / dense.norm())
    print(f"MSA output vs dense attention: relative L2 error {err:.3e} "
          f"(a random selection of the same size: {rand_err:.3e})")

    f_dense = 2 * Hq * D * N * N  # causal prefill, MSA.md section 5
    f_index = Hkv * D * N * N
    f_main = 4 * Hq * D * N * topk * B
    print(f"cost model: dense {f_dense / 1e9:.1f} GFLOP; MSA index {f_index / 1e9:.1f} + main "
          f"{f_main / 1e9:.1f} = {(f_index + f_main) / 1e9:.1f} GFLOP ({f_dense / (f_index + f_main):.2f}x fewer)")
    note = "CUDA events, after a warm-up call" if gpu else "wall clock; the interpreter is no measure of kernel speed"
    print(f"time: msa_sgl {t_msa * 1e3:.2f} ms, dense SDPA {t_dense * 1e3:.2f} ms ({note})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
