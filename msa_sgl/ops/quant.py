"""8-bit index keys: fp8 e4m3 values with one float32 scale per token (quantize on store).

Layout: ``k8_cache [num_pages, block_size, d_idx]`` float8_e4m3fn and ``scale_cache
[num_pages, block_size]`` float32, indexed like SGLang's flat slot pool (``slot = page *
block_size + offset``), so a token's 8-bit key is written once, when its index key is stored,
and never rewritten: pages reused through the radix cache keep theirs. A token's key is
``k8 * scale`` with ``scale = max|k| / 448`` (0 for an all-zero key, stored as 0 with fp8 zeros).

Per token rather than per block: a decode step appends one token to a partly filled page, and a
per-token scale never needs the page's other keys (no read-modify-write, no requantisation).
The cost is 4 bytes per 128-byte key (3%) read by the indexer.

Rounding is round-to-nearest-even done in fp32 before the cast (so the cast itself is exact):
the same bits on the GPU and in Triton's interpreter, whose own fp32 -> fp8 cast rounds wrongly
for some values.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

FP8_MAX = 448.0


@triton.jit
def round_e4m3(x):
    """fp32 ``x`` (|x| <= 448) rounded to the nearest e4m3 value (ties to even), still fp32:
    3 mantissa bits for normals (|x| >= 2^-6), a fixed 2^-9 step for subnormals."""
    bits = x.to(tl.int32, bitcast=True)
    e = ((bits >> 23) & 0xFF) - 127  # unbiased exponent of |x| (-127 for 0 and fp32 subnormals)
    e = tl.maximum(e, -6)
    ulp = ((e - 3 + 127) << 23).to(tl.float32, bitcast=True)  # 2^(e-3)
    y = x / ulp  # exact: ulp is a power of two; |y| < 16
    y = (y + 12582912.0) - 12582912.0  # round to an integer, ties to even (1.5 * 2^23)
    r = tl.minimum(tl.maximum(y * ulp, -448.0), 448.0)
    return tl.where(r == 0.0, x * 0.0, r)  # keep the sign of values that round to zero (-0.0)


@triton.jit
def _quantize_index_kernel(
    K_IDX, SLOTS, K8, SCALE,
    n, num_slots, stride_kn,
    D: tl.constexpr, D_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """BLOCK_N tokens per program: scale = max|k| / 448, k8 = e4m3(k / scale) at ``slot``.
    Slots outside ``[0, num_slots)`` are skipped (nothing written)."""
    o_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    o_d = tl.arange(0, D_P)
    m_n = o_n < n
    slot = tl.load(SLOTS + o_n, mask=m_n, other=-1).to(tl.int64)
    ok = m_n & (slot >= 0) & (slot < num_slots)
    m = ok[:, None] & (o_d < D)[None, :]
    k = tl.load(K_IDX + o_n.to(tl.int64)[:, None] * stride_kn + o_d[None, :], mask=m, other=0.0).to(tl.float32)
    amax = tl.max(tl.abs(k), axis=1)  # [BLOCK_N]
    scale = tl.div_rn(amax, tl.full([BLOCK_N], 448.0, tl.float32))
    inv = tl.where(amax > 0, tl.div_rn(tl.full([BLOCK_N], 448.0, tl.float32), tl.where(amax > 0, amax, 1.0)), 0.0)  # IEEE division: the same bits as torch
    k8 = round_e4m3(k * inv[:, None])
    tl.store(K8 + slot[:, None] * D + o_d[None, :], k8.to(K8.dtype.element_ty), mask=m)
    tl.store(SCALE + slot, scale, mask=ok)


def quantize_index_keys(k_idx, slots, k8_cache, scale_cache) -> None:
    """Kernel behind msa_sgl.quantize_index_keys (arguments validated)."""
    n, d = k_idx.shape
    if n == 0:
        return
    block_n = 16
    _quantize_index_kernel[(triton.cdiv(n, block_n),)](
        k_idx, slots, k8_cache, scale_cache,
        n, k8_cache.shape[0] * k8_cache.shape[1], k_idx.stride(0),
        D=d, D_P=triton.next_power_of_2(d), BLOCK_N=block_n,
    )


def quantize_e4m3_reference(x: torch.Tensor, dim: int = -1):
    """Torch version of the same rule, for the reference and tests: ``(x8, scale)`` with
    ``x8`` float8_e4m3fn and ``scale = max|x| / 448`` over ``dim`` (kept as a size-1 dim removed)."""
    x32 = x.to(torch.float32)
    amax = x32.abs().amax(dim=dim, keepdim=True)
    # a tensor / tensor division (IEEE, as the kernels' div_rn); torch's scalar / tensor is a reciprocal
    # times the scalar, which differs in the last bit and so, near a rounding midpoint, in the fp8 value
    inv = torch.where(amax > 0, torch.full_like(amax, FP8_MAX) / torch.where(amax > 0, amax, 1.0), 0.0)
    x8 = (x32 * inv).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)  # torch rounds to nearest even
    return x8, (amax / torch.full_like(amax, FP8_MAX)).squeeze(dim)
