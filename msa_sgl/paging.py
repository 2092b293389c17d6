"""Page-table views of SGLang's flat token-slot pools (no copies).

SGLang keeps K, V and index keys in flat pools ``[num_slots, H, D]`` addressed by token slot,
and a ``req_to_token[req_pool_idx, position] -> slot`` map. With a page size equal to the MSA
block size, slot ``s`` lives in physical page ``s // block_size`` at offset ``s % block_size``,
and the tokens of one logical block of a request fill one page in order. msa_sgl therefore
reads the pools as ``[num_pages, block_size, H, D]`` views and needs one page id per block.
"""

from __future__ import annotations

import torch

__all__ = ["paged_view", "page_table_from_req_to_token"]


def paged_view(buffer: torch.Tensor, block_size: int) -> torch.Tensor:
    """``[num_slots, *rest]`` -> ``[num_slots // block_size, block_size, *rest]`` (a view)."""
    if not isinstance(buffer, torch.Tensor) or buffer.dim() < 1:
        raise ValueError(f"buffer: expected a tensor of rank >= 1, got {type(buffer).__name__}")
    if not buffer.is_contiguous():
        raise ValueError(f"buffer: expected a contiguous slot pool, got strides {tuple(buffer.stride())}")
    num_slots = buffer.shape[0]
    if num_slots % block_size != 0:
        raise ValueError(
            f"buffer: expected the number of slots shape[0] to be a multiple of block_size = {block_size}, got {num_slots}"
        )
    return buffer.view(num_slots // block_size, block_size, *buffer.shape[1:])


def page_table_from_req_to_token(
    req_to_token: torch.Tensor, req_pool_indices: torch.Tensor, block_size: int, max_pages: int
) -> torch.Tensor:
    """int32 ``[batch, max_pages]``: physical page of every logical block of each request.

    ``req_to_token``: int ``[max_reqs, max_context]`` slot ids; ``req_pool_indices``: int ``[batch]``.
    Reads the slot of the first token of each block (``req_to_token[r, i * block_size]``), on the
    device, without a synchronisation; entries past a request's length hold whatever the map
    holds there and are never read by the kernels. SGLang's map is ``context_len + 4 (+ draft
    tokens)`` wide, rarely a multiple of the block size: ``max_pages = ceil(width / block_size)``
    covers it (every block must start inside the map). Page alignment (every block of a request is one whole page) is SGLang's
    allocator's guarantee at page size == block size; it is not checked here.
    """
    if req_to_token.dim() != 2:
        raise ValueError(f"req_to_token: expected rank 2 [max_reqs, max_context], got shape {tuple(req_to_token.shape)}")
    if req_pool_indices.dim() != 1:
        raise ValueError(f"req_pool_indices: expected rank 1 [batch], got shape {tuple(req_pool_indices.shape)}")
    if max_pages < 0 or (max_pages - 1) * block_size >= req_to_token.shape[1]:
        raise ValueError(
            f"max_pages: expected every block to start inside req_to_token, (max_pages - 1) * block_size < "
            f"req_to_token.shape[1] = {req_to_token.shape[1]}, got max_pages {max_pages} with block_size {block_size}"
        )
    first_slots = req_to_token[req_pool_indices.long(), : max_pages * block_size : block_size]
    return torch.div(first_slots, block_size, rounding_mode="floor").to(torch.int32).contiguous()
