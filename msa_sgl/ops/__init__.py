"""Triton kernels (index branch, main branch; prefill and decode). Empty until they land:
until then msa_sgl.api runs the float64 reference."""
