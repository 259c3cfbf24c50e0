"""Fused sigmoid (SigLIP) loss: raw Triton kernels, forward and backward, that never hold the M x N logits.

Math (Zhai et al., "Sigmoid Loss for Language Image Pre-Training", ICCV 2023, Eq. 1; soft targets as in
fastclap.losses.siglip_chunked). M anchors A (d), N candidates C (d), s = logit_scale, b = logit_bias:

    l_ij = s A_i . C_j + b
    t_ij = hard [j == i + shift] + sum_k c_k exp((UA_k,i . UC_k,j - 1) * inv_tau_k)      (unit-row sources)
    row_i = sum_j [ softplus(l_ij) - t_ij l_ij ]                     forward output, the loss is sum_i row_i / M
    G_ij  = sigmoid(l_ij) - t_ij                                     backward, unscaled
    outputs of the backward: (G C)_i, and per row sum_j G_ij, sum_j G_ij (A_i . C_j)   (the launcher scales)

Every pair is independent: no normaliser, no online max, no statistics saved by the forward.

Schedule.
* Forward, grid (cdiv(M, BLOCK_M),). A program owns BLOCK_M anchors and streams over all candidate blocks; per
  tile 1 GEMM over d (+ K over d_k for soft targets), then the elementwise softplus and a row sum.
  Work 2 M N d (+ 2 K M N d_k) FLOPs; output (M,) fp32.
* Backward, grid (cdiv(R, BLOCK_M), cdiv(d, BLOCK_DO)), launched twice by the launcher: once with the anchors as
  rows (dA = s G C, plus the row sums for ds and db) and once with the roles of A and C swapped and shift
  negated (dC = s G^T A): G^T of (A, C) is G of (C, A), and the soft targets are symmetric in the pair. Per tile
  1 GEMM for l, K for the targets, 1 for the output slice; the logit tile is recomputed once per output slice
  when d > BLOCK_DO. Work 2 x (4 M N d + 2 K M N d_k) FLOPs for d <= BLOCK_DO. No atomics: deterministic.

Softplus is max(l, 0) + log1p(exp(-|l|)), with log1p(e) from a 4-term series below e = 1e-2 (fp32 log(1 + e)
loses e when the sum of many tiny negative-pair terms is what the loss is made of).

Precision. Products accumulate in fp32; fp32 inputs use input_precision PRECISION ("ieee", or "tf32" when the
launcher allows TF32). 16-bit inputs run the 16-bit tl.dot; G is cast to the input dtype for the output GEMM.
UPCAST (interpreter only, whose bf16 tl.dot is wrong) converts 16-bit tiles to fp32 first. Any M, N, d, d_k:
rows are masked; contraction dims are looped in BLOCK_D / BLOCK_DK chunks with masked loads.
"""
import triton
import triton.language as tl


@triton.jit
def _dot_rows(a_ptr, b_ptr, offs_m, offs_n, mask_m, mask_n, dim,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
              UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """fp32 tile A[offs_m] . B[offs_n]^T of two contiguous row-major matrices with ``dim`` columns."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    rows_a = offs_m.to(tl.int64) * dim
    rows_b = offs_n.to(tl.int64) * dim
    for d0 in range(0, dim, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        mask_d = offs_d < dim
        a = tl.load(a_ptr + rows_a[:, None] + offs_d[None, :], mask=mask_m[:, None] & mask_d[None, :], other=0.0)
        b = tl.load(b_ptr + rows_b[:, None] + offs_d[None, :], mask=mask_n[:, None] & mask_d[None, :], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, tl.trans(b), acc, input_precision=PRECISION)
    return acc


@triton.jit
def _targets(ua0, uc0, ua1, uc1, dk0, dk1, offs_m, offs_n, mask_m, mask_n, shift, hard, c0, c1, it0, it1,
             NUM_SOURCES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DK: tl.constexpr,
             SRC_PRECISION: tl.constexpr):
    """Target tile t (fp32): ``hard`` on the pairs j == i + shift, plus the soft-target kernel of each source."""
    t = tl.where(offs_n[None, :] == offs_m[:, None] + shift, hard, 0.0)
    if NUM_SOURCES >= 1:
        cos = _dot_rows(ua0, uc0, offs_m, offs_n, mask_m, mask_n, dk0, BLOCK_M, BLOCK_N, BLOCK_DK, False,
                        SRC_PRECISION)
        t += c0 * tl.exp((cos - 1.0) * it0)
    if NUM_SOURCES >= 2:
        cos = _dot_rows(ua1, uc1, offs_m, offs_n, mask_m, mask_n, dk1, BLOCK_M, BLOCK_N, BLOCK_DK, False,
                        SRC_PRECISION)
        t += c1 * tl.exp((cos - 1.0) * it1)
    return t


@triton.jit
def _softplus(x):
    e = tl.exp(-tl.abs(x))
    series = e * (1.0 - e * (0.5 - e * (0.3333333333333333 - e * 0.25)))
    return tl.maximum(x, 0.0) + tl.where(e < 1e-2, series, tl.log(1.0 + e))


@triton.jit
def siglip_fwd_kernel(
    a_ptr, c_ptr, scale_ptr, bias_ptr,      # A (M, d), C (N, d) contiguous; logit_scale, logit_bias (1,) fp32
    ua0, uc0, ua1, uc1, dk0, dk1,           # up to 2 unit-row fp32 sources for anchors / candidates, their d_k
    row_ptr,                                # out (M,) fp32: sum_j softplus(l_ij) - t_ij l_ij
    n_rows, n_cols, dim, shift,             # M, N, d, positive of row i at column i + shift
    hard, c0, c1, it0, it1,                 # hard-target weight, beta * w_k, 1 / tau_k
    HAS_BIAS: tl.constexpr, NUM_SOURCES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DK: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
    SRC_PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    s = tl.load(scale_ptr).to(tl.float32)
    b = tl.load(bias_ptr).to(tl.float32) if HAS_BIAS else 0.0
    offs_m = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < n_rows
    total = tl.zeros((BLOCK_M,), tl.float32)
    for n0 in range(0, n_cols, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < n_cols
        logits = s * _dot_rows(a_ptr, c_ptr, offs_m, offs_n, mask_m, mask_n, dim, BLOCK_M, BLOCK_N, BLOCK_D,
                               UPCAST, PRECISION) + b
        t = _targets(ua0, uc0, ua1, uc1, dk0, dk1, offs_m, offs_n, mask_m, mask_n, shift, hard, c0, c1, it0, it1,
                     NUM_SOURCES, BLOCK_M, BLOCK_N, BLOCK_DK, SRC_PRECISION)
        val = _softplus(logits) - t * logits
        total += tl.sum(tl.where(mask_m[:, None] & mask_n[None, :], val, 0.0), axis=1)
    tl.store(row_ptr + offs_m, total, mask=mask_m)


@triton.jit
def siglip_bwd_kernel(
    a_ptr, c_ptr, scale_ptr, bias_ptr,      # rows R of A (R, d) against the Q rows of C (Q, d)
    ua0, uc0, ua1, uc1, dk0, dk1,
    out_ptr,                                # out (R, d) fp32: (G C)_i, unscaled
    stats_ptr,                              # out (2, R) fp32: sum_j G_ij, sum_j G_ij A_i . C_j (WRITE_STATS)
    n_rows, n_cols, dim, shift, hard, c0, c1, it0, it1,
    HAS_BIAS: tl.constexpr, NUM_SOURCES: tl.constexpr, WRITE_STATS: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DO: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr, SRC_PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_d = tl.program_id(1)
    s = tl.load(scale_ptr).to(tl.float32)
    b = tl.load(bias_ptr).to(tl.float32) if HAS_BIAS else 0.0
    offs_m = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < n_rows
    offs_o = pid_d * BLOCK_DO + tl.arange(0, BLOCK_DO)
    mask_o = offs_o < dim
    acc = tl.zeros((BLOCK_M, BLOCK_DO), tl.float32)
    g_sum = tl.zeros((BLOCK_M,), tl.float32)
    g_dot = tl.zeros((BLOCK_M,), tl.float32)
    for n0 in range(0, n_cols, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < n_cols
        dots = _dot_rows(a_ptr, c_ptr, offs_m, offs_n, mask_m, mask_n, dim, BLOCK_M, BLOCK_N, BLOCK_D,
                         UPCAST, PRECISION)
        t = _targets(ua0, uc0, ua1, uc1, dk0, dk1, offs_m, offs_n, mask_m, mask_n, shift, hard, c0, c1, it0, it1,
                     NUM_SOURCES, BLOCK_M, BLOCK_N, BLOCK_DK, SRC_PRECISION)
        g = tl.sigmoid(s * dots + b) - t
        g = tl.where(mask_m[:, None] & mask_n[None, :], g, 0.0)
        cand = tl.load(c_ptr + offs_n.to(tl.int64)[:, None] * dim + offs_o[None, :],
                       mask=mask_n[:, None] & mask_o[None, :], other=0.0)
        if UPCAST:
            cand = cand.to(tl.float32)
        acc = tl.dot(g.to(cand.dtype), cand, acc, input_precision=PRECISION)
        if WRITE_STATS:
            g_sum += tl.sum(g, axis=1)
            g_dot += tl.sum(g * dots, axis=1)
    tl.store(out_ptr + offs_m.to(tl.int64)[:, None] * dim + offs_o[None, :], acc,
             mask=mask_m[:, None] & mask_o[None, :])
    if WRITE_STATS:
        if pid_d == 0:
            tl.store(stats_ptr + offs_m, g_sum, mask=mask_m)
            tl.store(stats_ptr + n_rows + offs_m, g_dot, mask=mask_m)
