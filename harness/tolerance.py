"""Comparisons against the float64 reference: per-dtype error bounds and a tie-aware top-k check.

Output bounds (relative L2 error ``||out - ref|| / ||ref||`` and max-abs error over
``max(1, max |ref|)``) reflect what one rounding of the inputs' dtype plus fp32 accumulation
costs: a 16-bit kernel rounds P to 16 bits for the PV product and the output to 16 bits.
NaN or Inf where the reference is finite never passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from msa_sgl import MSAConfig
from msa_sgl.reference import query_positions


@dataclass(frozen=True)
class Bound:
    rel_l2: float
    max_abs: float  # relative to max(1, max |ref|)
    lse_abs: float  # absolute error of the natural-log LSE


BOUNDS = {
    torch.float64: Bound(rel_l2=1e-12, max_abs=1e-11, lse_abs=1e-11),
    torch.float32: Bound(rel_l2=2e-5, max_abs=1e-4, lse_abs=1e-4),
    torch.float16: Bound(rel_l2=2e-3, max_abs=1e-2, lse_abs=2e-3),
    torch.bfloat16: Bound(rel_l2=1.6e-2, max_abs=6e-2, lse_abs=1.6e-2),
}

# machine epsilon of each input dtype: the "rounding" a tie may differ by
EPS = {
    torch.float64: 2.0**-52,
    torch.float32: 2.0**-23,
    torch.float16: 2.0**-10,
    torch.bfloat16: 2.0**-7,
    # 8-bit index keys: the e4m3 products are exact and the reference scores the same e4m3 values,
    # so only the sums differ; Hopper's fp8 tensor cores keep ~14 bits while accumulating (DeepSeek-V3
    # report, section 3.3.2), over d_idx / 32 = 4 MMA steps of K = 32 at d_idx 128: 2^-12 of the
    # |q| |k| bound on the sum covers them.
    torch.float8_e4m3fn: 2.0**-12,
}


@dataclass
class ErrorReport:
    rel_l2: float
    max_abs: float
    bound: Bound

    def __str__(self) -> str:
        return f"rel_l2={self.rel_l2:.3e} (<= {self.bound.rel_l2:.1e}) max_abs={self.max_abs:.3e} (<= {self.bound.max_abs:.1e})"


def output_error(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, what: str = "out") -> ErrorReport:
    """Asserts ``out`` matches the float64 ``ref`` within the bounds of ``dtype``; returns the errors."""
    bound = BOUNDS[dtype]
    assert out.shape == ref.shape, f"{what}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    got = out.detach().cpu().to(torch.float64)
    ref = ref.detach().cpu().to(torch.float64)
    assert torch.isfinite(ref).all(), f"{what}: the reference itself is not finite"
    bad = ~torch.isfinite(got)
    assert not bad.any(), f"{what}: {int(bad.sum())} non-finite values (first at {tuple(bad.nonzero()[0].tolist())})"
    if ref.numel() == 0:
        return ErrorReport(0.0, 0.0, bound)
    diff = got - ref
    ref_norm = float(ref.norm())
    rel_l2 = float(diff.norm()) / ref_norm if ref_norm > 0 else float(diff.norm())
    scale = max(1.0, float(ref.abs().max()))
    max_abs = float(diff.abs().max()) / scale
    report = ErrorReport(rel_l2, max_abs, bound)
    assert rel_l2 <= bound.rel_l2 and max_abs <= bound.max_abs, f"{what} vs float64 reference ({dtype}): {report}"
    return report


def lse_error(lse: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> float:
    """Asserts the LSE matches: ``-inf`` exactly where the reference is ``-inf`` (rows that
    attend nothing), within ``lse_abs`` elsewhere; NaN never passes. Returns the max error."""
    bound = BOUNDS[dtype]
    assert lse.shape == ref.shape, f"lse: shape {tuple(lse.shape)} != reference {tuple(ref.shape)}"
    assert lse.dtype == torch.float32 or dtype == torch.float64, f"lse: expected float32, got {lse.dtype}"
    got = lse.detach().cpu().to(torch.float64)
    ref = ref.detach().cpu().to(torch.float64)
    assert not torch.isnan(got).any(), "lse: NaN"
    empty = torch.isneginf(ref)
    assert torch.equal(torch.isneginf(got), empty), "lse: -inf rows differ from the reference"
    if (~empty).sum() == 0:
        return 0.0
    err = float((got[~empty] - ref[~empty]).abs().max())
    assert err <= bound.lse_abs, f"lse vs float64 reference ({dtype}): max abs error {err:.3e} > {bound.lse_abs:.1e}"
    return err


def check_selection_contract(topk_idx: torch.Tensor, cu_seqlens_q, seq_lens_k, config: MSAConfig) -> None:
    """The structure every selection must have (MSA.md section 3), whatever the scores:
    ascending and unique valid ids, ``-1`` tail, ``min(topk, p + 1)`` valid entries, nothing past
    the query's own block ``p``, forced init and local blocks present (so the local block last)."""
    sel = topk_idx.detach().cpu().to(torch.int64)
    total_q, num_groups, k = sel.shape
    assert k == config.topk, f"topk_idx: {k} slots, config.topk = {config.topk}"
    _, pos = query_positions(cu_seqlens_q, seq_lens_k)
    assert pos.numel() == total_q
    p = pos // config.block_size  # [total_q]
    valid_count = torch.clamp(p + 1, max=k)  # [total_q]
    slot = torch.arange(k)
    want_valid = slot[None, :] < valid_count[:, None]  # [total_q, k]
    for g in range(num_groups):
        rows = sel[:, g]  # [total_q, k]
        valid = rows >= 0
        bad = (valid != want_valid).any(dim=1)
        if bad.any():
            t = int(bad.nonzero()[0])
            raise AssertionError(
                f"topk_idx[{t}, {g}] = {rows[t].tolist()}: expected {int(valid_count[t])} valid ids then -1 (p = {int(p[t])})"
            )
        assert (rows[~valid] == -1).all(), f"group {g}: padding must be -1"
        assert (rows <= p[:, None]).all(), f"group {g}: a block past the query's own block was selected"
        steps = rows[:, 1:] - rows[:, :-1]
        both = valid[:, 1:]
        assert (steps[both] > 0).all(), f"group {g}: valid ids must be strictly ascending"
        last = rows.gather(1, (valid_count - 1)[:, None])[:, 0]
        assert torch.equal(last, p), f"group {g}: the local block p must be the last valid entry"
        for t in range(total_q):
            row = set(rows[t][valid[t]].tolist())
            pt = int(p[t])
            forced = set(range(min(config.num_init_blocks, pt + 1))) | set(
                range(max(0, pt - config.num_local_blocks + 1), pt + 1)
            )
            missing = forced - row
            assert not missing, f"topk_idx[{t}, {g}] = {sorted(row)}: forced blocks {sorted(missing)} missing"


@dataclass
class TopkReport:
    rows: int  # (query, group) rows compared
    differing_rows: int  # rows whose set differs from the reference's, all by genuine ties
    tie_substitutions: int  # blocks swapped for an equally scored one


def compare_topk(
    topk_idx: torch.Tensor,
    ref_topk: torch.Tensor,
    ref_scores: torch.Tensor,
    q_idx: torch.Tensor,
    k_idx_cache: torch.Tensor,
    config: MSAConfig,
    input_dtype: Optional[torch.dtype] = None,
) -> TopkReport:
    """Asserts ``topk_idx`` equals the reference selection up to genuine ties.

    A row may differ from ``ref_topk`` only in non-forced blocks, and every block in which it
    differs (chosen but not by the reference, or the reverse) must have a reference score equal
    to the reference's k-th best (the lowest score it chose freely) within the input dtype's
    rounding of the logit: ``eps(dtype) * scale * ||q_idx|| * max ||k_idx||``.
    """
    got = topk_idx.detach().cpu().to(torch.int64)
    ref = ref_topk.detach().cpu().to(torch.int64)
    assert got.shape == ref.shape, f"topk_idx: shape {tuple(got.shape)} != reference {tuple(ref.shape)}"
    dtype = input_dtype or q_idx.dtype
    scale = config.resolved_index_scale(q_idx.shape[-1])
    q_norm = q_idx.detach().cpu().to(torch.float64).norm(dim=-1)  # [total_q, Hkv]
    k64 = k_idx_cache.detach().cpu().to(torch.float64)
    k_norm = float(torch.nan_to_num(k64.norm(dim=-1), nan=0.0, posinf=0.0).max()) if k64.numel() else 0.0
    differing = subs = 0
    total_q, num_groups, _ = got.shape
    for t in range(total_q):
        for g in range(num_groups):
            a, b = got[t, g], ref[t, g]
            if torch.equal(a, b):
                continue
            set_a, set_b = set(a[a >= 0].tolist()), set(b[b >= 0].tolist())
            assert len(set_a) == len(set_b), f"topk_idx[{t}, {g}]: {sorted(set_a)} vs reference {sorted(set_b)}"
            scores = ref_scores[t, g]
            p = max(set_b)
            forced = set(range(config.num_init_blocks)) | set(range(p - config.num_local_blocks + 1, p + 1))
            free = set_b - forced
            assert free, f"topk_idx[{t}, {g}]: {sorted(set_a)} vs reference {sorted(set_b)} (no free slot to tie)"
            kth = min(float(scores[i]) for i in free)
            tol = EPS[dtype] * scale * float(q_norm[t, g]) * k_norm
            for blk in set_a ^ set_b:
                s = float(scores[blk])
                assert blk not in forced and abs(s - kth) <= tol, (
                    f"topk_idx[{t}, {g}] = {sorted(set_a)} vs reference {sorted(set_b)}: block {blk} "
                    f"scores {s!r}, the k-th best is {kth!r} (tie tolerance {tol:.2e})"
                )
            differing += 1
            subs += len(set_a - set_b)
    return TopkReport(rows=total_q * num_groups, differing_rows=differing, tie_substitutions=subs)
