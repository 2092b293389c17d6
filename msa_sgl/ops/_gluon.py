"""Triton's Gluon dialect as msa_sgl's Hopper kernels use it (kv_outer_ws, index_ws): the names
they take from it, and ``HAVE_GLUON``: whether this Triton has the Gluon they are written for
(``warp_specialize`` taking a list of (function, arguments) partitions: Triton 3.6 and 3.8 do).
Where it has not, only ``HAVE_GLUON`` (False) is defined and those kernels are never launched."""

from __future__ import annotations

import inspect

try:  # Gluon (triton.experimental.gluon) ships with Triton >= 3.5
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                                  warpgroup_mma_wait)
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
    # a barrier of a partition's warps: thread_barrier in Triton 3.6, barrier in 3.8
    warps_barrier = gl.thread_barrier if hasattr(gl, "thread_barrier") else gl.barrier
    # the partitions as a list of (function, arguments) - older Gluon took another form
    HAVE_GLUON = "functions_and_args" in inspect.signature(gl.warp_specialize).parameters
except (ImportError, AttributeError, TypeError, ValueError):  # pragma: no cover - older Triton
    HAVE_GLUON = False

__all__ = ["HAVE_GLUON", "gluon", "gl", "fence_async_shared", "mbarrier", "tma", "warpgroup_mma", "warpgroup_mma_wait",
           "TensorDescriptor", "warps_barrier"]
