"""MSA problems: per-request logical data, materialised into paged, poisoned call arguments.

A :class:`Problem` keeps each request's tensors in logical order (keys ``[seq_len_k, ...]``,
queries for the last ``q_len`` positions) and builds the call arguments on demand: a shuffled
physical page pool, a page table, and poison everywhere a request must not read (pages it
does not own, the tail of its last page, page-table columns past its pages). Transformations
(chunking, decode tails, sub-batches, page permutations, other poison) act on the logical
data and re-materialise, so the properties in tests/property compare like with like.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch

from msa_sgl import MSAConfig

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# What unowned memory holds. "nan" makes any stray read show as NaN; the big values (finite in
# float16) show as a huge error or a wrong selection instead.
POISONS = {"nan": float("nan"), "big": 3.0e4, "neg_big": -3.0e4}


@dataclass(frozen=True)
class ProblemSpec:
    """Everything that determines a problem; Hypothesis draws these fields and shrinks them."""

    q_lens: Tuple[int, ...]
    seq_lens: Tuple[int, ...]
    block_size: int = 64
    topk: int = 4
    num_init_blocks: int = 0
    num_local_blocks: int = 1
    num_kv_heads: int = 2
    group_size: int = 2
    head_dim: int = 32
    index_dim: int = 32
    dtype: str = "float32"
    index_dtype: Optional[str] = None  # None: same as dtype
    ties: bool = False  # small-integer index data, so block scores tie often
    seed: int = 0
    layout_seed: int = 1
    extra_pages: int = 2  # poisoned pages nobody owns
    extra_cols: int = 1  # page-table columns past the longest request
    poison: str = "nan"
    index_scale: Optional[float] = None
    softmax_scale: Optional[float] = None

    def __post_init__(self):
        if len(self.q_lens) != len(self.seq_lens):
            raise ValueError("q_lens and seq_lens must have one entry per request")
        for q_len, seq_len in zip(self.q_lens, self.seq_lens):
            if not 0 <= q_len <= seq_len:
                raise ValueError(f"need 0 <= q_len <= seq_len, got {q_len}, {seq_len}")

    @property
    def config(self) -> MSAConfig:
        return MSAConfig(
            block_size=self.block_size,
            topk=self.topk,
            num_init_blocks=self.num_init_blocks,
            num_local_blocks=self.num_local_blocks,
            index_scale=self.index_scale,
            softmax_scale=self.softmax_scale,
        )

    @property
    def num_q_heads(self) -> int:
        return self.num_kv_heads * self.group_size


@dataclass
class Request:
    """One request in logical order. Queries sit at positions ``seq_len - q_len .. seq_len - 1``."""

    q: torch.Tensor  # [q_len, Hq, D]
    q_idx: torch.Tensor  # [q_len, Hkv, d_idx]
    k: torch.Tensor  # [seq_len, Hkv, D]
    v: torch.Tensor  # [seq_len, Hkv, D]
    k_idx: torch.Tensor  # [seq_len, d_idx]

    @property
    def q_len(self) -> int:
        return self.q.shape[0]

    @property
    def seq_len(self) -> int:
        return self.k.shape[0]

    def rows(self, start: int, end: int) -> "Request":
        """The request as it stands when its query rows ``start:end`` are computed: only keys
        up to the last of those queries are in the cache (a prefill chunk, or a decode step)."""
        keep = self.seq_len - self.q_len + end
        return Request(self.q[start:end], self.q_idx[start:end], self.k[:keep], self.v[:keep], self.k_idx[:keep])


def _random_requests(spec: ProblemSpec) -> List[Request]:
    gen = torch.Generator().manual_seed(spec.seed)
    dtype = DTYPES[spec.dtype]
    idx_dtype = DTYPES[spec.index_dtype or spec.dtype]
    Hq, Hkv, D, d_idx = spec.num_q_heads, spec.num_kv_heads, spec.head_dim, spec.index_dim

    def normal(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float32)

    def index_data(*shape):
        if spec.ties:  # integers in -2..2: exact in every dtype, many equal block maxima
            return torch.randint(-2, 3, shape, generator=gen).to(torch.float32)
        return normal(*shape)

    requests = []
    for q_len, seq_len in zip(spec.q_lens, spec.seq_lens):
        requests.append(
            Request(
                q=normal(q_len, Hq, D).to(dtype),
                q_idx=index_data(q_len, Hkv, d_idx).to(idx_dtype),
                k=normal(seq_len, Hkv, D).to(dtype),
                v=normal(seq_len, Hkv, D).to(dtype),
                k_idx=index_data(seq_len, d_idx).to(idx_dtype),
            )
        )
    return requests


@dataclass
class Problem:
    """A batch of requests plus how to lay them out in memory."""

    spec: ProblemSpec
    requests: List[Request]
    layout_seed: int
    poison: str
    extra_pages: int
    extra_cols: int
    _args: Optional[dict] = field(default=None, repr=False)

    @classmethod
    def from_spec(cls, spec: ProblemSpec) -> "Problem":
        return cls(spec, _random_requests(spec), spec.layout_seed, spec.poison, spec.extra_pages, spec.extra_cols)

    # -- derived problems ------------------------------------------------------------------
    def _replace(self, **changes) -> "Problem":
        changes.setdefault("_args", None)
        return dataclasses.replace(self, **changes)

    def with_rows(self, ranges: Sequence[Tuple[int, int]]) -> "Problem":
        """Request b computes only its query rows ``ranges[b]`` (keys after them not yet cached)."""
        return self._replace(requests=[r.rows(s, e) for r, (s, e) in zip(self.requests, ranges)])

    def subset(self, indices: Sequence[int]) -> "Problem":
        return self._replace(requests=[self.requests[i] for i in indices])

    def relaid(self, layout_seed: int) -> "Problem":
        """Same data, another shuffle of the physical pages."""
        return self._replace(layout_seed=layout_seed)

    def repoisoned(self, poison: str) -> "Problem":
        return self._replace(poison=poison)

    # -- properties --------------------------------------------------------------------------
    @property
    def config(self) -> MSAConfig:
        return self.spec.config

    @property
    def q_lens(self) -> List[int]:
        return [r.q_len for r in self.requests]

    @property
    def seq_lens(self) -> List[int]:
        return [r.seq_len for r in self.requests]

    @property
    def row_offsets(self) -> List[int]:
        out = [0]
        for n in self.q_lens:
            out.append(out[-1] + n)
        return out

    # -- call arguments ------------------------------------------------------------------------
    def args(self) -> dict:
        """Keyword arguments for msa_attention (a dict of CPU tensors; built once, cached)."""
        if self._args is None:
            self._args = self._materialize()
        return self._args

    def index_args(self) -> dict:
        a = self.args()
        keys = ("q_idx", "k_idx_cache", "page_table", "cu_seqlens_q", "seq_lens_k")
        return {k: a[k] for k in keys} | {"config": self.config}

    def attention_args(self, topk_idx: torch.Tensor) -> dict:
        a = self.args()
        keys = ("q", "k_cache", "v_cache", "page_table", "cu_seqlens_q", "seq_lens_k")
        return {k: a[k] for k in keys} | {"topk_idx": topk_idx, "config": self.config}

    def msa_args(self) -> dict:
        return dict(self.args()) | {"config": self.config}

    def _materialize(self) -> dict:
        spec, B = self.spec, self.spec.block_size
        n_blocks = [(r.seq_len + B - 1) // B for r in self.requests]
        num_pages = sum(n_blocks) + self.extra_pages
        max_pages = max(n_blocks, default=0) + self.extra_cols
        gen = torch.Generator().manual_seed(self.layout_seed)
        physical = torch.randperm(num_pages, generator=gen)
        poison = POISONS[self.poison]
        dtype = DTYPES[spec.dtype]
        idx_dtype = DTYPES[spec.index_dtype or spec.dtype]
        Hkv, D, d_idx = spec.num_kv_heads, spec.head_dim, spec.index_dim

        k_cache = torch.full((num_pages, B, Hkv, D), poison, dtype=dtype)
        v_cache = torch.full((num_pages, B, Hkv, D), poison, dtype=dtype)
        k_idx_cache = torch.full((num_pages, B, d_idx), poison, dtype=idx_dtype)
        # unused table entries point at pages the request does not own (poisoned or another's)
        page_table = torch.randint(0, max(num_pages, 1), (len(self.requests), max_pages), generator=gen)
        page_table = page_table.to(torch.int32)
        cursor = 0
        for b, (req, nb) in enumerate(zip(self.requests, n_blocks)):
            pages = physical[cursor : cursor + nb]
            cursor += nb
            page_table[b, :nb] = pages.to(torch.int32)
            for i, page in enumerate(pages.tolist()):
                lo, hi = i * B, min((i + 1) * B, req.seq_len)
                k_cache[page, : hi - lo] = req.k[lo:hi]
                v_cache[page, : hi - lo] = req.v[lo:hi]
                k_idx_cache[page, : hi - lo] = req.k_idx[lo:hi]

        def cat(name, shape_tail, dt):
            parts = [getattr(r, name) for r in self.requests]
            return torch.cat(parts) if parts else torch.empty(0, *shape_tail, dtype=dt)

        return {
            "q": cat("q", (spec.num_q_heads, D), dtype),
            "k_cache": k_cache,
            "v_cache": v_cache,
            "q_idx": cat("q_idx", (Hkv, d_idx), idx_dtype),
            "k_idx_cache": k_idx_cache,
            "page_table": page_table,
            "cu_seqlens_q": torch.tensor(self.row_offsets, dtype=torch.int32),
            "seq_lens_k": torch.tensor(self.seq_lens, dtype=torch.int32),
        }

    def describe(self) -> str:
        s = self.spec
        return (
            f"B={s.block_size} k={s.topk} init={s.num_init_blocks} local={s.num_local_blocks} "
            f"Hkv={s.num_kv_heads} G={s.group_size} D={s.head_dim} d_idx={s.index_dim} {s.dtype} "
            f"q_lens={self.q_lens} seq_lens={self.seq_lens} ties={s.ties} poison={self.poison}"
        )
