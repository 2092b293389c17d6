"""The main job: MSA on a synthetic long-context problem, side by side with dense attention.

    python -m msa_sgl.demo [--tokens 4096] [--seed 0]

One request prefills ``--tokens`` tokens in one call. The data has the structure sparse
attention relies on: every 64-token block has a topic, keys are their block's topic plus
noise, and each query looks for the topics of a few earlier blocks (a "retrieval" pattern),
with index queries/keys taken as the group means of the main ones. The job prints how many
blocks each query kept, how much of dense attention's probability mass those blocks hold, the
error of MSA's output against dense attention (and against a random selection, as a control),
the cost model of MSA.md section 5, and wall times.

Until the Triton kernels land, msa_sgl computes with its float64 reference on the CPU, so the
times are the reference's and say nothing about kernel speed; the job says so in its output.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import msa_sgl
from msa_sgl import MSAConfig, reference


def build_problem(tokens: int, seed: int, num_kv_heads=2, group=4, head_dim=64, block_size=64, dtype=torch.float32):
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
    shares = []
    for t in rows.tolist():
        logits = torch.einsum("hd,jhd->hj", q[t].double(), k[: t + 1].double().repeat_interleave(group, 1))
        probs = torch.softmax(logits / math.sqrt(q.shape[-1]), dim=-1)  # [Hq, t+1]
        sel = topk_idx[t].repeat_interleave(group, 0)  # [Hq, topk]
        blocks = torch.arange(t + 1) // block_size
        keep = (blocks[None, :, None] == sel[:, None, :]).any(-1)  # [Hq, t+1]
        shares.append((probs * keep).sum(-1))
    return torch.cat(shares)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--topk", type=int, default=8)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    Hkv, G, D = 2, 4, 64
    config = MSAConfig(block_size=a.block_size, topk=a.topk, num_init_blocks=0, num_local_blocks=1)
    args, (q, k, v) = build_problem(a.tokens, a.seed, Hkv, G, D, a.block_size)
    N, Hq, B = a.tokens, Hkv * G, a.block_size
    n_blocks = (N + B - 1) // B
    print(
        f"MSA demo: one request, whole {N}-token prompt in one call; Hq={Hq} Hkv={Hkv} D={D} d_idx={D} "
        f"B={B} topk={a.topk} (n_init 0, n_local 1), float32 inputs, {n_blocks} blocks"
    )
    print("backend: msa_sgl public API = float64 reference on the CPU (the Triton kernels have not landed yet)")

    t0 = time.perf_counter()
    topk_idx = msa_sgl.index_topk(args["q_idx"], args["k_idx_cache"], args["page_table"], args["cu_seqlens_q"],
                                  args["seq_lens_k"], config)
    out = msa_sgl.sparse_attention(args["q"], args["k_cache"], args["v_cache"], topk_idx, args["page_table"],
                                   args["cu_seqlens_q"], args["seq_lens_k"], config)
    t_msa = time.perf_counter() - t0
    t0 = time.perf_counter()
    dense = reference.dense_attention(args["q"], args["k_cache"], args["v_cache"], args["page_table"],
                                      args["cu_seqlens_q"], args["seq_lens_k"])
    t_dense = time.perf_counter() - t0

    kept = (topk_idx >= 0).sum(-1).double()  # [N, Hkv]
    visible = (torch.arange(N) // B + 1).double()
    print(
        f"blocks kept per (query, group): min {int(kept.min())}, mean {kept.mean():.2f}, max {int(kept.max())} "
        f"(visible blocks per query: mean {visible.mean():.1f}, max {int(visible.max())}); "
        f"share of visible keys attended: {(kept.mean(1) * B).clamp(max=torch.arange(1, N + 1)).sum() / torch.arange(1, N + 1).sum():.3f}"
    )
    rows = torch.linspace(N // 2, N - 1, 64).long()
    mass = dense_mass_in_selection(q, k, topk_idx, B, G, rows)
    print(f"dense attention mass inside the kept blocks (64 queries of the second half): "
          f"mean {mass.mean():.3f}, min {mass.min():.3f}")

    err = (out.double() - dense).norm() / dense.norm()
    gen = torch.Generator().manual_seed(a.seed + 1)
    rand_idx = topk_idx.clone()
    for t in range(N):  # control: same counts, local block kept, other blocks random
        p = t // B
        if p + 1 > a.topk:
            for g in range(Hkv):
                others = torch.randperm(p, generator=gen)[: a.topk - 1].sort().values
                rand_idx[t, g, :-1] = others.to(torch.int32)
    rand_out = reference.sparse_attention(args["q"], args["k_cache"], args["v_cache"], rand_idx, args["page_table"],
                                          args["cu_seqlens_q"], args["seq_lens_k"], config)
    rand_err = (rand_out - dense).norm() / dense.norm()
    print(f"MSA output vs dense attention: relative L2 error {err:.3e} "
          f"(random selection of the same size: {rand_err:.3e})")

    f_dense = 2 * Hq * D * N * N  # causal prefill, MSA.md section 5
    f_index = Hkv * D * N * N
    f_main = 4 * Hq * D * N * a.topk * B
    print(f"cost model: dense {f_dense / 1e9:.2f} GFLOP; MSA index {f_index / 1e9:.2f} + main "
          f"{f_main / 1e9:.2f} = {(f_index + f_main) / 1e9:.2f} GFLOP ({f_dense / (f_index + f_main):.2f}x fewer)")
    print(f"time: msa_sgl {t_msa:.2f} s, dense {t_dense:.2f} s (both the float64 reference on the CPU: "
          "not a measure of kernel speed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
