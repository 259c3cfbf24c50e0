"""Fused SmoothCLAP loss: raw Triton kernels (forward and backward) that never hold a B x B matrix.

Math (Jing et al., "SmoothCLAP", arXiv 2601.12591, 2026; soft targets as in SoftCLIP, Gao et al., AAAI 2024;
the hard case is the CLIP / CLAP loss). X, Y are (B, d) audio / text features, s = logit_scale:

    S_ij   = s * X_i . Y_j                               logits_per_audio (logits_per_text = S^T)
    C^k_ij = cos(U_k,i, U_k,j) / tau_k                   k-th detached soft-target source; C^k is symmetric
    n^k_i  = lse_j C^k_ij                                source log-normaliser (row i == column i, by symmetry)
    Q^k_ij = exp(C^k_ij - n^k_i)                         row softmax of C^k
    y_ij   = (1 - beta) delta_ij + beta sum_k w_k Q^k_ij soft targets, rows sum to 1
    lse_row_i = lse_j S_ij,   lse_col_j = lse_i S_ij
    L = 1/(2B) [ sum_i (lse_row_i - sum_j y_ij S_ij) + sum_j (lse_col_j - sum_i y_ji S_ij) ]

Gradients (P^r_ij = exp(S_ij - lse_row_i), P^c_ij = exp(S_ij - lse_col_j), g = dL_out / dL):

    G_ij  = dL/dS_ij = g/(2B) [ P^r_ij + P^c_ij - y_ij - y_ji ]
          = g/(2B) [ P^r_ij + P^c_ij - 2 (1 - beta) delta_ij
                     - beta sum_k w_k (exp(C^k_ij - n^k_i) + exp(C^k_ij - n^k_j)) ]   (C^k symmetric)
    dX    = s G Y,      dY = s G^T X,      ds = sum_ij G_ij (X_i . Y_j)
    (ds uses the unscaled dot X_i . Y_j, never S_ij / s, so a tiny s loses nothing.)

Transpose symmetry. Swapping (X, Y) turns S into S^T, swaps lse_row / lse_col and leaves every C^k, n^k
unchanged; the formula for G becomes G^T. So ONE kernel written for "anchors A against candidates Bc"
(direction 0: A = X, Bc = Y; direction 1: A = Y, Bc = X) gives the row statistics in direction 0 and the
column statistics in direction 1, and dX = s G Y in direction 0, dY = s G^T X in direction 1. The direction
is the last grid axis, so each pass is a single launch.

Schedule (2 launches per loss evaluation, no atomics, no B x B or (B/BLOCK) x B buffer, deterministic):

* Forward, grid (cdiv(B, BLOCK_M), 2). A program owns BLOCK_M anchors and streams over all candidate
  blocks. Per (anchor block, candidate block) tile: 1 GEMM over d for S, and K GEMMs over d_k for C^k
  (skipped when NUM_SOURCES = 0, a constexpr: beta = 0 or no sources). Online (flash-style) reductions keep
  per anchor: the running max / sum for lse of S; per source the running max m_k, sum z_k = sum e^(C - m_k)
  and the target-weighted sum t_k = sum e^(C - m_k) S, rescaled together when m_k grows, so that
  sum_j Q^k_ij S_ij = t_k / z_k and n^k_i = m_k + log z_k come out of the same single sweep; and the
  diagonal S_ii (mask of the tile where row == column). Outputs: lse (2, B), per-anchor cross-entropy
  (2, B) (the launcher sums 2B numbers), and n^k (K, B) written once per anchor (direction 0 for the
  counted rows, direction 1 for counted columns that are not counted rows). Total work:
  2 B^2 d + 2 K B^2 d_k multiply-adds (the column direction recomputes S and C^k instead of exchanging
  partial column statistics between programs, which would need atomics or a (B/BLOCK) x B buffer).

* Backward, grid (cdiv(B, BLOCK_M), cdiv(d, BLOCK_DO), 2). A program owns BLOCK_M anchors and a BLOCK_DO
  slice of the output features; it recomputes each S / C^k tile from the O(B) statistics, forms G (the
  transposed G in direction 1) and accumulates G @ Bc[:, slice] in fp32 registers. Per tile: 1 GEMM for S,
  K GEMMs for C^k, 1 GEMM for the output. When d > BLOCK_DO the S / C^k tiles are recomputed once per
  output slice (d <= BLOCK_DO, the usual CLAP case up to the launcher's cap, needs no recomputation).
  ds: direction 0 with slice 0 also sums G_ij (X_i . Y_j) per anchor row into a (B,) buffer that the
  launcher reduces. Total: 4 B^2 d + 2 K B^2 d_k (one output slice). Alternative rejected: a single
  row-parallel pass writing dY with atomics (3 B^2 d) - fp32 atomics on all of dY from every program are
  contended and non-deterministic.

Precision. Products accumulate in fp32. fp32 inputs use input_precision=PRECISION ("ieee" by default; the
launcher passes "tf32" when TF32 is allowed). bf16 inputs run the bf16 tl.dot with fp32 accumulation, and G
is cast to bf16 for the output GEMM (as flash attention does with P); fp16 likewise. Sources are fp32 with
SRC_PRECISION ("ieee" for fp32 features, "tf32x3" for 16-bit ones, "tf32" when TF32 is allowed).
Triton's CPU interpreter computes a bf16 tl.dot wrongly, so the launcher sets the constexpr UPCAST when
TRITON_INTERPRET=1: every 16-bit tile is converted to fp32 before tl.dot there (a GPU runs the bf16 dot).

Counted anchors (distributed local loss, spec Sec. 3). row_lo..row_hi / col_lo..col_hi select the audio rows
and text columns whose cross-entropy enters the loss, divided by a given normaliser (1 / inv_count); every
anchor still contrasts with all B candidates and the soft targets use the whole batch. The forward launches
programs only for counted anchors. In the backward, G_ij = [i counted] (P^r - y)_ij + [j counted]
(P^c - y^T)_ij: statistics of uncounted anchors are loaded as +inf so their exp(...) terms vanish, and an
anchor block with no counted anchor loops over the counted candidates only, so a rank holding B_l of B
anchors does O(B B_l d) work. Default: everything counted, normaliser 2B.

Any B >= 1, d, d_k: rows / columns are masked; the contraction dims d, d_k are looped in BLOCK_D /
BLOCK_DK chunks with masked loads (zeros contribute nothing); output features are tiled by BLOCK_DO.
"""
import triton
import triton.language as tl


@triton.jit
def _dot_tile(a_ptr, b_ptr, offs_m, offs_n, mask_m, mask_n, dim,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
              UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """fp32 tile A[offs_m] . B[offs_n]^T of two contiguous (B, dim) matrices, contracted in BLOCK_D chunks."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    rows_a = offs_m.to(tl.int64) * dim
    rows_b = offs_n.to(tl.int64) * dim
    for d0 in range(0, dim, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        mask_d = offs_d < dim
        a = tl.load(a_ptr + rows_a[:, None] + offs_d[None, :], mask=mask_m[:, None] & mask_d[None, :], other=0.0)
        b = tl.load(b_ptr + rows_b[:, None] + offs_d[None, :], mask=mask_n[:, None] & mask_d[None, :], other=0.0)
        if UPCAST:  # interpreter only: its bf16 tl.dot is wrong, compute the same product in fp32
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, tl.trans(b), acc, input_precision=PRECISION)
    return acc


@triton.jit
def _online_soft_sum(c, s_safe, mask_n, m, z, t):
    """One candidate tile of the source-k online sweep for each anchor row.

    Keeps m = running max of C, z = sum exp(C - m), t = sum exp(C - m) * S; both sums are rescaled by
    exp(m_old - m_new) when the max grows. At the end sum_j Q_ij S_ij = t / z and n_i = m + log z.
    """
    c = tl.where(mask_n[None, :], c, float("-inf"))
    m_new = tl.maximum(m, tl.max(c, axis=1))
    alpha = tl.exp(m - m_new)
    e = tl.exp(c - m_new[:, None])
    z = z * alpha + tl.sum(e, axis=1)
    t = t * alpha + tl.sum(e * s_safe, axis=1)
    return m_new, z, t


@triton.jit
def smooth_clap_fwd_kernel(
    x_ptr, y_ptr, scale_ptr,            # X, Y (B, d) contiguous fp32/bf16; logit_scale (1,)
    u0_ptr, u1_ptr, u2_ptr,             # up to 3 row-normalised fp32 sources (B, d_k), contiguous
    dk0, dk1, dk2,                      # their feature sizes d_k
    lse_ptr,                            # out (2, B) fp32: [lse_row; lse_col]
    ce_ptr,                             # out (2, B) fp32: per-anchor cross-entropy [a2t rows; t2a columns]
    norm_ptr,                           # out (K, B) fp32: source log-normalisers n^k
    n_rows, dim,                        # B, d
    row_lo, row_hi, col_lo, col_hi,     # anchors counted: audio rows [row_lo, row_hi), texts [col_lo, col_hi)
    hard_coef,                          # 1 - beta
    c0, c1, c2,                         # beta * w_k
    it0, it1, it2,                      # 1 / tau_k
    NUM_SOURCES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DK: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr, SRC_PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    direction = tl.program_id(1)        # 0: anchors = audio rows of S; 1: anchors = text columns of S
    if direction == 0:
        a_ptr = x_ptr
        b_ptr = y_ptr
        a_lo = row_lo
        a_hi = row_hi
    else:
        a_ptr = y_ptr
        b_ptr = x_ptr
        a_lo = col_lo
        a_hi = col_hi
    s = tl.load(scale_ptr).to(tl.float32)
    offs_m = a_lo + pid * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < a_hi

    neg_inf = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    zero = tl.zeros((BLOCK_M,), tl.float32)
    m_s = neg_inf                        # running max of S over candidates
    l_s = zero                           # running sum exp(S - m_s)
    diag = zero                          # S of the anchor's own pair
    m0 = neg_inf
    z0 = zero
    t0 = zero
    m1 = neg_inf
    z1 = zero
    t1 = zero
    m2 = neg_inf
    z2 = zero
    t2 = zero
    for n0 in range(0, n_rows, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < n_rows
        s_tile = s * _dot_tile(a_ptr, b_ptr, offs_m, offs_n, mask_m, mask_n, dim,
                               BLOCK_M, BLOCK_N, BLOCK_D, UPCAST, PRECISION)
        s_safe = tl.where(mask_n[None, :], s_tile, 0.0)
        s_inf = tl.where(mask_n[None, :], s_tile, float("-inf"))
        m_new = tl.maximum(m_s, tl.max(s_inf, axis=1))
        l_s = l_s * tl.exp(m_s - m_new) + tl.sum(tl.exp(s_inf - m_new[:, None]), axis=1)
        m_s = m_new
        diag += tl.sum(tl.where(offs_m[:, None] == offs_n[None, :], s_safe, 0.0), axis=1)
        if NUM_SOURCES > 0:
            c = it0 * _dot_tile(u0_ptr, u0_ptr, offs_m, offs_n, mask_m, mask_n, dk0,
                                BLOCK_M, BLOCK_N, BLOCK_DK, False, SRC_PRECISION)
            m0, z0, t0 = _online_soft_sum(c, s_safe, mask_n, m0, z0, t0)
        if NUM_SOURCES > 1:
            c = it1 * _dot_tile(u1_ptr, u1_ptr, offs_m, offs_n, mask_m, mask_n, dk1,
                                BLOCK_M, BLOCK_N, BLOCK_DK, False, SRC_PRECISION)
            m1, z1, t1 = _online_soft_sum(c, s_safe, mask_n, m1, z1, t1)
        if NUM_SOURCES > 2:
            c = it2 * _dot_tile(u2_ptr, u2_ptr, offs_m, offs_n, mask_m, mask_n, dk2,
                                BLOCK_M, BLOCK_N, BLOCK_DK, False, SRC_PRECISION)
            m2, z2, t2 = _online_soft_sum(c, s_safe, mask_n, m2, z2, t2)

    lse = m_s + tl.log(l_s)
    # sum_j y_ij S_ij = (1 - beta) S_ii + beta sum_k w_k sum_j Q^k_ij S_ij   (anchor i, this direction)
    target_dot = hard_coef * diag
    # n^k_i is the same number in both directions: direction 1 stores it only for anchors direction 0 lacks
    write_norm = mask_m & ((direction == 0) | (offs_m < row_lo) | (offs_m >= row_hi))
    if NUM_SOURCES > 0:
        target_dot += c0 * (t0 / z0)
        tl.store(norm_ptr + offs_m, m0 + tl.log(z0), mask=write_norm)
    if NUM_SOURCES > 1:
        target_dot += c1 * (t1 / z1)
        tl.store(norm_ptr + n_rows + offs_m, m1 + tl.log(z1), mask=write_norm)
    if NUM_SOURCES > 2:
        target_dot += c2 * (t2 / z2)
        tl.store(norm_ptr + 2 * n_rows + offs_m, m2 + tl.log(z2), mask=write_norm)
    tl.store(lse_ptr + direction * n_rows + offs_m, lse, mask=mask_m)
    tl.store(ce_ptr + direction * n_rows + offs_m, lse - target_dot, mask=mask_m)


@triton.jit
def _source_targets(u_ptr, dk, inv_tau, coef, norm_ptr, offs_m, offs_n, mask_m, mask_n, in_a, in_b,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DK: tl.constexpr,
                    SRC_PRECISION: tl.constexpr):
    """beta w_k (Q^k_ij + Q^k_ji) = beta w_k (exp(C_ij - n_i) + exp(C_ij - n_j)) on one tile (C symmetric).

    Only counted anchors / candidates (in_a / in_b) have a term: n is loaded as +inf elsewhere."""
    c = inv_tau * _dot_tile(u_ptr, u_ptr, offs_m, offs_n, mask_m, mask_n, dk,
                            BLOCK_M, BLOCK_N, BLOCK_DK, False, SRC_PRECISION)
    n_a = tl.load(norm_ptr + offs_m, mask=in_a, other=float("inf"))
    n_b = tl.load(norm_ptr + offs_n, mask=in_b, other=float("inf"))
    return coef * (tl.exp(c - n_a[:, None]) + tl.exp(c - n_b[None, :]))


@triton.jit
def smooth_clap_bwd_kernel(
    x_ptr, y_ptr, scale_ptr, gout_ptr,  # X, Y (B, d); logit_scale (1,); upstream gradient dL_out (1,) fp32
    u0_ptr, u1_ptr, u2_ptr, dk0, dk1, dk2,
    lse_ptr, norm_ptr,                  # (2, B) and (K, B) fp32 statistics from the forward
    dx_ptr, dy_ptr,                     # out (B, d), dtype of X
    ds_ptr,                             # out (B,) fp32: sum_j G_ij (X_i . Y_j) per audio row i
    n_rows, dim, inv_count,             # B, d, 1 / normaliser (2B for the whole loss)
    row_lo, row_hi, col_lo, col_hi,     # anchors counted in the loss (see the forward)
    hard_coef, c0, c1, c2, it0, it1, it2,
    NUM_SOURCES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DO: tl.constexpr, BLOCK_DK: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr, SRC_PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_o = tl.program_id(1)            # which BLOCK_DO slice of the output features
    direction = tl.program_id(2)        # 0: dX = s G Y;  1: dY = s G^T X (same code, X and Y swapped)
    if direction == 0:
        a_ptr = x_ptr
        b_ptr = y_ptr
        out_ptr = dx_ptr
        a_lo = row_lo
        a_hi = row_hi
        b_lo = col_lo
        b_hi = col_hi
    else:
        a_ptr = y_ptr
        b_ptr = x_ptr
        out_ptr = dy_ptr
        a_lo = col_lo
        a_hi = col_hi
        b_lo = row_lo
        b_hi = row_hi
    s = tl.load(scale_ptr).to(tl.float32)
    g_scale = tl.load(gout_ptr).to(tl.float32) * inv_count
    offs_m = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < n_rows
    offs_o = pid_o * BLOCK_DO + tl.arange(0, BLOCK_DO)
    mask_o = offs_o < dim
    # Statistics outside the counted ranges are loaded as +inf, so their exp(...) terms vanish: a row term
    # P^r - y exists only for counted anchors a, a column term P^c - y^T only for counted candidates b.
    in_a = mask_m & (offs_m >= a_lo) & (offs_m < a_hi)
    lse_a = tl.load(lse_ptr + direction * n_rows + offs_m, mask=in_a, other=float("inf"))
    # A block without counted anchors only receives column terms: visit the counted candidates alone.
    block_counted = (pid * BLOCK_M < a_hi) & (pid * BLOCK_M + BLOCK_M > a_lo)
    n_start = tl.where(block_counted, 0, b_lo)
    n_end = tl.where(block_counted, n_rows, b_hi)

    acc = tl.zeros((BLOCK_M, BLOCK_DO), dtype=tl.float32)
    ds_acc = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for n0 in range(n_start, n_end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < n_end
        in_b = mask_n & (offs_n >= b_lo) & (offs_n < b_hi)
        lse_b = tl.load(lse_ptr + (1 - direction) * n_rows + offs_n, mask=in_b, other=float("inf"))
        dots = _dot_tile(a_ptr, b_ptr, offs_m, offs_n, mask_m, mask_n, dim,
                         BLOCK_M, BLOCK_N, BLOCK_D, UPCAST, PRECISION)
        s_tile = s * dots
        # P^r + P^c (both <= 1: each lse bounds its own row / column)
        g = tl.exp(s_tile - lse_a[:, None]) + tl.exp(s_tile - lse_b[None, :])
        # - (y_ij + y_ji): hard part 2 (1 - beta) on the diagonal, soft part per source
        is_diag = offs_m[:, None] == offs_n[None, :]
        g -= tl.where(is_diag & in_a[:, None], hard_coef, 0.0) + tl.where(is_diag & in_b[None, :], hard_coef, 0.0)
        if NUM_SOURCES > 0:
            g -= _source_targets(u0_ptr, dk0, it0, c0, norm_ptr, offs_m, offs_n, mask_m, mask_n,
                                 in_a, in_b,
                                 BLOCK_M, BLOCK_N, BLOCK_DK, SRC_PRECISION)
        if NUM_SOURCES > 1:
            g -= _source_targets(u1_ptr, dk1, it1, c1, norm_ptr + n_rows, offs_m, offs_n, mask_m, mask_n,
                                 in_a, in_b,
                                 BLOCK_M, BLOCK_N, BLOCK_DK, SRC_PRECISION)
        if NUM_SOURCES > 2:
            g -= _source_targets(u2_ptr, dk2, it2, c2, norm_ptr + 2 * n_rows, offs_m, offs_n, mask_m, mask_n,
                                 in_a, in_b,
                                 BLOCK_M, BLOCK_N, BLOCK_DK, SRC_PRECISION)
        g = tl.where(mask_m[:, None] & mask_n[None, :], g * g_scale, 0.0)   # G (or G^T), scaled by g/(2B)
        ds_acc += tl.sum(g * dots, axis=1)
        b = tl.load(b_ptr + offs_n.to(tl.int64)[:, None] * dim + offs_o[None, :],
                    mask=mask_n[:, None] & mask_o[None, :], other=0.0)
        if UPCAST:
            b = b.to(tl.float32)
        acc = tl.dot(g.to(b.dtype), b, acc, input_precision=PRECISION)

    out = s * acc
    tl.store(out_ptr + offs_m.to(tl.int64)[:, None] * dim + offs_o[None, :],
             out.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_o[None, :])
    tl.store(ds_ptr + offs_m, ds_acc, mask=mask_m & (direction == 0) & (pid_o == 0))
