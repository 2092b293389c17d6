"""Benchmark helpers: large random paged problems built on the device, useful-FLOP and byte
counts, and CUDA-event timing.

FLOPs are useful work only (the foundation issue): indexer ``2 * Hkv * d_idx`` per visible key
per query; main branch ``4 * Hq * D`` per attended key per query (``4 * G * D`` per key per
(query, group)). Bytes for decode are the compulsory ones: every index key of the request, the
K and V of every attended (token, group), q and the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Sequence

import torch

from msa_sgl import MSAConfig

M3 = dict(num_q_heads=64, num_kv_heads=4, head_dim=128, index_dim=128, block_size=128, topk=16)


@dataclass
class BigProblem:
    args: Dict[str, torch.Tensor]
    config: MSAConfig
    q_lens: List[int]
    seq_lens: List[int]

    def index_args(self):
        a = self.args
        return dict(q_idx=a["q_idx"], k_idx_cache=a["k_idx_cache"], page_table=a["page_table"],
                    cu_seqlens_q=a["cu_seqlens_q"], seq_lens_k=a["seq_lens_k"], config=self.config)

    def attention_args(self, topk_idx):
        a = self.args
        return dict(q=a["q"], k_cache=a["k_cache"], v_cache=a["v_cache"], topk_idx=topk_idx,
                    page_table=a["page_table"], cu_seqlens_q=a["cu_seqlens_q"], seq_lens_k=a["seq_lens_k"],
                    config=self.config)

    def msa_args(self):
        return dict(self.args) | {"config": self.config}

    def prompt_chunk(self, P: int, chunk: int) -> "BigProblem":
        """The ``chunk`` queries after ``P`` tokens of one request's prompt, this problem's cache
        holding the whole prompt (its q: ``chunk`` rows): seq_lens_k P + chunk, the page table cut
        to the chunk's context (the suite's ``prompt`` groups, benchmarks/profile_prompt.py)."""
        a = dict(self.args)
        a["seq_lens_k"] = torch.tensor([P + chunk], dtype=torch.int32, device=a["seq_lens_k"].device)
        a["page_table"] = a["page_table"][:, :-(-(P + chunk) // self.config.block_size)].contiguous()
        return BigProblem(a, self.config, [chunk], [P + chunk])


def make_big_problem(q_lens: Sequence[int], seq_lens: Sequence[int], *, dtype=torch.bfloat16, device="cuda",
                     seed=0, num_q_heads=64, num_kv_heads=4, head_dim=128, index_dim=128, block_size=128, topk=16,
                     num_init_blocks=0, num_local_blocks=1, spare_pages=1) -> BigProblem:
    """Random inputs on ``device`` with a shuffled page pool (no poison: sized for speed)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    B = block_size
    n_blocks = [math.ceil(s / B) for s in seq_lens]
    num_pages = sum(n_blocks) + spare_pages
    max_pages = max(n_blocks)
    physical = torch.randperm(num_pages, generator=gen)
    table = torch.zeros(len(seq_lens), max_pages, dtype=torch.int32)
    off = 0
    for b, nb in enumerate(n_blocks):
        table[b, :nb] = physical[off:off + nb].to(torch.int32)
        off += nb
    torch.manual_seed(seed)
    total_q = sum(q_lens)
    cu = torch.zeros(len(q_lens) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(q_lens), 0)

    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=dtype)

    args = dict(
        q=randn(total_q, num_q_heads, head_dim),
        k_cache=randn(num_pages, B, num_kv_heads, head_dim),
        v_cache=randn(num_pages, B, num_kv_heads, head_dim),
        q_idx=randn(total_q, num_kv_heads, index_dim),
        k_idx_cache=randn(num_pages, B, index_dim),
        page_table=table.to(device),
        cu_seqlens_q=cu.to(device),
        seq_lens_k=torch.tensor(list(seq_lens), dtype=torch.int32, device=device),
    )
    config = MSAConfig(block_size=B, topk=topk, num_init_blocks=num_init_blocks, num_local_blocks=num_local_blocks)
    return BigProblem(args, config, list(q_lens), list(seq_lens))


def visible_keys(q_lens, seq_lens) -> int:
    """Sum over queries of the keys they see (pos + 1)."""
    total = 0
    for q, s in zip(q_lens, seq_lens):
        first = s - q + 1
        total += (first + s) * q // 2
    return total


def attended_keys(topk_idx: torch.Tensor, cu_seqlens_q, seq_lens_k, block_size: int) -> int:
    """Sum over (query, group) of the visible keys in the selected blocks (device computation)."""
    from msa_sgl.ops.metadata import token_requests

    total_q = topk_idx.shape[0]
    req = token_requests(cu_seqlens_q, total_q).long()
    q_len = (cu_seqlens_q[1:] - cu_seqlens_q[:-1]).long()
    pos = seq_lens_k.long()[req] - q_len[req] + (torch.arange(total_q, device=topk_idx.device) - cu_seqlens_q.long()[req])
    s = topk_idx.long()
    cnt = (pos[:, None, None] + 1 - s * block_size).clamp(0, block_size)
    return int(torch.where(s >= 0, cnt, 0).sum())


def index_flops(q_lens, seq_lens, num_kv_heads, index_dim) -> float:
    return 2.0 * num_kv_heads * index_dim * visible_keys(q_lens, seq_lens)


def main_flops(attended: int, group_size: int, head_dim: int) -> float:
    return 4.0 * group_size * head_dim * attended


def decode_bytes(batch, ctx, q_len=1, *, fp8_keys=False, num_q_heads=64, num_kv_heads=4, head_dim=128,
                 index_dim=128, block_size=128, topk=16):
    """Compulsory bytes of a decode step of ``batch`` requests of ``ctx`` tokens (defaults: M3
    shapes), as (index keys, K and V of the selected blocks, q + out + q_idx): every index key
    (bf16, or with ``fp8_keys`` one byte a dim plus a 4-byte scale a token), the K and V of topk
    blocks a (query, group), bf16 q, out and q_idx."""
    index = batch * ctx * (index_dim + 4 if fp8_keys else index_dim * 2)
    kv = batch * q_len * num_kv_heads * topk * block_size * head_dim * 2 * 2
    io = batch * q_len * (num_q_heads * head_dim * 2 * 2 + num_kv_heads * index_dim * 2)
    return index, kv, io


def planned_decode_wrapper(prob: BigProblem, q_len=1, *, pdl=None, max_pages=None, index_fp8=False):
    """An msa_sgl.MSADecodeWrapper for the problem's shapes, dtype and device, planned for it;
    ``max_pages``: a wider page table (SGLang sizes it for the longest context the server
    takes), the problem's own otherwise."""
    import msa_sgl

    a = prob.args
    total_q, hq, d = a["q"].shape
    table = a["page_table"]
    width = max(max_pages or 0, table.shape[1])
    w = msa_sgl.MSADecodeWrapper(prob.config, num_q_heads=hq, num_kv_heads=a["k_cache"].shape[2], head_dim=d,
                                 index_dim=a["q_idx"].shape[2], max_batch=len(prob.q_lens), max_pages=width,
                                 max_q_len=q_len, dtype=a["q"].dtype, device=a["q"].device, pdl=pdl,
                                 index_fp8=index_fp8)
    if width > table.shape[1]:
        table = torch.nn.functional.pad(table, (0, width - table.shape[1]))
    w.plan(table, a["cu_seqlens_q"], a["seq_lens_k"], total_q=total_q)
    return w


def quantized_index_keys(prob: BigProblem):
    """(k8, scale): an 8-bit copy of the problem's index-key cache, every slot, made by
    msa_sgl.quantize_index_keys (the store kernel): float8_e4m3fn ``[pages, B, d_idx]`` and
    float32 ``[pages, B]``."""
    import msa_sgl

    k = prob.args["k_idx_cache"]
    pages, bs, d = k.shape
    k8 = torch.empty(pages, bs, d, dtype=torch.float8_e4m3fn, device=k.device)
    scale = torch.empty(pages, bs, dtype=torch.float32, device=k.device)
    msa_sgl.quantize_index_keys(k.view(-1, d), torch.arange(pages * bs, device=k.device), k8, scale)
    return k8, scale


def bench_ms(fn, warmup=25, rep=200) -> float:
    import triton

    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def bench_graph_ms(fn, rep=100) -> float:
    import triton

    return float(triton.testing.do_bench_cudagraph(fn, rep=rep, return_mode="median"))


def load_old_main_branch(path):
    """An older msa_sgl/ops/main_branch.py (e.g. ``git show REV:msa_sgl/ops/main_branch.py``)
    loaded as a module of this tree's msa_sgl.ops (its relative imports resolve here), for A/B
    runs of two kernel versions in one process."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("msa_sgl.ops._ab_old_main_branch", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod
