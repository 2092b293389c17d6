"""quantize_index_keys (8-bit index keys, quantize on store): the kernel writes bitwise what the
torch reference writes, only at the given slots, and rejects bad arguments by name."""

import pytest
import torch

import msa_sgl
from harness.impls import KERNEL_DEVICE
from msa_sgl import reference

FP8 = torch.float8_e4m3fn


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("d", [16, 64, 128])
def test_quantize_kernel_equals_reference_bitwise(dtype, d):
    gen = torch.Generator().manual_seed(d)
    pages, B, n = 7, 16, 50
    # magnitudes from 1e-4 to 1e3, one all-zero key, rounding-boundary values
    k = torch.randn(n, d, generator=gen) * torch.logspace(-4, 3, n)[:, None]
    k[5] = 0.0
    k[6, :8] = torch.tensor([448.0, -448.0, 7.99, -7.99, 0.0625, 1.0625, 1.1875, 2.0 ** -10])
    k = k.to(dtype)
    slots = torch.randperm(pages * B, generator=gen)[:n]
    slots[7] = -1  # skipped
    slots[8] = pages * B  # skipped
    poison = torch.full((pages, B, d), 3.0).to(FP8)
    k8, sc = poison.clone(), torch.full((pages, B), -7.0)
    r8, rs = poison.clone(), torch.full((pages, B), -7.0)
    reference.quantize_index_keys(k, slots, r8, rs)
    dev = KERNEL_DEVICE
    k8d, scd = k8.to(dev), sc.to(dev)
    msa_sgl.quantize_index_keys(k.to(dev), slots.to(dev), k8d, scd)
    assert torch.equal(k8d.cpu().view(torch.uint8), r8.view(torch.uint8)), "8-bit keys differ from the reference"
    assert torch.equal(scd.cpu(), rs), "scales differ from the reference"
    # untouched slots keep their old contents; the stored keys dequantize close to the inputs
    written = torch.zeros(pages * B, dtype=torch.bool)
    written[slots[(slots >= 0) & (slots < pages * B)]] = True
    assert (rs.view(-1)[~written] == -7.0).all()
    keep = (slots >= 0) & (slots < pages * B)
    deq = r8.view(-1, d)[slots[keep]].double() * rs.view(-1)[slots[keep]].double()[:, None]
    want = k[keep].double()
    err = (deq - want).abs().amax(dim=1) / want.abs().amax(dim=1).clamp_min(1e-30)
    assert float(err.max()) <= 2.0 ** -4, f"dequantized keys off by {float(err.max()):.3e} of max|k|"


def _args():
    pages, B, d = 3, 16, 32
    return dict(k_idx=torch.randn(4, d, device=KERNEL_DEVICE, dtype=torch.float16),
                slots=torch.arange(4, device=KERNEL_DEVICE),
                k8_cache=torch.zeros(pages, B, d, device=KERNEL_DEVICE).to(FP8),
                scale_cache=torch.zeros(pages, B, device=KERNEL_DEVICE))


CASES = [
    ("k8_not_fp8", {"k8_cache": torch.zeros(3, 16, 32, dtype=torch.float16)}, r"^k8_cache: expected dtype float8_e4m3fn"),
    ("scale_fp16", {"scale_cache": torch.zeros(3, 16, dtype=torch.float16)}, r"^scale_cache: expected dtype float32"),
    ("scale_shape", {"scale_cache": torch.zeros(3, 8)}, r"^scale_cache: expected shape"),
    ("slots_len", {"slots": torch.arange(3)}, r"^slots: expected shape"),
    ("slots_float", {"slots": torch.zeros(4)}, r"^slots: expected dtype"),
    ("dim_mismatch", {"k_idx": torch.randn(4, 16, dtype=torch.float16)}, r"^k8_cache: expected index dim"),
]


@pytest.mark.parametrize("changes,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_quantize_misuse_raises(changes, pattern):
    a = _args()
    a.update({k: v.to(KERNEL_DEVICE) for k, v in changes.items()})
    with pytest.raises(ValueError, match=pattern):
        msa_sgl.quantize_index_keys(**a)


def test_index_scale_rules():
    from harness.problems import Problem, ProblemSpec

    p = Problem.from_spec(ProblemSpec(q_lens=(2,), seq_lens=(40,), block_size=16, topk=2, head_dim=16, index_dim=32,
                                      dtype="float16"))
    ia = {k: (v.to(KERNEL_DEVICE) if isinstance(v, torch.Tensor) else v) for k, v in p.index_args().items()}
    pages, B, d = ia["k_idx_cache"].shape
    with pytest.raises(ValueError, match=r"^k_idx_scale: expected float32 \[num_pages, block_size\] scales"):
        msa_sgl.index_topk(**{**ia, "k_idx_cache": ia["k_idx_cache"].to(FP8)})
    with pytest.raises(ValueError, match=r"^k_idx_scale: expected None for float16 index keys"):
        msa_sgl.index_topk(**ia, k_idx_scale=torch.ones(pages, B, device=KERNEL_DEVICE))
    with pytest.raises(ValueError, match=r"^k_idx_scale: expected shape"):
        msa_sgl.index_topk(**{**ia, "k_idx_cache": ia["k_idx_cache"].to(FP8)},
                           k_idx_scale=torch.ones(pages, B + 1, device=KERNEL_DEVICE))
