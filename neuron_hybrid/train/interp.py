"""Linear interpolation of tables at fixed points (a recorded voltage trace) as a sparse matrix.

Teacher forcing evaluates z_inf(V) and tau(V) (or x_inf, tau) on a voltage grid and interpolates them at every
sample of the recorded trace. The samples do not move, so the interpolation is a fixed linear map W (two
non-zeros per row): its gradient is one product with W^T, where indexing would scatter-add millions of rows one by
one (ca1 teacher forcing: about half the time of the interpolation's forward and backward pass). The trace fit's
current matching and shooting starts use the same map (there its cost was small next to the gate networks').
"""
import warnings

import torch


class _SparseMatmul(torch.autograd.Function):
    """W @ table for a fixed sparse W (its transpose given), differentiable in the dense table."""

    @staticmethod
    def forward(ctx, table, W, WT):
        ctx.WT = WT
        return W @ table

    @staticmethod
    def backward(ctx, grad):
        return ctx.WT @ grad.contiguous(), None, None


class FixedInterpolation:
    """Interpolation at N fixed points from a table of R rows: point n takes (1 - frac[n]) table[index[n]] +
    frac[n] table[index[n] + 1] (index clamped to R - 1). ``index`` (long) and ``frac`` [N] are flat."""

    def __init__(self, index: torch.Tensor, frac: torch.Tensor, n_rows: int):
        index, frac = index.reshape(-1), frac.reshape(-1)
        N = len(index)
        rows = torch.arange(N).repeat_interleave(2)
        cols = torch.stack([index, (index + 1).clamp_max(n_rows - 1)], 1).reshape(-1)
        vals = torch.stack([1 - frac, frac], 1).reshape(-1).detach()
        with warnings.catch_warnings():  # "sparse CSR support is in beta": products with a dense matrix are stable
            warnings.simplefilter("ignore", UserWarning)
            self.W = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (N, n_rows)).coalesce().to_sparse_csr()
            self.WT = torch.sparse_coo_tensor(torch.stack([cols, rows]), vals, (n_rows, N)).coalesce().to_sparse_csr()

    def __call__(self, table: torch.Tensor) -> torch.Tensor:
        """table [R, C] -> values at the points [N, C]."""
        return _SparseMatmul.apply(table, self.W, self.WT)
