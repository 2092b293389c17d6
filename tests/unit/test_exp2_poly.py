"""The polynomial exp2 of the Gluon KV-outer softmax's FMA-pipe variant (kv_outer_ws._EXP2_EMU,
exp2_emu_asm): its PTX evaluated step by step in float32 on the CPU (the kernel itself runs on a
Hopper GPU only), against exp2 in float64, over the softmax's range."""

import re
import struct

import numpy as np
import pytest

from msa_sgl.ops import kv_outer_ws as ws


def _f32(h):
    return struct.unpack("<f", struct.pack("<I", int(h[2:], 16)))[0]


def _asm_exp2(x, asm):
    """The polynomial lane of ``asm`` on float32 ``x``: its instructions in order, fma within an ulp of
    PTX's single rounding (the exact product of two float32 fits a float64, then the sum rounded
    to float64 and to float32), add.rm as the floor it computes (1.5 x 2^23 + t for t in [-127, 0]
    lies where floats are 1 apart), and the NaN select."""
    lits = [_f32(h) for h in re.findall(r"0f[0-9A-F]{8}", asm)]
    clamp, magic, magic2, c3, c2, c1, c0 = lits
    assert magic == magic2 == 1.5 * 2 ** 23
    t = np.maximum(x, np.float32(clamp))
    j = (np.float64(magic) + np.floor(t.astype(np.float64))).astype(np.float32)  # add.rm.f32
    fl = (j - np.float32(magic)).astype(np.float32)
    f = (t - fl).astype(np.float32)

    def fma(a, b, c):
        return (a.astype(np.float64) * b.astype(np.float64) + np.float64(c)).astype(np.float32)

    p = fma(f, np.full_like(f, c3), c2)
    p = fma(p, f, c1)
    p = fma(p, f, c0)
    e = (j.view(np.int32).astype(np.int64) << 23).astype(np.uint32).view(np.int32)  # shl.b32: low 32 bits
    y = (p.view(np.int32) + e).view(np.float32)
    assert "testp.notanumber.f32 isnan_p," in asm and "y, isnan_p;" in asm
    return np.where(np.isnan(x), x, y)  # selp


@pytest.mark.parametrize("k", [2, 4])
def test_asm_lanes_and_coefficients(k):
    asm = ws.exp2_emu_asm(k)
    # k - 1 lanes on MUFU (ex2.approx.ftz.f32, as gl.exp2 lowers: the non-ftz form costs three
    # FMA-pipe instructions a lane), the last by the polynomial
    lanes = re.findall(r"ex2\.approx(\.ftz)?\.f32 \$(\d+), \$(\d+);", asm)
    assert lanes == [(".ftz", str(i), str(k + i)) for i in range(k - 1)]
    assert f"max.ftz.f32 t, ${2 * k - 1}," in asm and f"selp.f32 ${k - 1}, ${2 * k - 1}, y, isnan_p;" in asm
    c3, c2, c1, c0 = (_f32(h) for h in re.findall(r"0f[0-9A-F]{8}", asm)[3:])
    assert (c0, c1, c2, c3) == tuple(float(np.float32(c)) for c in ws._EXP2_POLY)


def test_poly_exp2_relative_error_over_the_softmax_range():
    rng = np.random.default_rng(0)
    x = np.concatenate([-rng.uniform(0, 126, 200_000), -rng.uniform(0, 1, 100_000),
                        -np.arange(0, 127, dtype=np.float64), [-1e-30, -0.5, -126.99999]]).astype(np.float32)
    y = _asm_exp2(x, ws.exp2_emu_asm(2))
    want = np.exp2(x.astype(np.float64))
    ok = x >= -126  # normal results
    rel = np.abs(y[ok] / want[ok] - 1)
    assert rel.max() <= 8.7e-5, (rel.max(), x[ok][rel.argmax()])
    assert np.all((y[~ok] >= 0) & (y[~ok] < 1.2e-38))  # below 2^-126: ~0, never negative or NaN
    assert np.all(np.diff(y[np.argsort(x)].astype(np.float64)) >= 0)  # monotonic in x


def test_poly_exp2_of_minus_inf_zero_and_nan():
    y = _asm_exp2(np.float32([-np.inf, 0.0, np.nan]), ws.exp2_emu_asm(4))
    assert y[0] == 0.0 and y[1] == 1.0  # the masked keys' -inf: exactly 0; a row's max: exactly 1
    assert np.isnan(y[2])  # a NaN score stays NaN (as ex2's lanes give it), not the clamp's 0
