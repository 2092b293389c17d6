"""The index scan's two forms of a block's scores - queries x keys ([rows, BLOCK], maxima over
axis 1) and keys x queries ([BLOCK, rows], maxima over axis 0; index_branch._KEYS_M_*, the form
8-bit decode tiles take) - each forced, with 16-bit index keys, against the float64 reference; and
the rule that picks the form, at the MiniMax-M3 shapes it was measured on (benchmarks/NOTES.md
v14). The 8-bit forms: tests/property/test_fp8_index.py::test_kernel_fp8_scale_paths_match_reference."""

import pytest
import torch

from harness.impls import KERNEL_DEVICE, KERNELS
from msa_sgl import MSAConfig, reference
from msa_sgl.ops import index_branch as ib
from tests.unit.test_index_splits import _poisoned_workspace

B, D, HKV = 16, 16, 2


def _index_args(q_lens, seq_lens, config, k_idx, g):
    """index_topk's arguments: requests of ``q_lens`` query rows (random fp16 index queries) over
    ``seq_lens`` keys, pages shuffled; ``k_idx`` [pages, B, D] with page 0 unused."""
    width = max(-(-s // B) for s in seq_lens)
    table = (torch.randperm(len(q_lens) * width, generator=g) + 1).to(torch.int32).reshape(len(q_lens), width)
    return dict(q_idx=torch.randn(sum(q_lens), HKV, D, generator=g).half(), k_idx_cache=k_idx.half(), page_table=table,
                cu_seqlens_q=torch.tensor([0, *torch.tensor(q_lens).cumsum(0).tolist()], dtype=torch.int32),
                seq_lens_k=torch.tensor(seq_lens, dtype=torch.int32), config=config)


def _on_device(ia):
    return {k: (v.to(KERNEL_DEVICE) if isinstance(v, torch.Tensor) else v) for k, v in ia.items()}


@pytest.mark.parametrize("keys_m", [0, 1], ids=["queries_x_keys", "keys_x_queries"])
@pytest.mark.parametrize("q_lens,n_split", [((1,), 3), ((4, 1), 5), ((16,), 4), ((2, 3, 1), 1)],
                         ids=["decode_3_splits", "mtp_and_decode_5_splits", "32_row_tile_4_splits", "three_requests"])
def test_kernel_index_score_forms_match_reference(q_lens, n_split, keys_m, monkeypatch):
    """Requests of 40-47 candidate blocks, random keys whose magnitudes differ by up to 2^6 between
    tokens (a maximum over the wrong axis or of the wrong row changes the ranking): the selection
    equals the float64 reference's exactly (random data: no ties)."""
    config = MSAConfig(block_size=B, topk=6, num_init_blocks=1, num_local_blocks=1)
    g = torch.Generator().manual_seed(11 + sum(q_lens) + n_split)
    seq_lens = [(41 + 3 * i) * B + 5 + i for i in range(len(q_lens))]
    pages = len(q_lens) * max(-(-s // B) for s in seq_lens) + 1
    k = torch.randn(pages, B, D, generator=g) * torch.exp2(torch.randint(-3, 4, (pages, B, 1), generator=g).float())
    ia = _index_args(q_lens, seq_lens, config, k, g)
    monkeypatch.setattr(ib, "_FORCE_N_SPLIT", n_split)
    monkeypatch.setattr(ib, "_KEYS_M_MAX_ROWS", 64 if keys_m else 0)
    monkeypatch.setattr(ib, "_KEYS_M_MAX_SPLIT_BLOCKS", 1 << 30)
    plan = ib.plan_index(sum(q_lens), len(q_lens), ia["page_table"].shape[1], HKV, config, torch.device(KERNEL_DEVICE))
    assert plan.keys_m == bool(keys_m), plan
    got = KERNELS.index_topk(**_on_device(ia))
    assert torch.equal(got.cpu(), reference.index_topk(**ia)), "selection != reference"


M3 = MSAConfig(block_size=128, topk=16, num_init_blocks=0, num_local_blocks=1)


# (id, batch, total_q, page-table width, 8-bit keys, keys x queries?) on a 132-SM card (H100 SXM)
RULE = [
    ("fp8_1x1M", 1, 1, 8192, True, True),  # 256 splits of 32 blocks: 68.1 -> 65.6 us
    ("fp8_1x128K_q8", 1, 8, 1024, True, True),  # 32-row tile: 52.7 -> 47.8
    ("fp8_4x1M", 4, 4, 8192, True, True),  # 99 splits of 83 blocks: 209.3 -> 207.7
    ("fp8_8x1M", 8, 8, 8192, True, True),  # one wave: 66 splits of 125 (H100, 50 of 164: 404.5 -> 412.2 if on)
    ("fp8_64x128K", 64, 64, 1024, True, False),  # 7 splits of 146 blocks: 473.9 -> 509.0 if on
    ("fp8_64x32K", 64, 64, 256, True, False),  # 7 splits of 37 blocks, 64 requests: 199.4 -> 226.4 if on
    ("fp8_16x128K", 16, 16, 1024, True, False),  # 25 splits of 41 blocks, 16 requests: 145.2 -> 146.7 if on
    ("fp8_8x128K_q8", 8, 64, 1024, True, True),  # 32-row tiles: 194.2 -> 189.9
    ("fp8_1x128K_q16", 1, 16, 1024, True, False),  # 64-row tile: 60.8 -> 75.6 if on
    ("fp8_prefill_16K", 1, 16384, 1024, True, False),  # 128-row tiles
    ("bf16_1x1M", 1, 1, 8192, False, False),  # 103.9 -> 106.1 if on
]


@pytest.mark.parametrize("batch,total_q,width,fp8,want", [r[1:] for r in RULE], ids=[r[0] for r in RULE])
def test_score_form_rule_at_m3_shapes(batch, total_q, width, fp8, want, monkeypatch):
    monkeypatch.setattr(ib, "num_sms", lambda device: 132)
    plan = ib.plan_index(total_q, batch, width, 4, M3, torch.device("cpu"), fp8=fp8)
    assert plan.keys_m == want, plan


@pytest.mark.parametrize("q_lens", [(1,) * 9, (3, 0, 1, 0, 0, 130, 2), (0, 1)],
                         ids=["nine_decode_rows", "mixed_with_empty_requests", "empty_first"])
def test_kernel_index_tile_request_lookup_matches_reference(q_lens):
    """The index scan's tile -> request lookup (metadata.find_tile_request) on calls with
    requests without query rows (no tiles: equal tile offsets) and a request of several tiles:
    the selection equals the reference's."""
    config = MSAConfig(block_size=B, topk=4, num_init_blocks=1, num_local_blocks=1)
    g = torch.Generator().manual_seed(5 + len(q_lens))
    seq_lens = [q + 6 * B + 3 * i for i, q in enumerate(q_lens)]
    pages = len(q_lens) * max(-(-s // B) for s in seq_lens) + 1
    ia = _index_args(q_lens, seq_lens, config, torch.randn(pages, B, D, generator=g), g)
    got = KERNELS.index_topk(**_on_device(ia))
    assert torch.equal(got.cpu(), reference.index_topk(**ia)), "selection != reference"


# Splits a plan takes at M3 shapes (132 SMs): batch 1 - 8-bit keys take the 128 cap up to
# 1024-block tables (NOTES.md v15: 1 x 128K q = 8 47.5 -> 44.6 us) and 256 above (1 x 1M: 63.9
# against 71.6); from 8 one-token tiles 8-bit keys take one wave of 4 programs an SM, rounding
# down (v29g-i: 8 x 1M 66 splits, 315.7 -> 286.6 us; 64 x 128K 8, where 9 made a second wave),
# fewer tiles and longer ones 3 an SM rounding up (2 x 1M: 198; 82.7 against 87.8 with 256), bf16
# keys 2 an SM rounding up.
SPLITS = [
    ("fp8_1x128K", 1, 1, 1024, True, 128),
    ("fp8_1x128K_q8", 1, 8, 1024, True, 128),
    ("fp8_1x256K", 1, 1, 2048, True, 256),
    ("fp8_1x1M", 1, 1, 8192, True, 256),
    ("fp8_2x1M", 2, 2, 8192, True, 198),
    ("fp8_4x1M", 4, 4, 8192, True, 99),
    ("fp8_8x1M", 8, 8, 8192, True, 66),
    ("fp8_64x128K", 64, 64, 1024, True, 8),
    ("fp8_8x128K_q8", 8, 64, 1024, True, 27),  # 32-row tiles: the old rule (tile_grid's tight 15 tiles; 25 on 16)
    ("fp8_1x1M_q8", 1, 8, 8192, True, 256),  # one MTP tile (the loose bound's 2 gave 198, v32a)
    ("bf16_1x1M_q8", 1, 8, 8192, False, 128),  # the cap (_MAX_SPLIT_MTP 256 measured, not shipped: v32a)
    ("bf16_2x1M_q8", 2, 16, 8192, False, 88),  # 3 tiles at most (2 real): cdiv(264, 3)
    ("bf16_1x128K", 1, 1, 1024, False, 128),
    ("bf16_1x1M", 1, 1, 8192, False, 128),
    ("bf16_8x1M", 8, 8, 8192, False, 33),
    ("bf16_64x128K", 64, 64, 1024, False, 5),
]


@pytest.mark.parametrize("batch,total_q,width,fp8,want", [r[1:] for r in SPLITS], ids=[r[0] for r in SPLITS])
def test_split_cap_at_m3_shapes(batch, total_q, width, fp8, want, monkeypatch):
    monkeypatch.setattr(ib, "num_sms", lambda device: 132)
    plan = ib.plan_index(total_q, batch, width, 4, M3, torch.device("cpu"), fp8=fp8)
    assert plan.n_split == want, plan
    if fp8 and total_q == batch >= ib._FP8_ONE_WAVE_MIN_TILES:  # one wave: all tiles' splits resident at once
        assert batch * plan.n_split <= ib._FP8_WAVE_PROGRAMS_PER_SM * 132
    # the decode wrapper's workspace bound covers what the plan asks for
    need = total_q * 4 * plan.n_split * plan.kf
    assert ib.workspace_bound(batch, total_q // batch, width, 4, M3, torch.device("cpu"), fp8=fp8) >= need


@pytest.mark.parametrize("q_lens", [(150, 3, 0, 130), (200,)], ids=["varlen_with_empty", "one_chunk"])
def test_kernel_prefill_tiles_last_first_match_reference(q_lens, monkeypatch):
    """Prefill tiles (128 rows) taken last to first (index_branch._LAST_FIRST): every tile of
    every request is still scanned once, so the selection equals the reference's."""
    config = MSAConfig(block_size=B, topk=4, num_init_blocks=1, num_local_blocks=1)
    g = torch.Generator().manual_seed(11 + len(q_lens))
    seq_lens = [q + 5 * B + 7 * i for i, q in enumerate(q_lens)]
    pages = len(q_lens) * max(-(-s // B) for s in seq_lens) + 1
    ia = _index_args(q_lens, seq_lens, config, torch.randn(pages, B, D, generator=g), g)
    monkeypatch.setattr(ib, "_LAST_FIRST", True)
    plan = ib.plan_index(sum(q_lens), len(q_lens), ia["page_table"].shape[1], ia["q_idx"].shape[1], config,
                         torch.device("cpu"))
    assert plan.block_t * plan.hkv_p >= 128, plan  # prefill tiles: the order applies
    got = KERNELS.index_topk(**_on_device(ia))
    assert torch.equal(got.cpu(), reference.index_topk(**ia)), "selection != reference"


@pytest.mark.parametrize("batch,width,want", [(8, 8192, 49), (64, 1024, 6), (4, 8192, 66)],
                         ids=["bf16_8x1M", "bf16_64x128K", "bf16_4x1M_below_min"])
def test_bf16_one_wave_knob(batch, width, want, monkeypatch):
    # index_branch._BF16_ONE_WAVE_MIN_TILES (off; NOTES.md v29k): from that many one-token tiles,
    # floor(3 x SMs / tiles) splits, the tiles keeping their 6 stages (3 programs an SM); fewer
    # tiles keep 2 an SM rounding up; the decode wrapper's workspace bound covers the splits
    monkeypatch.setattr(ib, "num_sms", lambda device: 132)
    monkeypatch.setattr(ib, "_BF16_ONE_WAVE_MIN_TILES", 8)
    plan = ib.plan_index(batch, batch, width, 4, M3, torch.device("cpu"))
    assert plan.n_split == want, plan
    assert plan.num_stages == ib._SHORT_TILE_STAGES, plan
    if batch >= 8:
        assert batch * plan.n_split <= ib._BF16_WAVE_PROGRAMS_PER_SM * 132
    need = batch * 4 * plan.n_split * plan.kf
    assert ib.workspace_bound(batch, 1, width, 4, M3, torch.device("cpu")) >= need


@pytest.mark.parametrize("batch,width,fp8,split,staged", [
    (8, 1024, False, 33, True),      # 264 programs: 2 an SM
    (64, 1024, False, 5, True),      # 320: 2.4 an SM (v31a)
    (128, 1024, False, 3, True),     # 384: 2.9 an SM
    (199, 1024, False, 2, False),    # 398: past 3 an SM, Triton's default
    (300, 1024, False, 1, True),     # 300: one split each, 2.3 an SM (v31g)
    (1, 64, False, 64, True),        # a short table: a split a block
    (199, 1024, True, 2, True),      # 8-bit keys: the short stages always
], ids=["bf16_8x128K", "bf16_64x128K", "bf16_128x128K", "bf16_199x128K", "bf16_300x128K", "bf16_1x8K",
        "fp8_199x128K"])
def test_short_tile_stages_rule(batch, width, fp8, split, staged, monkeypatch):
    # one-token tiles take _SHORT_TILE_STAGES up to _STAGED_PROGRAMS_PER_SM programs an SM with
    # bf16 / fp16 keys (3, v31a), always with 8-bit keys; None (Triton's default) beyond
    monkeypatch.setattr(ib, "num_sms", lambda device: 132)
    plan = ib.plan_index(batch, batch, width, 4, M3, torch.device("cpu"), fp8=fp8)
    assert plan.n_split == split, plan
    assert plan.num_stages == (ib._SHORT_TILE_STAGES if staged else None), plan
    monkeypatch.setattr(ib, "_STAGED_PROGRAMS_PER_SM", 0)  # the rule before v31: 2 an SM (the split target)
    before = ib.plan_index(batch, batch, width, 4, M3, torch.device("cpu"), fp8=fp8)
    two_an_sm = ib._SPLIT_PROGRAMS_PER_SM * 132
    assert before.num_stages == (ib._SHORT_TILE_STAGES if fp8 or batch * split <= two_an_sm else None), before


@pytest.mark.parametrize("split_major", [True, False], ids=["splits_first", "tiles_first"])
@pytest.mark.parametrize("tight", [True, False], ids=["tight_grid", "loose_grid"])
@pytest.mark.parametrize("q_lens", [(4, 4, 4), (1, 12), (9, 1)], ids=["three_mtp_one_empty_tile", "1_and_12", "9_and_1"])
def test_kernel_split_major_grid_matches_reference(q_lens, tight, split_major, monkeypatch):
    """MTP tiles (8 tokens x 2 groups) in a grid that may hold tiles without tokens: with the
    splits on the grid's first axis (index_branch._SPLIT_MAJOR, v32) or the tiles, under the tight
    and the loose tile bound, every real tile's splits are scanned once and the empty tiles' write
    nothing: the selection equals the float64 reference's."""
    from msa_sgl.ops import metadata as md

    config = MSAConfig(block_size=B, topk=6, num_init_blocks=1, num_local_blocks=1)
    g = torch.Generator().manual_seed(5 + sum(q_lens))
    seq_lens = [(23 + 5 * i) * B + 3 + i for i in range(len(q_lens))]
    pages = len(q_lens) * max(-(-s // B) for s in seq_lens) + 1
    ia = _index_args(q_lens, seq_lens, config, torch.randn(pages, B, D, generator=g), g)
    monkeypatch.setattr(md, "TIGHT_TILE_GRID", tight)
    monkeypatch.setattr(ib, "_SPLIT_MAJOR", split_major)
    monkeypatch.setattr(ib, "_FORCE_N_SPLIT", 2)  # (fewer splits than tiles: axes read the wrong way round miss tiles)
    # the partial lists' workspace filled with a list a missed split would leave (a fresh
    # allocation can hold the previous case's right lists on a GPU), the launch grid recorded
    monkeypatch.setattr(ib.IndexLaunch, "workspace", _poisoned_workspace)
    grids = []
    kernel = ib._index_partial_kernel

    class _Spy:
        def __getitem__(self, grid):
            grids.append(tuple(grid))
            return kernel[grid]

    monkeypatch.setattr(ib, "_index_partial_kernel", _Spy())
    plan = ib.plan_index(sum(q_lens), len(q_lens), ia["page_table"].shape[1], HKV, config, torch.device(KERNEL_DEVICE))
    grid = md.tile_grid(sum(q_lens), len(q_lens), plan.block_t)
    real = sum(-(-q // plan.block_t) for q in q_lens)
    assert plan.block_t * plan.hkv_p == 16 and grid >= real > 0, (plan, grid, real)
    major = ib.split_major_grid(plan, grid, len(q_lens))
    assert major == (split_major and grid > len(q_lens)), (plan, grid)
    if q_lens == (4, 4, 4):  # the case has a tile without tokens in the grid (the point of the test)
        assert grid > real and (major or not split_major), (grid, real)
    got = KERNELS.index_topk(**_on_device(ia))
    assert grids == [(2, grid) if major else (grid, 2)], grids
    assert torch.equal(got.cpu(), reference.index_topk(**ia)), "selection != reference"
