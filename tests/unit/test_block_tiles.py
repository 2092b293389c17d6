"""metadata.build_block_tiles against a plain-Python build of the same reverse index: entry keys,
stable sort, runs of equal keys cut into tiles of ``tokens_per_tile``, each tile's row of
``tile_info`` (page clamped into the cache) and of ``tile_entries`` (zeros past its entries),
and zeros in every row of the grid that holds no tile. Exact equality: the kernels' metadata
has one right answer. Random selections with empty slots and ids past the query's block, an
empty request, page ids outside the cache, several 1024-entry programs, runs crossing them, no
rows, one entry."""

import pytest
import torch

from harness.impls import KERNEL_DEVICE
from msa_sgl.ops.metadata import TILE_INFO_FIELDS, build_block_tiles, token_requests

# an interpreter warning (integer division by zero in masked lanes: the empty pass once did) fails
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _reference(topk_idx, cu, seq_lens, page_table, num_pages, row_lo, row_hi, g_lo, ng, mq, block, q_window,
               skip_dense, grid):
    """BlockTiles' fields by loops over the entries (MSA.md section 3: query t of request b sits at
    seq_len - q_len + (t - q_start) and may attend blocks 0..pos // block)."""
    _, _, topk = topk_idx.shape
    batch, max_pages = page_table.shape
    rows = row_hi - row_lo
    q_window = q_window if 0 < q_window < rows else max(1, rows)
    n_win = -(-rows // q_window)
    n_keys = topk_idx.shape[1] * n_win * batch * max_pages
    req_of = [max(b for b in range(batch) if b == 0 or cu[b] <= t) for t in range(topk_idx.shape[0])]
    keys = []
    for t in range(row_lo, row_hi):
        b = req_of[t]
        q_len = cu[b + 1] - cu[b]
        pos = seq_lens[b] - q_len + (t - cu[b])
        for g in range(g_lo, g_lo + ng):
            for s in range(topk):
                sel = int(topk_idx[t, g, s])
                valid = 0 <= sel <= pos // block and not (skip_dense and pos // block < topk)
                w = (t - row_lo) // q_window
                keys.append(((g * n_win + w) * batch + b) * max_pages + sel if valid else n_keys)
    order = sorted(range(len(keys)), key=lambda e: keys[e])  # Python's sort is stable
    sorted_key = [keys[e] for e in order]
    info = [[0] * len(TILE_INFO_FIELDS) for _ in range(grid)]
    entries = [[0] * mq for _ in range(grid)]
    tile, i = 0, 0
    while i < len(sorted_key) and sorted_key[i] != n_keys:
        end = i
        while end < len(sorted_key) and sorted_key[end] == sorted_key[i]:
            end += 1
        for first in range(i, end, mq):
            n = min(mq, end - first)
            k = sorted_key[first]
            blk, gb = k % max_pages, k // max_pages
            b = gb % batch
            page = min(max(int(page_table[b, blk]), 0), num_pages - 1)
            info[tile] = [first, n, blk, gb // batch // n_win, page, cu[b], cu[b + 1] - cu[b], seq_lens[b]]
            entries[tile][:n] = order[first:first + n]
            tile += 1
        i = end
    return sorted_key, order, info, entries


def _case(q_lens, seq_lens, topk, hkv, block, seed):
    g = torch.Generator().manual_seed(seed)
    cu = [0]
    for n in q_lens:
        cu.append(cu[-1] + n)
    max_pages = max(-(-s // block) for s in seq_lens)
    num_pages = 3 * max_pages
    topk_idx = torch.randint(-1, max_pages + 1, (cu[-1], hkv, topk), generator=g, dtype=torch.int32)
    page_table = torch.randint(-2, num_pages + 2, (len(q_lens), max_pages), generator=g, dtype=torch.int32)
    return cu, topk_idx, page_table, num_pages, max_pages


CASES = {
    # name: (q_lens, seq_lens, topk, hkv, block, mq, rows (None: all), groups (g_lo, ng), q_window, skip_dense)
    "one_request_mq8": ([37], [300], 8, 4, 16, 8, None, (0, 4), 0, False),
    "empty_request_mq4_windows": ([20, 0, 30], [90, 40, 200], 4, 2, 16, 4, None, (0, 2), 16, False),
    "three_programs_mq1": ([45, 30], [400, 64], 8, 4, 16, 1, None, (0, 4), 0, False),
    "runs_longer_than_tile_mq4": ([80], [96], 4, 2, 8, 4, None, (0, 2), 0, False),
    "one_group_mq128": ([150], [300], 4, 1, 16, 128, None, (0, 1), 0, False),
    "rows_and_groups_of_a_pass": ([33, 41], [250, 41], 8, 4, 16, 8, (10, 60), (1, 2), 0, True),
    "no_rows": ([12], [100], 4, 2, 16, 8, (5, 5), (0, 2), 0, False),
    # E == 1: the JIT passes it as a constexpr int (tests/unit/test_hopper_compile.py compiles that)
    "one_entry": ([1], [40], 1, 1, 16, 4, None, (0, 1), 0, False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_block_tiles_match_python(name):
    q_lens, seq_lens, topk, hkv, block, mq, rows, (g_lo, ng), q_window, skip_dense = CASES[name]
    cu, topk_idx, page_table, num_pages, max_pages = _case(q_lens, seq_lens, topk, hkv, block, seed=len(name))
    if name == "one_entry":
        topk_idx.fill_(1)  # valid: block 1 of the query's 3
    total_q = cu[-1]
    row_lo, row_hi = rows if rows is not None else (0, total_q)
    dev = KERNEL_DEVICE
    cu_t = torch.tensor(cu, dtype=torch.int32, device=dev)
    seq_t = torch.tensor(seq_lens, dtype=torch.int32, device=dev)
    tiles = build_block_tiles(topk_idx.to(dev), cu_t, seq_t, token_requests(cu_t, total_q), row_lo, row_hi,
                              len(q_lens), max_pages, block, mq, page_table.to(dev), num_pages, q_window, g_lo, ng,
                              skip_dense=skip_dense)
    sorted_key, order, info, entries = _reference(topk_idx, cu, seq_lens, page_table, num_pages, row_lo, row_hi,
                                                  g_lo, ng, mq, block, q_window, skip_dense, tiles.grid)
    assert tiles.sorted_key.cpu().tolist() == sorted_key
    assert tiles.order.cpu().tolist() == order
    got_info = tiles.tile_info.cpu().tolist()
    for r, (got, want) in enumerate(zip(got_info, info)):
        assert got == want, f"tile_info row {r}: got {dict(zip(TILE_INFO_FIELDS, got))}, want {dict(zip(TILE_INFO_FIELDS, want))}"
    got_e = tiles.tile_entries.cpu().tolist()
    for r, (got, want) in enumerate(zip(got_e, entries)):
        assert got == want, f"tile_entries row {r}: got {got}, want {want}"
    n_tiles = sum(row[1] > 0 for row in info)
    if name == "no_rows":
        assert tiles.grid == 1 and n_tiles == 0
    elif name == "one_entry":
        assert tiles.grid == 1 and info[0][:2] == [0, 1]
    else:  # the case reaches what it is for: partly filled tiles and rows of no tile
        assert 0 < n_tiles < tiles.grid, (n_tiles, tiles.grid)
        assert mq == 1 or any(0 < row[1] < mq for row in info), "no partly filled tile"
        same_run = [a[2:4] == b[2:4] and a[5] == b[5] for a, b in zip(info, info[1:]) if a[1] and b[1]]
        assert name != "runs_longer_than_tile_mq4" or any(same_run), "no run longer than a tile"
