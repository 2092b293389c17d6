"""Hypothesis strategies that draw valid MSA problems (see harness.problems).

Ranges (the foundation issue): batch 1-4; varlen requests with q_len 0 (prefix only: the
request is in the batch but asks nothing), 1-16 (decode / multi-token decode), the whole
sequence (a prompt) or anything between (a chunk after a cached prefix); single-block and
many-block requests; Hkv {1,2,4}; G {1,2,4,8,16}; D and d_idx {16,32,64,128}; block size
{16,32,64,128}; topk 1..24; num_init_blocks {0,1,2}; num_local_blocks {1,2}; shuffled pages
with poison everywhere a request does not own.

Sizes are kept small enough for the float64 reference on a 2-core CPU: a request has at most
``max_keys`` keys, and its query count is clamped so that ``q_len * seq_len * Hq * dim`` stays
under ``work_budget`` (clamping instead of rejecting keeps Hypothesis from discarding draws).
"""

from __future__ import annotations

from typing import Sequence

from hypothesis import strategies as st

from .problems import POISONS, Problem, ProblemSpec

BLOCK_SIZES = (16, 32, 64, 128)
KV_HEADS = (1, 2, 4)
GROUP_SIZES = (1, 2, 4, 8, 16)
HEAD_DIMS = (16, 32, 64, 128)

# Every problem drawn through problems() counts here; tests/conftest.py reports the total.
DRAW_COUNT = {"problems": 0}


@st.composite
def _request_lengths(draw, block_size: int, max_keys: int, width: int, work_budget: int, decode_only: bool = False):
    max_blocks = max(1, max_keys // block_size)
    n_blocks = draw(st.one_of(st.just(1), st.integers(1, max_blocks), st.just(max_blocks)))
    seq_len = draw(st.integers((n_blocks - 1) * block_size + 1, n_blocks * block_size))
    kind = "decode" if decode_only else draw(st.sampled_from(("prefix_only", "decode", "prompt", "chunk")))
    if kind == "prefix_only":
        q_len = 0
    elif kind == "decode":
        q_len = draw(st.integers(1, min(16, seq_len)))
    elif kind == "prompt":
        q_len = seq_len
    else:
        q_len = draw(st.integers(1, seq_len))
    # clamp so the request's attention work q_len * seq_len * width stays in budget
    return min(q_len, max(1, work_budget // (seq_len * width))), seq_len


@st.composite
def problem_specs(
    draw,
    dtypes: Sequence[str] = ("float32", "float16", "bfloat16"),
    max_batch: int = 4,
    max_keys: int = 512,
    work_budget: int = 1 << 23,
    topk_max: int = 24,
    min_topk: int = 1,
    decode_only: bool = False,
):
    """Problem specs over the ranges of this module; ``decode_only``: every request has 1-16
    query tokens (decode, MTP, speculative verify)."""
    block_size = draw(st.sampled_from(BLOCK_SIZES))
    Hkv = draw(st.sampled_from(KV_HEADS))
    G = draw(st.sampled_from(GROUP_SIZES))
    D = draw(st.sampled_from(HEAD_DIMS))
    d_idx = draw(st.sampled_from(HEAD_DIMS))
    width = Hkv * G * max(D, d_idx)
    batch = draw(st.integers(1, max_batch))
    lengths = []
    for _ in range(batch):
        lengths.append(draw(_request_lengths(block_size, max_keys, width, work_budget, decode_only)))
    n_local = draw(st.sampled_from((1, 2)))
    n_init = draw(st.sampled_from((0, 1, 2)))
    topk = draw(st.integers(max(min_topk, n_init + n_local), max(topk_max, n_init + n_local)))
    return ProblemSpec(
        q_lens=tuple(q for q, _ in lengths),
        seq_lens=tuple(s for _, s in lengths),
        block_size=block_size,
        topk=topk,
        num_init_blocks=n_init,
        num_local_blocks=n_local,
        num_kv_heads=Hkv,
        group_size=G,
        head_dim=D,
        index_dim=d_idx,
        dtype=draw(st.sampled_from(tuple(dtypes))),
        ties=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)),
        layout_seed=draw(st.integers(0, 2**31 - 1)),
        extra_pages=draw(st.integers(0, 3)),
        extra_cols=draw(st.integers(0, 2)),
        poison=draw(st.sampled_from(tuple(POISONS))),
    )


@st.composite
def problems(draw, **kwargs):
    """A :class:`Problem` drawn from :func:`problem_specs` (same keyword arguments)."""
    spec = draw(problem_specs(**kwargs))
    DRAW_COUNT["problems"] += 1
    return Problem.from_spec(spec)
