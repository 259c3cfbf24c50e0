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

  1. smooth_clap_fwd_kernel, grid (row groups, column groups): a program owns ROWS rows x COLS columns
     of S and visits them as BLOCK_M x BLOCK_N tiles, row blocks outer, column tiles inner. Per tile: S
     (B d per row, tl.dot over d in BLOCK_D chunks) and C^k; the row statistics stay in registers over the
     inner loop and go to a (3 + 2K, column groups, B) partial buffer; the column statistics of the tile
     are merged into a (2 + K, row groups, B) partial buffer that only this program touches (read,
     combine, write: deterministic, no atomics). The launcher reduces the partials (O(B * groups)).
     B^2 d + sum_k B^2 d_k MACs: S and every C^k are computed ONCE for both directions and for the
     sources' log-normalisers.
     Sources without a log-normaliser pass: the rows of U_k are unit vectors (the launcher normalises
     them; zero rows are rejected), so max_j C^k_ij = C^k_ii = 1 / tau_k is known in advance (the stored
     16-bit rows move U_i.U_i by ~2^-8, i.e. C^k_ii - 1 / tau_k by < 0.01 / tau_k: no overflow, and the
     diagonal keeps each sum >= ~1, so terms that underflow are negligible beside it). With
     e_ij = exp(C^k_ij - 1 / tau_k) (one FFMA and one exp2 per element, no online max) the rows keep
     L^k_i = sum_j e_ij and A^k_i = sum_j e_ij S_ij, the columns A'^k_j = sum_i e_ij S_ij; then
         n^k_i = 1 / tau_k + log L^k_i                                 (saved for the backward)
         t_row_i = (1 - beta) S_ii + beta sum_k w_k A^k_i / L^k_i
         t_col_j = (1 - beta) S_jj + beta sum_k w_k A'^k_j / L^k_j     (C^k symmetric: row j's L^k is
                                                                        column j's)
     so the column partials need only A'^k beside (max, sum) of S: 2 + K fp32 per column per row block.
     A row block counted in either range visits every column (its L^k is whole); S_ii is a row statistic
     (the diagonal sits in the masked band tiles) that serves both directions' hard targets.
     Epilogue (the instructions per tile beside the tensor-core work, counted in the SASS by
     benchmarks/aot.py): statistics in base 2 (u = S log2(e); one MUFU.EX2 per exponential), interior
     tiles (full, off the diagonal) in a loop of their own without masks, bounds checks or diagonal.
     Exps per tile: (2 + K) BLOCK_M BLOCK_N + BLOCK_M + 2 BLOCK_N.
     Bytes stored at B = 65536, d = 768 (sm_90 schedule, K = 2: 128 x 32 tiles, 512 row blocks): the
     column partials 4 x 4 B x B x 512 = 0.54 GB (64-row tiles would double it), the row partials 7 x 4 B
     x B x 16 column groups = 0.03 GB.
  2. smooth_clap_bwd_kernel (kernels/smooth_clap_bwd.py, which states its schedule, counts and every
     gradient formula), launched twice: dX over row blocks, dY over column blocks. Each program recomputes
     S and C^k tile by tile from lse_row / lse_col and n^k and accumulates its rows of the gradient in
     registers; it stores them once. 2 (2 B^2 d + sum_k B^2 d_k) MACs, no B x d pass per chunk.

  Total 5 B^2 d + 3 sum_k B^2 d_k: 1.25 x the floor for the hard loss, 1.34 x for two sources of d_k = 88
  and 768 at d = 768 (C^k runs in the forward and both backward launches). benchmarks/work_model.py counts
  MACs, exps, stored bytes and memory exactly from the launches. Memory: dX, dY, the sources' normalised
  copies and O(B * groups) forward partials; never B x B.

  Rejected: a separate log-normaliser pass with an online max per source (one more sum_k B^2 d_k, 1.52 x
  the floor with two sources); a forward that computes S once per direction (one more B^2 d);
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
def _dot_tile_full(a_ptr, b_ptr, m0, n0, dim,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                   UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """_dot_tile for a tile wholly inside both matrices with dim a multiple of BLOCK_D: no bounds checks (the
    loads are plain pointer loads, no predicate per element)."""
    offs_d = tl.arange(0, BLOCK_D)
    a = a_ptr + (m0 + tl.arange(0, BLOCK_M)).to(tl.int64)[:, None] * dim + offs_d[None, :]
    b = b_ptr + (n0 + tl.arange(0, BLOCK_N)).to(tl.int64)[:, None] * dim + offs_d[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for _ in range(0, dim, BLOCK_D):
        a_t = tl.load(a)
        b_t = tl.load(b)
        if UPCAST:
            a_t = a_t.to(tl.float32)
            b_t = b_t.to(tl.float32)
        acc = tl.dot(a_t, tl.trans(b_t), acc, input_precision=PRECISION)
        a += BLOCK_D
        b += BLOCK_D
    return acc


@triton.jit
def _dot_any(a_ptr, b_ptr, m0, n0, n_rows, dim,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
             UPCAST: tl.constexpr, PRECISION: tl.constexpr, FULL: tl.constexpr):
    """_dot_tile_full when FULL (the caller guarantees the tile is inside and dim % BLOCK_D == 0), else
    _dot_tile."""
    if FULL:
        return _dot_tile_full(a_ptr, b_ptr, m0, n0, dim, BLOCK_M, BLOCK_N, BLOCK_D, UPCAST, PRECISION)
    else:
        return _dot_tile(a_ptr, b_ptr, m0, n0, n_rows, dim, BLOCK_M, BLOCK_N, BLOCK_D, UPCAST, PRECISION)


LOG2E: tl.constexpr = tl.constexpr(1.4426950408889634)   # exp(x) = 2^(x log2(e)): one MUFU.EX2, no multiply
LN2: tl.constexpr = tl.constexpr(0.6931471805599453)


@triton.jit
def _source_stats(u_ptr, dk, i2, m0, n0, n_rows, u, valid, l_k, a_k,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DK: tl.constexpr,
                  UPCAST: tl.constexpr, PRECISION: tl.constexpr, FULL: tl.constexpr, MASKED: tl.constexpr):
    """One source on one tile: e_ij = exp(C_ij - 1 / tau) = 2^(U_i.U_j i2 - i2), i2 = log2(e) / tau (one FFMA
    and one exp2 per element; exactly 1 where U_i.U_j = 1). Adds sum_j e_ij and sum_j e_ij u_ij to the rows'
    (l_k, a_k) and returns the columns' sum_i e_ij u_ij."""
    dots = _dot_any(u_ptr, u_ptr, m0, n0, n_rows, dk, BLOCK_M, BLOCK_N, BLOCK_DK, UPCAST, PRECISION, FULL)
    e = tl.exp2(dots * i2 - i2)
    if MASKED:
        e = tl.where(valid, e, 0.0)
    eu = e * u
    return l_k + tl.sum(e, axis=1), a_k + tl.sum(eu, axis=1), tl.sum(eu, axis=0)


@triton.jit
def _col_add(ptrs, value, mask):
    """Add one tile's column statistic (base 2) to this program's partial (natural units)."""
    old = tl.load(ptrs, mask=mask, other=0.0)
    tl.store(ptrs, old + value * LN2, mask=mask)


@triton.jit
def _fwd_tile(x_ptr, y_ptr, s2, u0_ptr, u1_ptr, u2_ptr, dk0, dk1, dk2, i0, i1, i2, col_ptrs, col_stride,
              m0, n0, n_rows, dim, r_end, c_end, offs_m, m_r, l_r, d_r, l0, a0, l1, a1, l2, a2,
              NUM_SOURCES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
              BLOCK_DK0: tl.constexpr, BLOCK_DK1: tl.constexpr, BLOCK_DK2: tl.constexpr,
              PRECISION: tl.constexpr,
              SRC_PRECISION0: tl.constexpr, SRC_PRECISION1: tl.constexpr, SRC_PRECISION2: tl.constexpr,
              UPCAST: tl.constexpr, MASKED: tl.constexpr, EVEN_D: tl.constexpr,
              EVEN_DK0: tl.constexpr, EVEN_DK1: tl.constexpr, EVEN_DK2: tl.constexpr):
    """One BLOCK_M x BLOCK_N tile of the forward, in base 2 (u = S log2(e)): the rows' running statistics
    (max, sum, diagonal, per source L^k and A^k) are returned, the columns' (max, sum, per source A'^k) are
    merged into this program's partial at col_ptrs. MASKED tiles (past the end of the rows / columns, or
    holding diagonal entries) carry the masks and the diagonal; the others (all but ~BLOCK_M / BLOCK_N + 2
    per row block) neither."""
    offs_n = n0 + tl.arange(0, BLOCK_N)
    mask_n = offs_n < c_end
    u = s2 * _dot_any(x_ptr, y_ptr, m0, n0, n_rows, dim, BLOCK_M, BLOCK_N, BLOCK_D, UPCAST, PRECISION,
                      EVEN_D and not MASKED)
    valid = (offs_m < r_end)[:, None] & mask_n[None, :]
    if MASKED:
        u_max = tl.where(valid, u, float("-inf"))
        u = tl.where(valid, u, 0.0)
    else:
        u_max = u
    m_new = tl.maximum(m_r, tl.max(u_max, axis=1))
    l_r = l_r * tl.exp2(m_r - m_new) + tl.sum(tl.exp2(u_max - m_new[:, None]), axis=1)
    m_r = m_new
    cm = tl.max(u_max, axis=0)
    cl = tl.sum(tl.exp2(u_max - cm[None, :]), axis=0)
    ptrs = col_ptrs + offs_n
    if NUM_SOURCES > 0:
        l0, a0, q = _source_stats(u0_ptr, dk0, i0, m0, n0, n_rows, u, valid, l0, a0, BLOCK_M, BLOCK_N, BLOCK_DK0,
                                  UPCAST, SRC_PRECISION0, EVEN_DK0 and not MASKED, MASKED)
        _col_add(ptrs + 2 * col_stride, q, mask_n)
    if NUM_SOURCES > 1:
        l1, a1, q = _source_stats(u1_ptr, dk1, i1, m0, n0, n_rows, u, valid, l1, a1, BLOCK_M, BLOCK_N, BLOCK_DK1,
                                  UPCAST, SRC_PRECISION1, EVEN_DK1 and not MASKED, MASKED)
        _col_add(ptrs + 3 * col_stride, q, mask_n)
    if NUM_SOURCES > 2:
        l2, a2, q = _source_stats(u2_ptr, dk2, i2, m0, n0, n_rows, u, valid, l2, a2, BLOCK_M, BLOCK_N, BLOCK_DK2,
                                  UPCAST, SRC_PRECISION2, EVEN_DK2 and not MASKED, MASKED)
        _col_add(ptrs + 4 * col_stride, q, mask_n)
    if MASKED:   # the diagonal u_ii: the hard targets of both directions, applied by the launcher
        d_r += tl.sum(tl.where(offs_m[:, None] == offs_n[None, :], u, 0.0), axis=1)
    old_m = tl.load(ptrs, mask=mask_n, other=float("-inf")) * LOG2E   # the partials hold natural units
    old_l = tl.load(ptrs + col_stride, mask=mask_n, other=0.0)
    new_m = tl.maximum(old_m, cm)
    tl.store(ptrs, new_m * LN2, mask=mask_n)
    tl.store(ptrs + col_stride, old_l * tl.exp2(old_m - new_m) + cl * tl.exp2(cm - new_m), mask=mask_n)
    return m_r, l_r, d_r, l0, a0, l1, a1, l2, a2


@triton.jit
def smooth_clap_fwd_kernel(
    x_ptr, y_ptr, scale_ptr,            # X, Y (B, d) contiguous fp32/bf16/fp16; logit_scale (1,) fp32
    u0_ptr, u1_ptr, u2_ptr, dk0, dk1, dk2,
    row_part_ptr,                       # out (3 + 2K, n_col_groups, B) fp32: per row (max, sum exp(S - max),
                                        #   S_ii, then per source L^k, A^k)
    col_part_ptr,                       # in/out (2 + K, n_row_groups, B) fp32: per column (max, sum, A'^k)
    n_rows, dim, rows_per_group, cols_per_group,
    row_lo, row_hi, col_lo, col_hi,     # counted anchors
    it0, it1, it2,                      # 1 / tau_k
    NUM_SOURCES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_DK0: tl.constexpr, BLOCK_DK1: tl.constexpr, BLOCK_DK2: tl.constexpr,
    PRECISION: tl.constexpr,
    SRC_PRECISION0: tl.constexpr, SRC_PRECISION1: tl.constexpr, SRC_PRECISION2: tl.constexpr,
    UPCAST: tl.constexpr,
    EVEN_D: tl.constexpr = False,       # d % BLOCK_D == 0: interior tiles load without bounds checks
    EVEN_DK0: tl.constexpr = False, EVEN_DK1: tl.constexpr = False, EVEN_DK2: tl.constexpr = False,
):
    """Row and column statistics of S and of the sources for one (row group, column group); see the module
    doc.

    Per row block the column tiles run in two phases (one ``tl.static_range(2)``, unrolled at compile time
    into two loops): the interior ones (full, off the diagonal) with no mask and no diagonal term, then the
    others (the diagonal band, the partial last tile, every tile of a partial row block) with both. Statistics run in base 2 (u = S log2(e), exp2 = one MUFU.EX2) and are
    stored in natural units. With sources, a row block counted in either range visits every column (its
    L^k_i is the whole row sum: n^k_i of a counted column j is L^k_j of row j)."""
    rg = tl.program_id(0)
    cg = tl.program_id(1)
    n_row_groups = tl.num_programs(0)
    n_col_groups = tl.num_programs(1)
    s2 = tl.load(scale_ptr) * LOG2E
    i0 = it0 * LOG2E
    i1 = it1 * LOG2E
    i2 = it2 * LOG2E
    r_start = rg * rows_per_group
    r_end = tl.minimum(r_start + rows_per_group, n_rows)
    c_start = cg * cols_per_group
    c_end = tl.minimum(c_start + cols_per_group, n_rows)
    col_ptrs = col_part_ptr + rg * n_rows
    col_stride = n_row_groups * n_rows
    n_tiles = tl.cdiv(c_end - c_start, BLOCK_N)
    for m0 in range(r_start, r_end, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        mask_m = offs_m < r_end
        rows_counted = (m0 < row_hi) & (m0 + BLOCK_M > row_lo)
        if NUM_SOURCES > 0:
            rows_counted = rows_counted | ((m0 < col_hi) & (m0 + BLOCK_M > col_lo))
        m_r = tl.full((BLOCK_M,), float("-inf"), tl.float32)
        l_r = tl.zeros((BLOCK_M,), tl.float32)
        d_r = tl.zeros((BLOCK_M,), tl.float32)
        l0 = tl.zeros((BLOCK_M,), tl.float32)   # the sources' row sums (unused slots: never stored)
        a0 = l0
        l1 = l0
        a1 = l0
        l2 = l0
        a2 = l0
        # interior tiles: [0, n_full) less the diagonal band [band_lo, band_hi) (tile indices)
        n_full = tl.where(m0 + BLOCK_M <= r_end, (c_end - c_start) // BLOCK_N, 0)
        d_lo = tl.maximum(m0, c_start)
        d_hi = tl.minimum(m0 + BLOCK_M, c_end)
        band_lo = tl.minimum(tl.where(d_lo < d_hi, (d_lo - c_start) // BLOCK_N, n_full), n_full)
        band_hi = tl.minimum(tl.where(d_lo < d_hi, tl.cdiv(d_hi - c_start, BLOCK_N), n_full), n_full)
        band = band_hi - band_lo
        # phase 0: interior tiles (no masks, unchecked loads); phase 1: the band and the last, partial tiles
        for masked in tl.static_range(2):
            for i in range(0, (band + n_tiles - n_full) if masked else (n_full - band)):
                if masked:
                    n0 = c_start + tl.where(i < band, band_lo + i, n_full + i - band) * BLOCK_N
                else:
                    n0 = c_start + (i + tl.where(i >= band_lo, band, 0)) * BLOCK_N
                if rows_counted | ((n0 < col_hi) & (n0 + BLOCK_N > col_lo)):
                    m_r, l_r, d_r, l0, a0, l1, a1, l2, a2 = _fwd_tile(
                        x_ptr, y_ptr, s2, u0_ptr, u1_ptr, u2_ptr, dk0, dk1, dk2, i0, i1, i2, col_ptrs, col_stride,
                        m0, n0, n_rows, dim, r_end, c_end, offs_m, m_r, l_r, d_r, l0, a0, l1, a1, l2, a2,
                        NUM_SOURCES, BLOCK_M, BLOCK_N, BLOCK_D,
                        BLOCK_DK0, BLOCK_DK1, BLOCK_DK2, PRECISION, SRC_PRECISION0, SRC_PRECISION1, SRC_PRECISION2,
                        UPCAST, masked == 1, EVEN_D and masked == 0, EVEN_DK0 and masked == 0,
                        EVEN_DK1 and masked == 0, EVEN_DK2 and masked == 0)
        row_ptrs = row_part_ptr + cg * n_rows + offs_m
        stride = n_col_groups * n_rows
        tl.store(row_ptrs, m_r * LN2, mask=mask_m)
        tl.store(row_ptrs + stride, l_r, mask=mask_m)
        tl.store(row_ptrs + 2 * stride, d_r * LN2, mask=mask_m)
        if NUM_SOURCES > 0:
            tl.store(row_ptrs + 3 * stride, l0, mask=mask_m)
            tl.store(row_ptrs + 4 * stride, a0 * LN2, mask=mask_m)
        if NUM_SOURCES > 1:
            tl.store(row_ptrs + 5 * stride, l1, mask=mask_m)
            tl.store(row_ptrs + 6 * stride, a1 * LN2, mask=mask_m)
        if NUM_SOURCES > 2:
            tl.store(row_ptrs + 7 * stride, l2, mask=mask_m)
            tl.store(row_ptrs + 8 * stride, a2 * LN2, mask=mask_m)
