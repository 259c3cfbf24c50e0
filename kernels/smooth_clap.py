"""Fused SmoothCLAP loss: raw Triton kernels that never hold a B x B matrix.

Math (Jing et al., "SmoothCLAP", arXiv 2601.12591, 2026; soft targets as in SoftCLIP, Gao et al., AAAI 2024;
beta = 0 is the CLIP / CLAP loss). X, Y are (B, d) audio / text features, s = logit_scale:

    S_ij   = s * X_i . Y_j                               logits_per_audio (logits_per_text = S^T)
    C^k_ij = cos(U_k,i, U_k,j) / tau_k                   k-th detached soft-target source; C^k is symmetric
    n^k_i  = lse_j C^k_ij                                source log-normaliser (row i == column i, by symmetry)
    y_ij   = (1 - beta) delta_ij + beta sum_k w_k exp(C^k_ij - n^k_i)      soft targets, rows sum to 1
    lse_row_i = lse_j S_ij,   lse_col_j = lse_i S_ij
    t_row_i = sum_j y_ij S_ij,   t_col_j = sum_i y_ji S_ij                  target-weighted logits
    L = 1/(2B) [ sum_i (lse_row_i - t_row_i) + sum_j (lse_col_j - t_col_j) ]

Gradients (P^r_ij = exp(S_ij - lse_row_i), P^c_ij = exp(S_ij - lse_col_j), g = dL_out / dL):

    G_ij = dL/dS_ij = g/(2B) [ P^r_ij + P^c_ij - y_ij - y_ji ]
         = g/(2B) [ P^r_ij + P^c_ij - 2 (1 - beta) delta_ij
                    - beta sum_k w_k (exp(C^k_ij - n^k_i) + exp(C^k_ij - n^k_j)) ]          (C^k symmetric)
    dX = s G Y,   dY = s G^T X,   ds = sum_ij G_ij (X_i . Y_j)   (the unscaled dot: a tiny s loses nothing)

Counted anchors (distributed local loss, spec Sec. 3): only the audio rows in [row_lo, row_hi) and the text
columns in [col_lo, col_hi) enter the loss (divided by a given normaliser); every anchor still contrasts
with all B candidates and the targets use the whole batch. Then G_ij = [i counted] (P^r - y)_ij +
[j counted] (P^c - y^T)_ij. The kernels load the statistics of uncounted anchors as +inf, so their exp(...)
terms vanish, and skip every tile that touches no counted row and no counted column.

Schedule. Work is counted in multiply-adds (MACs) at full ranges; the floor of any exact method is
4 B^2 d + 2 sum_k B^2 d_k: S once for the loss, S once more for G, the two output products G Y and G^T X,
and C^k once in each pass.

  1. source_lse_kernel (K > 0), grid (cdiv(B, BLOCK_M),): each program streams its anchors over all B
     candidates and keeps an online (max, sum) per source: n^k. sum_k B^2 d_k MACs.
  2. smooth_clap_fwd_kernel, grid (row groups, column groups): a program owns ROWS rows x COLS columns
     of S and visits them as BLOCK_M x BLOCK_N tiles, row blocks outer, column tiles inner. Per tile: S
     (B d per row, tl.dot over d in BLOCK_D chunks) and C^k; the row statistics (online max / sum of S,
     t_row) stay in registers over the inner loop and go to a (3, column groups, B) partial buffer; the
     column statistics of the tile are merged into a (3, row groups, B) partial buffer that only this
     program touches (read, combine, write: deterministic, no atomics). The launcher reduces the partials
     (O(B * groups)). B^2 d + sum_k B^2 d_k MACs: S is computed ONCE for both directions.
  3. smooth_clap_bwd_kernel (kernels/smooth_clap_bwd.py, which states its schedule, counts and every
     gradient formula), launched twice: dX over row blocks, dY over column blocks. Each program recomputes
     S and C^k tile by tile from lse_row / lse_col and n^k and accumulates its rows of the gradient in
     registers; it stores them once. 2 (2 B^2 d + sum_k B^2 d_k) MACs, no B x d pass per chunk.

  Total 5 B^2 d + 4 sum_k B^2 d_k: 1.25 x the floor for the hard loss, 1.52 x for two sources of d_k = 88
  and 768 at d = 768 (C^k runs in the log-normaliser pass, the forward and both backward launches).
  benchmarks/work_model.py counts MACs, exps, stored bytes and memory exactly from the launches. Memory:
  dX, dY, the sources' normalised copies and O(B * groups) forward partials; never B x B.

  Rejected: a forward that computes S once per direction (2 B^2 d, 1.34 x the floor with two sources);
  a backward that recomputes S per output slice (up to 6 B^2 d at d = 768); dY by fp32 atomics from every
  program (contended, non-deterministic); caching C^k or S (B x B); a G chunk in memory with cuBLAS
  products (the previous backward: at B = 65536, d = 768 each of ~100 row chunks added a B x d fp32 dY
  contribution to an accumulator, ~125 GB of traffic per forward + backward).

Precision. Tiles accumulate in fp32. Feature GEMMs: bf16 / fp16 tensor-core dots; fp32 features use
PRECISION ("tf32x3" on a GPU, close to fp32 and on tensor cores; "tf32" when the caller allows TF32; the
interpreter computes fp32 exactly). Source GEMMs take their operands as stored by the launcher, per source:
bf16 tiles (a bf16 dot) or fp32 tiles with SRC_PRECISION_k ("tf32" / "tf32x3" / "ieee") - the launcher
picks the cheapest that keeps the bf16 error budget (benchmarks/source_precision.py). Triton's CPU
interpreter computes a bf16 tl.dot wrongly, so with UPCAST (set only there) 16-bit tiles are converted to
fp32 before tl.dot: the product of the stored 16-bit values is then exact, as on tensor cores.

Any B >= 1, d, d_k: rows / columns are masked; the contraction dims are looped in BLOCK_D / BLOCK_DK_k
chunks with masked loads (zeros contribute nothing). BLOCK_DK_k is chosen per source to fit d_k
(88 -> 3 x 32 = 96, not 128).
"""
import triton
import triton.language as tl


@triton.jit
def _dot_tile(a_ptr, b_ptr, m0, n0, n_rows, dim,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
              UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """fp32 tile A[m0:m0+BLOCK_M] . B[n0:n0+BLOCK_N]^T of two contiguous (n_rows, dim) matrices, contracted
    in BLOCK_D chunks through block pointers (rows / columns past the end read as zeros)."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    a_blk = tl.make_block_ptr(a_ptr, (n_rows, dim), (dim, 1), (m0, 0), (BLOCK_M, BLOCK_D), (1, 0))
    b_blk = tl.make_block_ptr(b_ptr, (n_rows, dim), (dim, 1), (n0, 0), (BLOCK_N, BLOCK_D), (1, 0))
    for _ in range(0, dim, BLOCK_D):
        a = tl.load(a_blk, boundary_check=(0, 1), padding_option="zero")
        b = tl.load(b_blk, boundary_check=(0, 1), padding_option="zero")
        if UPCAST:  # interpreter only: its 16-bit tl.dot is wrong; the fp32 product of 16-bit values is exact
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, tl.trans(b), acc, input_precision=PRECISION)
        a_blk = tl.advance(a_blk, (0, BLOCK_D))
        b_blk = tl.advance(b_blk, (0, BLOCK_D))
    return acc


@triton.jit
def _source_tile(u_ptr, dk, inv_tau, m0, n0, n_rows,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DK: tl.constexpr,
                 UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """C^k tile: cos(U_i, U_j) / tau of unit rows U (fp32 or bf16, as stored by the launcher)."""
    return inv_tau * _dot_tile(u_ptr, u_ptr, m0, n0, n_rows, dk, BLOCK_M, BLOCK_N, BLOCK_DK, UPCAST, PRECISION)


@triton.jit
def _target_weights(c, coef, norm_ptr, offs_m, offs_n, in_a, in_b):
    """beta w_k exp(C_ij - n_i) [i counted] and beta w_k exp(C_ij - n_j) [j counted] on one tile."""
    n_a = tl.load(norm_ptr + offs_m, mask=in_a, other=float("inf"))
    n_b = tl.load(norm_ptr + offs_n, mask=in_b, other=float("inf"))
    return coef * tl.exp(c - n_a[:, None]), coef * tl.exp(c - n_b[None, :])


@triton.jit
def _source_sums(s_safe, u_ptr, dk, inv_tau, coef, norm_ptr, m0, n0, n_rows, offs_m, offs_n, in_a, in_b,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DK: tl.constexpr,
                 UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """One source's share of t_row (sum_j beta w_k Q_ij S_ij per row) and t_col (sum_i beta w_k Q_ji S_ij
    per column) on one tile, reduced at once so that no target tile stays live."""
    c = _source_tile(u_ptr, dk, inv_tau, m0, n0, n_rows, BLOCK_M, BLOCK_N, BLOCK_DK, UPCAST, PRECISION)
    w_row, w_col = _target_weights(c, coef, norm_ptr, offs_m, offs_n, in_a, in_b)
    return tl.sum(w_row * s_safe, axis=1), tl.sum(w_col * s_safe, axis=0)


@triton.jit
def _source_weight(u_ptr, dk, inv_tau, coef, norm_ptr, m0, n0, n_rows, offs_m, offs_n, in_a, in_b,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DK: tl.constexpr,
                   UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """One source's share of y_ij [i counted] + y_ji [j counted] on one tile (C^k symmetric)."""
    c = _source_tile(u_ptr, dk, inv_tau, m0, n0, n_rows, BLOCK_M, BLOCK_N, BLOCK_DK, UPCAST, PRECISION)
    w_row, w_col = _target_weights(c, coef, norm_ptr, offs_m, offs_n, in_a, in_b)
    return w_row + w_col


@triton.jit
def _online_lse(c, mask_n, m, z):
    """Merge one candidate tile into the running (max m, sum z = sum exp(C - m)) of each anchor row."""
    c = tl.where(mask_n[None, :], c, float("-inf"))
    m_new = tl.maximum(m, tl.max(c, axis=1))
    z = z * tl.exp(m - m_new) + tl.sum(tl.exp(c - m_new[:, None]), axis=1)
    return m_new, z


@triton.jit
def source_lse_kernel(
    u0_ptr, u1_ptr, u2_ptr,             # up to 3 unit-row sources (B, d_k), contiguous, fp32 or bf16
    dk0, dk1, dk2, it0, it1, it2,       # d_k and 1 / tau_k
    norm_ptr,                           # out (K, B) fp32: n^k
    n_rows, a_lo, a_hi,                 # B; anchors [a_lo, a_hi) get their n^k
    NUM_SOURCES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_DK0: tl.constexpr, BLOCK_DK1: tl.constexpr, BLOCK_DK2: tl.constexpr,
    SRC_PRECISION0: tl.constexpr, SRC_PRECISION1: tl.constexpr, SRC_PRECISION2: tl.constexpr,
    UPCAST: tl.constexpr,
):
    m_start = a_lo + tl.program_id(0) * BLOCK_M
    offs_m = m_start + tl.arange(0, BLOCK_M)
    mask_m = offs_m < a_hi
    m0 = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    z0 = tl.zeros((BLOCK_M,), tl.float32)
    m1 = m0
    z1 = z0
    m2 = m0
    z2 = z0
    for n0 in range(0, n_rows, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < n_rows
        c = _source_tile(u0_ptr, dk0, it0, m_start, n0, n_rows, BLOCK_M, BLOCK_N, BLOCK_DK0,
                         UPCAST, SRC_PRECISION0)
        m0, z0 = _online_lse(c, mask_n, m0, z0)
        if NUM_SOURCES > 1:
            c = _source_tile(u1_ptr, dk1, it1, m_start, n0, n_rows, BLOCK_M, BLOCK_N, BLOCK_DK1,
                             UPCAST, SRC_PRECISION1)
            m1, z1 = _online_lse(c, mask_n, m1, z1)
        if NUM_SOURCES > 2:
            c = _source_tile(u2_ptr, dk2, it2, m_start, n0, n_rows, BLOCK_M, BLOCK_N, BLOCK_DK2,
                             UPCAST, SRC_PRECISION2)
            m2, z2 = _online_lse(c, mask_n, m2, z2)
    tl.store(norm_ptr + offs_m, m0 + tl.log(z0), mask=mask_m)
    if NUM_SOURCES > 1:
        tl.store(norm_ptr + n_rows + offs_m, m1 + tl.log(z1), mask=mask_m)
    if NUM_SOURCES > 2:
        tl.store(norm_ptr + 2 * n_rows + offs_m, m2 + tl.log(z2), mask=mask_m)


@triton.jit
def smooth_clap_fwd_kernel(
    x_ptr, y_ptr, scale_ptr,            # X, Y (B, d) contiguous fp32/bf16/fp16; logit_scale (1,) fp32
    u0_ptr, u1_ptr, u2_ptr, dk0, dk1, dk2,
    norm_ptr,                           # (K, B) fp32 n^k from source_lse_kernel (read for counted anchors)
    row_part_ptr,                       # out (3, n_col_groups, B) fp32: per row (max, sum exp(S - max), t_row)
    col_part_ptr,                       # in/out (3, n_row_groups, B) fp32: per column (max, sum, t_col)
    n_rows, dim, rows_per_group, cols_per_group,
    row_lo, row_hi, col_lo, col_hi,     # counted anchors
    hard_coef, c0, c1, c2, it0, it1, it2,   # 1 - beta; beta w_k; 1 / tau_k
    NUM_SOURCES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_DK0: tl.constexpr, BLOCK_DK1: tl.constexpr, BLOCK_DK2: tl.constexpr,
    PRECISION: tl.constexpr,
    SRC_PRECISION0: tl.constexpr, SRC_PRECISION1: tl.constexpr, SRC_PRECISION2: tl.constexpr,
    UPCAST: tl.constexpr,
):
    rg = tl.program_id(0)
    cg = tl.program_id(1)
    n_row_groups = tl.num_programs(0)
    n_col_groups = tl.num_programs(1)
    s = tl.load(scale_ptr)
    r_start = rg * rows_per_group
    r_end = r_start + rows_per_group
    if r_end > n_rows:
        r_end = n_rows
    c_start = cg * cols_per_group
    c_end = c_start + cols_per_group
    if c_end > n_rows:
        c_end = n_rows
    for m0 in range(r_start, r_end, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        mask_m = offs_m < r_end
        in_a = mask_m & (offs_m >= row_lo) & (offs_m < row_hi)
        rows_counted = (m0 < row_hi) & (m0 + BLOCK_M > row_lo)
        m_r = tl.full((BLOCK_M,), float("-inf"), tl.float32)
        l_r = tl.zeros((BLOCK_M,), tl.float32)
        t_r = tl.zeros((BLOCK_M,), tl.float32)
        for n0 in range(c_start, c_end, BLOCK_N):
            if rows_counted | ((n0 < col_hi) & (n0 + BLOCK_N > col_lo)):
                offs_n = n0 + tl.arange(0, BLOCK_N)
                mask_n = offs_n < c_end
                in_b = mask_n & (offs_n >= col_lo) & (offs_n < col_hi)
                s_tile = s * _dot_tile(x_ptr, y_ptr, m0, n0, n_rows, dim, BLOCK_M, BLOCK_N, BLOCK_D, UPCAST,
                                       PRECISION)
                valid = mask_m[:, None] & mask_n[None, :]
                s_safe = tl.where(valid, s_tile, 0.0)
                s_inf = tl.where(valid, s_tile, float("-inf"))
                # rows: online max / sum over this program's columns
                m_new = tl.maximum(m_r, tl.max(s_inf, axis=1))
                l_r = l_r * tl.exp(m_r - m_new) + tl.sum(tl.exp(s_inf - m_new[:, None]), axis=1)
                m_r = m_new
                cm = tl.max(s_inf, axis=0)       # columns: this tile's max / sum, merged below
                cl = tl.sum(tl.exp(s_inf - cm[None, :]), axis=0)
                # targets: the hard part sits on the diagonal, S_ii, counted once per direction
                diag = tl.where(offs_m[:, None] == offs_n[None, :], s_safe, 0.0)
                t_r += hard_coef * tl.where(in_a, tl.sum(diag, axis=1), 0.0)
                ct = hard_coef * tl.where(in_b, tl.sum(diag, axis=0), 0.0)
                if NUM_SOURCES > 0:
                    r, q = _source_sums(s_safe, u0_ptr, dk0, it0, c0, norm_ptr, m0, n0, n_rows, offs_m, offs_n,
                                        in_a, in_b, BLOCK_M, BLOCK_N, BLOCK_DK0, UPCAST, SRC_PRECISION0)
                    t_r += r
                    ct += q
                if NUM_SOURCES > 1:
                    r, q = _source_sums(s_safe, u1_ptr, dk1, it1, c1, norm_ptr + n_rows, m0, n0, n_rows, offs_m,
                                        offs_n, in_a, in_b, BLOCK_M, BLOCK_N, BLOCK_DK1, UPCAST, SRC_PRECISION1)
                    t_r += r
                    ct += q
                if NUM_SOURCES > 2:
                    r, q = _source_sums(s_safe, u2_ptr, dk2, it2, c2, norm_ptr + 2 * n_rows, m0, n0, n_rows,
                                        offs_m, offs_n, in_a, in_b, BLOCK_M, BLOCK_N, BLOCK_DK2, UPCAST,
                                        SRC_PRECISION2)
                    t_r += r
                    ct += q
                # columns: merge the tile's (max, sum, t) into this program's partial of these columns
                col_ptrs = col_part_ptr + rg * n_rows + offs_n
                old_m = tl.load(col_ptrs, mask=mask_n, other=float("-inf"))
                old_l = tl.load(col_ptrs + n_row_groups * n_rows, mask=mask_n, other=0.0)
                old_t = tl.load(col_ptrs + 2 * n_row_groups * n_rows, mask=mask_n, other=0.0)
                new_m = tl.maximum(old_m, cm)
                new_l = old_l * tl.exp(old_m - new_m) + cl * tl.exp(cm - new_m)
                tl.store(col_ptrs, new_m, mask=mask_n)
                tl.store(col_ptrs + n_row_groups * n_rows, new_l, mask=mask_n)
                tl.store(col_ptrs + 2 * n_row_groups * n_rows, old_t + ct, mask=mask_n)
        row_ptrs = row_part_ptr + cg * n_rows + offs_m
        tl.store(row_ptrs, m_r, mask=mask_m)
        tl.store(row_ptrs + n_col_groups * n_rows, l_r, mask=mask_m)
        tl.store(row_ptrs + 2 * n_col_groups * n_rows, t_r, mask=mask_m)
