"""The index branch's split rule at runtime: a short candidate range takes fewer, longer splits
than the launch has (at least min(_SPLIT_FLOOR, n / _SPLIT_PIECES) blocks each), and the
finalize kernel reads exactly the splits the partial kernel wrote (splits past a tile's range
exit without writing). Hand-built cases whose best blocks sit in the last used split, the first
one, or the split where a second request's shorter range ends: a merge that skipped one split
too many would lose them. The workspace starts poisoned with a list that names a non-hot block
with the best possible score: a merge of every list that read one split too many (an unwritten
one) would select it; the heads-first merge maps that head to the split of its block and would
load that split's list twice, pushing a real list out of the best heads.
Both merges run (index_branch._HEADS_MERGE), with and without a forced init block (the heads-first
merge finds a head's split from its block id, shifted by the init blocks)."""

import pytest
import torch

import msa_sgl
from harness.impls import KERNEL_DEVICE
from msa_sgl import MSAConfig, reference
from msa_sgl.ops import index_branch as ib

B, D, HKV = 16, 16, 2
CONFIG = MSAConfig(block_size=B, topk=4, num_init_blocks=0, num_local_blocks=1)


def _case(hot_blocks, seq_lens, q_len=1, seed=0):
    """Requests with ``q_len`` query tokens at their last positions; index keys small and random
    except ``hot_blocks[b]`` of request b, which score high for every group. Pages shuffled."""
    g = torch.Generator().manual_seed(seed)
    n_blocks = [-(-s // B) for s in seq_lens]
    num_pages = sum(n_blocks) + 1
    perm = (torch.randperm(num_pages - 1, generator=g) + 1).tolist()
    width = max(n_blocks)
    page_table = torch.zeros(len(seq_lens), width, dtype=torch.int32)
    k_idx = torch.randn(num_pages, B, D, generator=g) * 0.01
    q_idx = torch.randn(len(seq_lens) * q_len, HKV, D, generator=g).abs() + 0.5
    cursor = 0
    for b, n in enumerate(n_blocks):
        page_table[b, :n] = torch.tensor(perm[cursor : cursor + n], dtype=torch.int32)
        cursor += n
        for rank, blk in enumerate(hot_blocks[b]):
            k_idx[page_table[b, blk], 3] = 1.0 + rank  # one hot key per hot block, distinct scores
    return dict(q_idx=q_idx.half(), k_idx_cache=k_idx.half(), page_table=page_table,
                cu_seqlens_q=torch.arange(len(seq_lens) + 1, dtype=torch.int32) * q_len,
                seq_lens_k=torch.tensor(seq_lens, dtype=torch.int32))


# (id, seq_lens, q_len, hot blocks per request): 38 candidate blocks (block 38 is the forced local
# one) in 16 launched splits; floor 3, pieces 4: splits of 3 blocks, 13 used, 3 skipped
CASES = [
    ("hot_in_last_used_split", (38 * B + 5,), 1, [(35, 36, 37)]),
    ("hot_in_first_split", (38 * B + 5,), 1, [(0, 1, 2)]),
    ("hot_spread", (38 * B + 5,), 1, [(2, 20, 37)]),
    # a short request beside a long one: its rows end many splits earlier than its tile's range
    ("short_beside_long", (38 * B + 5, 9 * B + 1), 1, [(35, 36, 37), (5, 6, 7)]),
    # 4 tokens in one tile, 2 before a block boundary and 2 after: rows of 64 and 65 candidate
    # blocks; the tile's range is split for 65 (13 splits of 5 without a floor), which 64 alone
    # would split into 16 of 4 - the finalize must follow the tile, not the row
    ("mtp_tile_straddles_a_block", (65 * B + 2,), 4, [(10, 40, 62)]),
]
_POISON_BLOCK = 1  # hot in no case


def _poisoned_workspace(self, total_q, hkv, device):
    key = (0x7F000000 << 32) | (2147483647 - _POISON_BLOCK)  # order key: score ~1.7e38, block 1
    return torch.full((total_q * hkv, self.n_split, self.kf), key, dtype=torch.int64, device=device)


@pytest.mark.parametrize("heads", [False, True], ids=["all_lists", "heads_first"])  # ib._HEADS_MERGE
@pytest.mark.parametrize("floor,pieces", [(3, 4), (1, 1), (8, 64)], ids=["floor3", "no_floor", "default"])
@pytest.mark.parametrize("seq_lens,q_len,hot", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_split_floor_and_skipped_splits_keep_the_selection(monkeypatch, seq_lens, q_len, hot, floor, pieces, heads):
    monkeypatch.setattr(ib, "_FORCE_N_SPLIT", 16)
    monkeypatch.setattr(ib, "_CHUNK_CANDIDATES", 8)  # 2 splits per merge chunk: many chunks
    monkeypatch.setattr(ib, "_HEADS_MERGE", heads)  # both merges (the rule takes heads first for many chunks)
    monkeypatch.setattr(ib, "_SPLIT_FLOOR", floor)
    monkeypatch.setattr(ib, "_SPLIT_PIECES", pieces)
    monkeypatch.setattr(ib.IndexLaunch, "workspace", _poisoned_workspace)
    a = _case(hot, seq_lens, q_len)
    got = msa_sgl.index_topk(**{k: v.to(KERNEL_DEVICE) for k, v in a.items()}, config=CONFIG).cpu()
    want = reference.index_topk(**a, config=CONFIG)
    assert torch.equal(got, want), f"selection differs:\n{got}\nvs reference\n{want}"
    for b, blocks in enumerate(hot):  # and the planted blocks are what was chosen, by every token
        for t in range(q_len):
            assert set(blocks) <= set(got[b * q_len + t, 0].tolist())


@pytest.mark.parametrize("heads", [False, True], ids=["all_lists", "heads_first"])
@pytest.mark.parametrize("seq_lens,q_len,hot", [c[1:] for c in CASES[:3]], ids=[c[0] for c in CASES[:3]])
def test_init_block_keeps_the_selection(monkeypatch, seq_lens, q_len, hot, heads):
    # block 0 forced (num_init_blocks 1): candidates start at block 1; hot blocks past it
    config = MSAConfig(block_size=B, topk=5, num_init_blocks=1, num_local_blocks=1)
    monkeypatch.setattr(ib, "_FORCE_N_SPLIT", 16)
    monkeypatch.setattr(ib, "_CHUNK_CANDIDATES", 8)
    monkeypatch.setattr(ib, "_HEADS_MERGE", heads)
    monkeypatch.setattr(ib, "_SPLIT_FLOOR", 3)
    monkeypatch.setattr(ib, "_SPLIT_PIECES", 4)
    hot = [tuple(sorted({max(1, blk) for blk in blocks})) for blocks in hot]
    a = _case(hot, seq_lens, q_len)
    got = msa_sgl.index_topk(**{k: v.to(KERNEL_DEVICE) for k, v in a.items()}, config=config).cpu()
    want = reference.index_topk(**a, config=config)
    assert torch.equal(got, want), f"selection differs:\n{got}\nvs reference\n{want}"
    for b, blocks in enumerate(hot):
        assert set(blocks) <= set(got[b * q_len, 0].tolist())
