"""Triton kernels for the CUDA engine, where one fused kernel beats a chain of torch calls.

Imported only when a CUDA step asks for it (Triton comes with torch's CUDA wheels; torch's CPU
wheels may lack it). ``TRITON_INTERPRET=1`` runs the kernels on CPU tensors, which is how the tests
check them without a GPU.

``outer_update_``: a learning epoch whose every product is (post vector) x (pre vector) -- STDP,
Hebbian and predictive-coding rules -- adds ``A @ B`` to the weights (``A`` the post factors of all
products and replicas side by side, ``B`` the pre factors) and clips them to the rule's bounds. With
torch that is ``addmm`` (reads and writes the weights) then ``clamp_`` (reads and writes them again);
here each tile of the weights is read once, the tile of ``A @ B`` added and clipped in registers, and
written once: half the memory traffic, the least an update of every synapse can move.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

#: Tiles of the weight matrix per program and the step along the inner (replica x product) dimension.
BLOCK_M, BLOCK_N, BLOCK_K = 64, 64, 16


@triton.jit
def _outer_update_kernel(w_ptr, a_ptr, b_ptr, M, N, K, lo, hi,
                         BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr):
    g = tl.program_id(2).to(tl.int64)  # the replica group (1 for shared weights)
    # 64-bit offsets: one weight matrix may hold more than 2**31 synapses
    rows = (tl.program_id(0) * BM + tl.arange(0, BM)).to(tl.int64)
    cols = (tl.program_id(1) * BN + tl.arange(0, BN)).to(tl.int64)
    a_base = a_ptr + g * M * K
    b_base = b_ptr + g * K * N
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        ks = k0 + tl.arange(0, BK)
        a = tl.load(a_base + rows[:, None] * K + ks[None, :], mask=(rows[:, None] < M) & (ks[None, :] < K), other=0.0)
        b = tl.load(b_base + ks[:, None] * N + cols[None, :], mask=(ks[:, None] < K) & (cols[None, :] < N), other=0.0)
        acc += tl.dot(a, b, input_precision=PRECISION)
    inside = (rows[:, None] < M) & (cols[None, :] < N)
    w_tile = w_ptr + g * M * N + rows[:, None] * N + cols[None, :]
    w = tl.load(w_tile, mask=inside) + acc
    # where, not minimum/maximum: a NaN stays NaN, as with torch.clamp
    w = tl.where(w < lo, lo, tl.where(w > hi, hi, w))
    tl.store(w_tile, w, mask=inside)


def outer_update_(w: torch.Tensor, a: torch.Tensor, b: torch.Tensor, lo: float = -math.inf, hi: float = math.inf,
                  precision: str = "ieee") -> torch.Tensor:
    """In place, ``w[g] = clamp(w[g] + a[g] @ b[g], lo, hi)`` for every group ``g``; returns ``w``.

    Shapes: ``w`` ``(G, M, N)`` float32, contiguous; ``a`` ``(G, M, K)``; ``b`` ``(G, K, N)`` (``G`` 1 for
    weights shared by the replicas, whose products are then side by side along ``K``). ``precision``:
    Triton's ``input_precision`` of the product: ``"ieee"`` (float32 products, float32 sums) or
    ``"tf32x3"`` (tensor cores, three TF32 products per float32 product: about 2**-22 relative error).
    """
    if w.dtype != torch.float32 or not w.is_contiguous():
        raise ValueError(f"outer_update_: weights must be contiguous float32, got {w.dtype}")
    g, m, n = w.shape
    k = a.shape[-1]
    if a.shape != (g, m, k) or b.shape != (g, k, n):
        raise ValueError(f"outer_update_: shapes {tuple(w.shape)}, {tuple(a.shape)}, {tuple(b.shape)} do not match")
    a = a.to(torch.float32).contiguous()
    b = b.to(torch.float32).contiguous()
    grid = (triton.cdiv(m, BLOCK_M), triton.cdiv(n, BLOCK_N), g)
    _outer_update_kernel[grid](w, a, b, m, n, k, float(lo), float(hi),
                               BM=BLOCK_M, BN=BLOCK_N, BK=BLOCK_K, PRECISION=precision)
    return w
