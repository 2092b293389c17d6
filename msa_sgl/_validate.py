"""Host-side argument checks shared by the public API, the kernels and the reference.

Everything here reads shapes, dtypes, strides and devices only: nothing forces a device
synchronisation, so the checks are safe in the hot path. Checks of device *values* (page ids
inside the table, lengths against the table width, ``cu_seqlens_q`` monotone) live in
:func:`validate_metadata`, which synchronises and is meant for debugging and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .config import MSAConfig

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@dataclass(frozen=True)
class Dims:
    """Sizes of one call, read from the shapes of its arguments."""

    total_q: int
    batch: int
    max_pages: int
    num_pages: int
    block_size: int
    num_kv_heads: int
    num_q_heads: Optional[int] = None
    head_dim: Optional[int] = None
    index_dim: Optional[int] = None

    @property
    def group_size(self) -> int:
        assert self.num_q_heads is not None
        return self.num_q_heads // self.num_kv_heads


def _fmt_dtype(dt: torch.dtype) -> str:
    return str(dt).replace("torch.", "")


def _tensor(name: str, x, rank: int, dtypes: Sequence[torch.dtype]) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != rank:
        raise ValueError(f"{name}: expected a rank-{rank} tensor, got rank {x.dim()} with shape {tuple(x.shape)}")
    if x.dtype not in dtypes:
        want = " or ".join(_fmt_dtype(d) for d in dtypes)
        raise ValueError(f"{name}: expected dtype {want}, got {_fmt_dtype(x.dtype)}")
    return x


def _same_device(names_and_tensors, ref_name: str, ref: torch.Tensor) -> None:
    for name, x in names_and_tensors:
        if x.device != ref.device:
            raise ValueError(f"{name}: expected device {ref.device} (the device of {ref_name}), got {x.device}")


def _inner_contiguous(name: str, x: torch.Tensor) -> None:
    if x.stride(-1) != 1:
        raise ValueError(f"{name}: expected the last dimension contiguous (stride 1), got strides {tuple(x.stride())}")


def _contiguous(name: str, x: torch.Tensor) -> None:
    if not x.is_contiguous():
        raise ValueError(f"{name}: expected a contiguous tensor, got shape {tuple(x.shape)} strides {tuple(x.stride())}")


def _shape(name: str, x: torch.Tensor, expected: Sequence[int], what: str) -> None:
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{name}: expected shape {tuple(expected)} ({what}), got {tuple(x.shape)}")


def check_positive_int(name: str, value, upper=None) -> int:
    """``value`` as a positive int (bools refused), at most ``upper`` when given; else ValueError."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or (upper is not None and value > upper):
        bound = f"an int in [1, {upper}]" if upper is not None else "a positive int"
        raise ValueError(f"{name}: expected {bound}, got {value!r}")
    return value


def check_config(config) -> MSAConfig:
    if not isinstance(config, MSAConfig):
        raise ValueError(f"config: expected msa_sgl.MSAConfig, got {type(config).__name__}")
    return config


def check_metadata(page_table, cu_seqlens_q, seq_lens_k, total_q=None):
    """Checks the three metadata tensors (and, given ``total_q``, that rows come with at least one
    request: every row names one); returns (batch, max_pages)."""
    _tensor("page_table", page_table, 2, (torch.int32,))
    _tensor("cu_seqlens_q", cu_seqlens_q, 1, (torch.int32,))
    _tensor("seq_lens_k", seq_lens_k, 1, (torch.int32,))
    batch, max_pages = page_table.shape
    _shape("cu_seqlens_q", cu_seqlens_q, (batch + 1,), "[batch + 1], batch = page_table.shape[0]")
    _shape("seq_lens_k", seq_lens_k, (batch,), "[batch], batch = page_table.shape[0]")
    _inner_contiguous("page_table", page_table)
    _contiguous("cu_seqlens_q", cu_seqlens_q)
    _contiguous("seq_lens_k", seq_lens_k)
    _same_device((("cu_seqlens_q", cu_seqlens_q), ("seq_lens_k", seq_lens_k)), "page_table", page_table)
    if total_q and batch == 0:
        raise ValueError(f"page_table: expected at least one request (shape[0] >= 1) for {total_q} query rows, "
                         f"got shape {tuple(page_table.shape)}")
    return batch, max_pages


def _check_paged_cache(name: str, cache: torch.Tensor, config: MSAConfig) -> None:
    _contiguous(name, cache)
    if cache.shape[1] != config.block_size:
        raise ValueError(
            f"{name}: expected page size shape[1] == config.block_size = {config.block_size}, got {cache.shape[1]}"
        )


def check_index_inputs(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config, k_idx_scale=None) -> Dims:
    """Arguments of ``index_topk`` (layouts in msa_sgl/__init__.py). 8-bit index keys:
    ``k_idx_cache`` float8_e4m3fn with ``k_idx_scale`` float32 ``[num_pages, block_size]``."""
    config = check_config(config)
    _tensor("q_idx", q_idx, 3, FLOAT_DTYPES)
    _tensor("k_idx_cache", k_idx_cache, 3, FLOAT_DTYPES + (torch.float8_e4m3fn,))
    if k_idx_cache.dtype == torch.float8_e4m3fn:
        if k_idx_scale is None:
            raise ValueError("k_idx_scale: expected float32 [num_pages, block_size] scales with float8_e4m3fn "
                             "k_idx_cache, got None")
        _tensor("k_idx_scale", k_idx_scale, 2, (torch.float32,))
        _shape("k_idx_scale", k_idx_scale, tuple(k_idx_cache.shape[:2]), "[num_pages, block_size] of k_idx_cache")
        _contiguous("k_idx_scale", k_idx_scale)
        _same_device((("k_idx_scale", k_idx_scale),), "q_idx", q_idx)
    elif k_idx_scale is not None:
        raise ValueError(f"k_idx_scale: expected None for {_fmt_dtype(k_idx_cache.dtype)} index keys (scales go "
                         "with float8_e4m3fn keys only), got a tensor")
    elif k_idx_cache.dtype != q_idx.dtype:
        raise ValueError(
            f"k_idx_cache: expected dtype {_fmt_dtype(q_idx.dtype)} (the dtype of q_idx), got {_fmt_dtype(k_idx_cache.dtype)}"
        )
    _inner_contiguous("q_idx", q_idx)
    _check_paged_cache("k_idx_cache", k_idx_cache, config)
    if k_idx_cache.shape[2] != q_idx.shape[2]:
        raise ValueError(
            f"k_idx_cache: expected index head dim shape[2] == q_idx.shape[2] = {q_idx.shape[2]}, got {k_idx_cache.shape[2]}"
        )
    batch, max_pages = check_metadata(page_table, cu_seqlens_q, seq_lens_k, q_idx.shape[0])
    _same_device((("k_idx_cache", k_idx_cache), ("page_table", page_table)), "q_idx", q_idx)
    return Dims(
        total_q=q_idx.shape[0],
        batch=batch,
        max_pages=max_pages,
        num_pages=k_idx_cache.shape[0],
        block_size=config.block_size,
        num_kv_heads=q_idx.shape[1],
        index_dim=q_idx.shape[2],
    )


def check_attention_inputs(q, k_cache, v_cache, page_table, cu_seqlens_q, seq_lens_k, config) -> Dims:
    """Arguments of the main branch shared by ``sparse_attention`` and ``msa_attention``."""
    config = check_config(config)
    _tensor("q", q, 3, FLOAT_DTYPES)
    _tensor("k_cache", k_cache, 4, FLOAT_DTYPES)
    _tensor("v_cache", v_cache, 4, FLOAT_DTYPES)
    for name, x in (("k_cache", k_cache), ("v_cache", v_cache)):
        if x.dtype != q.dtype:
            raise ValueError(f"{name}: expected dtype {_fmt_dtype(q.dtype)} (the dtype of q), got {_fmt_dtype(x.dtype)}")
    _inner_contiguous("q", q)
    _check_paged_cache("k_cache", k_cache, config)
    _check_paged_cache("v_cache", v_cache, config)
    total_q, num_q_heads, head_dim = q.shape
    num_pages, _, num_kv_heads, k_dim = k_cache.shape
    if k_dim != head_dim:
        raise ValueError(f"k_cache: expected head dim shape[3] == q.shape[2] = {head_dim}, got {k_dim}")
    _shape("v_cache", v_cache, tuple(k_cache.shape), "the shape of k_cache")
    if num_kv_heads < 1 or num_q_heads % num_kv_heads != 0:
        raise ValueError(
            f"q: expected the number of query heads shape[1] to be a multiple of the KV heads "
            f"k_cache.shape[2] = {num_kv_heads}, got {num_q_heads}"
        )
    batch, max_pages = check_metadata(page_table, cu_seqlens_q, seq_lens_k, total_q)
    _same_device((("k_cache", k_cache), ("v_cache", v_cache), ("page_table", page_table)), "q", q)
    return Dims(
        total_q=total_q,
        batch=batch,
        max_pages=max_pages,
        num_pages=num_pages,
        block_size=config.block_size,
        num_kv_heads=num_kv_heads,
        num_q_heads=num_q_heads,
        head_dim=head_dim,
    )


def check_topk_idx(topk_idx, dims: Dims, config: MSAConfig, ref: torch.Tensor) -> None:
    _tensor("topk_idx", topk_idx, 3, (torch.int32,))
    _shape("topk_idx", topk_idx, (dims.total_q, dims.num_kv_heads, config.topk), "[total_q, Hkv, config.topk]")
    _inner_contiguous("topk_idx", topk_idx)
    _same_device((("topk_idx", topk_idx),), "q", ref)


def check_msa_inputs(q, k_cache, v_cache, q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config,
                     k_idx_scale=None) -> Dims:
    """Arguments of ``msa_attention``: both branches, and their agreement."""
    dims = check_attention_inputs(q, k_cache, v_cache, page_table, cu_seqlens_q, seq_lens_k, config)
    idims = check_index_inputs(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config, k_idx_scale)
    if idims.total_q != dims.total_q:
        raise ValueError(f"q_idx: expected {dims.total_q} tokens in shape[0] (q.shape[0]), got {idims.total_q}")
    if idims.num_kv_heads != dims.num_kv_heads:
        raise ValueError(
            f"q_idx: expected one index query head per KV group, shape[1] == k_cache.shape[2] = "
            f"{dims.num_kv_heads}, got {idims.num_kv_heads}"
        )
    if idims.num_pages != dims.num_pages:
        raise ValueError(
            f"k_idx_cache: expected {dims.num_pages} pages in shape[0] (k_cache.shape[0]; index keys are "
            f"keyed by the same physical page), got {idims.num_pages}"
        )
    _same_device((("q_idx", q_idx),), "q", q)
    return Dims(**{**dims.__dict__, "index_dim": idims.index_dim})


def check_wrapper_layer(wrapper, q, k_cache, v_cache, q_idx, k_idx_cache, k_idx_scale, page_table, cu_seqlens_q,
                        seq_lens_k, total_q: int) -> Dims:
    """``run()``'s checks of a layer's tensors, shared by MSAPrefillWrapper and MSADecodeWrapper:
    ``msa_attention``'s, plus agreement with what the wrapper was built for (``hq``, ``hkv``,
    ``head_dim``, ``index_dim``, ``dtype``, ``device``, ``index_fp8``) and planned (``total_q``)."""
    if (k_idx_scale is not None) != wrapper.index_fp8:
        want = "8-bit keys with k_idx_scale" if wrapper.index_fp8 else "keys in q's dtype, no k_idx_scale"
        got = "k_idx_scale given" if k_idx_scale is not None else "no k_idx_scale"
        raise ValueError(f"k_idx_scale: the wrapper was built with index_fp8={wrapper.index_fp8} ({want}), got {got}")
    if wrapper.index_fp8 and getattr(k_idx_cache, "dtype", None) != torch.float8_e4m3fn:
        raise ValueError(f"k_idx_cache: the wrapper was built with index_fp8=True (float8_e4m3fn keys), got "
                         f"{getattr(k_idx_cache, 'dtype', type(k_idx_cache).__name__)}")
    dims = check_msa_inputs(q, k_cache, v_cache, q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k,
                            wrapper.config, k_idx_scale)
    for name, got, want in (("q.shape[0]", dims.total_q, total_q), ("q.shape[1]", dims.num_q_heads, wrapper.hq),
                            ("q.shape[2]", dims.head_dim, wrapper.head_dim),
                            ("q_idx.shape[2]", dims.index_dim, wrapper.index_dim),
                            ("k_cache.shape[2]", dims.num_kv_heads, wrapper.hkv)):
        if got != want:
            raise ValueError(f"{name}: expected {want} (planned / built for), got {got}")
    if q.dtype != wrapper.dtype:
        raise ValueError(f"q: expected dtype {wrapper.dtype} (built for), got {q.dtype}")
    if q.device != wrapper.device:
        raise ValueError(f"q: expected device {wrapper.device}, got {q.device}")
    return dims


def check_quantize_inputs(k_idx, slots, k8_cache, scale_cache) -> None:
    """Arguments of ``quantize_index_keys``."""
    _tensor("k_idx", k_idx, 2, FLOAT_DTYPES)
    _tensor("slots", slots, 1, (torch.int64, torch.int32))
    _tensor("k8_cache", k8_cache, 3, (torch.float8_e4m3fn,))
    _tensor("scale_cache", scale_cache, 2, (torch.float32,))
    _shape("slots", slots, (k_idx.shape[0],), "[n], n = k_idx.shape[0]")
    _shape("scale_cache", scale_cache, tuple(k8_cache.shape[:2]), "[num_pages, block_size] of k8_cache")
    if k8_cache.shape[2] != k_idx.shape[1]:
        raise ValueError(f"k8_cache: expected index dim shape[2] == k_idx.shape[1] = {k_idx.shape[1]}, "
                         f"got {k8_cache.shape[2]}")
    _inner_contiguous("k_idx", k_idx)
    _contiguous("slots", slots)
    _contiguous("k8_cache", k8_cache)
    _contiguous("scale_cache", scale_cache)
    _same_device((("slots", slots), ("k8_cache", k8_cache), ("scale_cache", scale_cache)), "k_idx", k_idx)


def validate_metadata(page_table, cu_seqlens_q, seq_lens_k, *, total_q: int, num_pages: int, block_size: int) -> None:
    """Checks the *values* of the metadata tensors; raises ValueError on the first problem.

    This reads device values (a synchronisation on CUDA), so the kernels never call it; the
    float64 reference and tests do, and users may while debugging. What it checks:
    ``cu_seqlens_q[0] == 0``, non-decreasing, ``cu_seqlens_q[-1] == total_q``;
    ``0 <= q_len <= seq_len_k <= max_pages * block_size`` per request; every page id a request
    uses (the first ``ceil(seq_len_k / block_size)`` of its row) in ``[0, num_pages)``.
    """
    batch, max_pages = check_metadata(page_table, cu_seqlens_q, seq_lens_k)
    cu = cu_seqlens_q.cpu().tolist()
    lens = seq_lens_k.cpu().tolist()
    table = page_table.cpu()
    if cu[0] != 0:
        raise ValueError(f"cu_seqlens_q: expected cu_seqlens_q[0] == 0, got {cu[0]}")
    if cu[-1] != total_q:
        raise ValueError(f"cu_seqlens_q: expected cu_seqlens_q[-1] == total_q = {total_q}, got {cu[-1]}")
    for b in range(batch):
        q_len, k_len = cu[b + 1] - cu[b], lens[b]
        if q_len < 0:
            raise ValueError(f"cu_seqlens_q: expected non-decreasing values, got {cu[b]} then {cu[b + 1]} at request {b}")
        if not q_len <= k_len <= max_pages * block_size:
            raise ValueError(
                f"seq_lens_k: expected q_len <= seq_len_k <= max_pages * block_size = {max_pages * block_size} "
                f"for request {b}, got q_len {q_len}, seq_len_k {k_len}"
            )
        used = table[b, : (k_len + block_size - 1) // block_size]
        if used.numel() and (int(used.min()) < 0 or int(used.max()) >= num_pages):
            raise ValueError(
                f"page_table: expected page ids in [0, {num_pages}) for the {used.numel()} pages of request {b}, "
                f"got min {int(used.min())} max {int(used.max())}"
            )
