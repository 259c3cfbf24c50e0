"""Backward of the fused SmoothCLAP loss: one Triton kernel, launched twice, that never stores a tile of G.

Math: kernels/smooth_clap.py (its header). With P^r_ij = exp(S_ij - lse_row_i), P^c_ij = exp(S_ij - lse_col_j),
soft targets y_ij = (1 - beta) delta_ij + beta sum_k w_k exp(C^k_ij - n^k_i) and g = dL_out / dL:

    G_ij = dL/dS_ij = g / N [ [i counted] (P^r_ij - y_ij) + [j counted] (P^c_ij - y_ji) ]     (N: normaliser)
    dX_i = s sum_j G_ij Y_j        dY_j = s sum_i G_ij X_i        ds = sum_ij G_ij (X_i . Y_j)

Both products have the same shape once the roles are named: for anchors A (the rows whose gradient a launch
computes) and candidates Bc (the other modality),

    dA_a = s sum_b G^A_ab Bc_b,   G^A_ab = g / N [ [a counted] (exp(s A_a.Bc_b - lse_A_a) - y_ab)
                                                  + [b counted] (exp(s A_a.Bc_b - lse_B_b) - y_ba) ]

and y_ab + y_ba only uses C^k_ab = C^k_ba (symmetric) with n^k_a, n^k_b. So ``smooth_clap_bwd_kernel`` runs
once with (A, Bc) = (X, Y), (lse_A, lse_B) = (lse_row, lse_col), the row range counted on A (dX, and ds), and
once with (Y, X), (lse_col, lse_row) and the ranges swapped (dY = s G^T X). No atomics, no partial gradient
buffers: each program owns BLOCK_M anchors, visits the candidates in a fixed order and writes its rows once
(deterministic).

Schedule (FlashAttention-2's backward with one output per launch). Grid (cdiv(B, BLOCK_M), d groups); a program
holds NUM_SLICES (<= 6) fp32 accumulators of BLOCK_M x SLICE_D (the columns of its d group of the output), and
for every BLOCK_N block of candidates:
  1. recomputes the S tile, s A_a . Bc_b, tl.dot over d in BLOCK_D chunks (BLOCK_M BLOCK_N d MACs),
  2. recomputes each C^k tile (BLOCK_M BLOCK_N d_k MACs) and forms G, in base 2: u = S log2(e), and
     P^r = 2^(u - lse_A log2(e)), beta w_k exp(C^k - n^k) = 2^(U_a.U_b log2(e) / tau_k - (n^k log2(e) -
     log2(beta w_k))) - one FFMA and one MUFU.EX2 per exponential (2 + 2K per element), the anchors' offsets
     loaded once per program - and casts it to the features' dtype (fp16: times G_SCALE = 2^14, see below),
  3. acc_slice += G_tile @ Bc_b[:, slice] for its NUM_SLICES slices of SLICE_D columns (BLOCK_M BLOCK_N
     NUM_SLICES SLICE_D MACs),
then scales by s g / (N G_SCALE) and stores its BLOCK_M x (its d columns) rows of dA once. The candidate blocks
split in two loops as in the forward: the interior ones (full, off the diagonal: all but ~BLOCK_M / BLOCK_N + 1
per program) carry no mask, no diagonal and, where d (EVEN_D) and d_k (EVEN_DK_k; the launcher zero-pads the
unit source rows to whole chunks, 88 -> 96) fill whole chunks, load with plain pointers - ptxas then unrolls
the contraction loops 4 chunks per pass; the diagonal band and the partial last block carry masks and the hard
targets. ds needs no per-tile work: sum_ab G_ab (A_a . Bc_b) = sum_a A_a . acc_a / G_SCALE, one pass over the
program's BLOCK_M x d block of A at the end (G as rounded for its product; each d group adds its share).
With one d group (every d <= 1536 on a GPU; d = 768: 6 slices of 128) S is computed once per (a, b) pair per
launch: per launch B^2 d (S) + sum_k B^2 d_k (C^k) + B^2 d (the product); more d groups recompute S and C^k
per group. Anchors that are not counted only visit the counted candidates (local loss: a rank's gradient costs
its share).
Launch configuration (fastclap/losses/triton_config.py), chosen by compiling for sm_90a (python -m
benchmarks.aot, per tile and warp: instructions, MMA included; registers; spill bytes stores / loads):
16-bit features, hard and with sources, BLOCK_M x BLOCK_N = 64 x 32 (wgmma), 8 warps, 1 stage; fp32 features,
sm_80 or d > 768: 32 x 32 (mma.sync), 8 warps, 2 stages. bf16, d = 768, sm_90a, triton 3.7.1, dX launch:
    hard   before: 1118 instructions,  255 registers, no spill      after: 583, 255 registers, 104 / 56 B
    K = 2  before: 2137 (32 x 32 tiles), 254 registers, no spill   after: 1309 (64 x 32), 255, 280 / 216 B
(before: tl.exp with its range fix-up (FSETP, 2 FMUL per MUFU), masks and the diagonal on every tile, the
per-row ds sum (shuffles and a cross-warp reduction) per tile, bounds-checked loads (no unrolling), and with
sources 32 x 32 mma.sync tiles whose 8 warps each own 16 x 8 outputs.) The spill is outside the contraction
loops: none in the hard loss's tile loops (the ds pass at the end), 9 spill instructions per interior tile
with two sources; the dY launch (no ds) spills 0 B (hard) and 136 / 120 B (K = 2). The accumulators take
BLOCK_M d fp32 values per program, 192 registers per thread at 64 x 768 over 8 warps, leaving ~60 for the rest.
32 x 32 tiles with sources do not spill but issue 1.6 x the instructions per element. fp32 features (tf32x3:
three products per dot) spill ~1 KB at 32 x 32.

Work (MACs, full ranges, B a multiple of the tiles, d and d_k padded to their chunks): forward B^2 d +
sum_k B^2 d_k (it also yields the source log-normalisers n^k), backward 2 (2 B^2 d + sum_k B^2 d_k):
5 B^2 d + 3 sum_k B^2 d_k against the floor 4 B^2 d + 2 sum_k B^2 d_k: 1.25 x for the hard loss, 1.34 x
for d_k = (88, 768) at d = 768 (C^k is recomputed in both backward launches). Exps: (2 + 2K) per element
of each backward tile.
benchmarks/work_model.py counts all of this from the launches (tests/test_work_model.py checks it against
the interpreter).

Bytes: a launch stores B d elements of its output (features' dtype) and, in the dX launch, one fp32 ds partial
per program (and reads its BLOCK_M x d block of A once more for it); nothing of size B x B or (chunk x B) exists, and there is no elementwise torch pass over B x d.
At B = 65536, d = 768, bf16: 2 x 100.7 MB of gradient stores for the whole backward. Operand reads (each
program streams all of Bc: B d elements per BLOCK_M anchors, and the sources) come from L2 / HBM and belong to
the roofline's operand traffic, not to the stored bytes. Memory: dX, dY and the (grid,) fp32 partials.

Precision: S, C^k and the products accumulate in fp32. For 16-bit features G is cast to that dtype before the
tensor-core product (as the old stored G chunk was); for fp16 it is first multiplied by G_SCALE = 2^14 (|G| <= 2
before scaling, so <= 32768 < 65504), which lifts entries ~1/B (P at B = 65536: 1.5e-5, below fp16's smallest
normal 6.1e-5) out of the subnormal range; the accumulator is divided by it at the end (exact: a power of two).
fp32 features keep G in fp32 and use PRECISION for every dot. In the interpreter (UPCAST) 16-bit tiles are
converted to fp32 before tl.dot, whose 16-bit path is broken there: the product of the stored values is exact.
"""
import triton
import triton.language as tl

from .smooth_clap import LOG2E, _dot_any


@triton.jit
def _source_terms(u_ptr, dk, i2, na2, norm_ptr, lc, m0, n0, n_rows, offs_n, in_b,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DK: tl.constexpr,
                  UPCAST: tl.constexpr, PRECISION: tl.constexpr, FULL: tl.constexpr):
    """One source's share of y_ab [a counted] + y_ba [b counted] on one tile, in base 2:
    beta w_k exp(C_ab - n_a) = 2^(U_a.U_b i2 - na2_a), i2 = log2(e) / tau_k, na2 = n log2(e) - log2(beta w_k)
    (na2 of the anchors is loaded once per program; +inf for uncounted ones): one FFMA and one exp2 each."""
    dots = _dot_any(u_ptr, u_ptr, m0, n0, n_rows, dk, BLOCK_M, BLOCK_N, BLOCK_DK, UPCAST, PRECISION, FULL)
    nb2 = tl.load(norm_ptr + offs_n, mask=in_b, other=float("inf")) * LOG2E - lc
    t = dots * i2
    return tl.exp2(t - na2[:, None]) + tl.exp2(t - nb2[None, :])


@triton.jit
def _slice_product(acc, g, b_ptr, n0, col0, n_rows, dim,
                   BLOCK_N: tl.constexpr, SLICE_D: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
                   FULL: tl.constexpr):
    """acc += g @ Bc[n0:n0+BLOCK_N, col0:col0+SLICE_D]; FULL: the block is inside Bc (plain loads), else rows /
    columns past the end read as zeros."""
    if FULL:
        b = tl.load(b_ptr + (n0 + tl.arange(0, BLOCK_N)).to(tl.int64)[:, None] * dim
                    + (col0 + tl.arange(0, SLICE_D))[None, :])
    else:
        blk = tl.make_block_ptr(b_ptr, (n_rows, dim), (dim, 1), (n0, col0), (BLOCK_N, SLICE_D), (1, 0))
        b = tl.load(blk, boundary_check=(0, 1), padding_option="zero")
    if UPCAST:
        b = b.to(tl.float32)
    return tl.dot(g, b, acc, input_precision=PRECISION)


@triton.jit
def _finish_slice(out_ptr, a_ptr, acc, c, ds, m0, col0, n_rows, dim, BLOCK_M: tl.constexpr, SLICE_D: tl.constexpr,
                  WITH_DS: tl.constexpr):
    """Store c acc into dA[m0:m0+BLOCK_M, col0:col0+SLICE_D]; WITH_DS: return ds + sum(A[same block] * acc)
    (rows / columns past the end read as zeros: they add nothing)."""
    blk = tl.make_block_ptr(out_ptr, (n_rows, dim), (dim, 1), (m0, col0), (BLOCK_M, SLICE_D), (1, 0))
    tl.store(blk, (acc * c).to(out_ptr.dtype.element_ty), boundary_check=(0, 1))
    if WITH_DS:
        a_blk = tl.make_block_ptr(a_ptr, (n_rows, dim), (dim, 1), (m0, col0), (BLOCK_M, SLICE_D), (1, 0))
        a = tl.load(a_blk, boundary_check=(0, 1), padding_option="zero")
        ds += tl.sum(a.to(tl.float32) * acc)
    return ds


@triton.jit
def _bwd_tile(a_ptr, b_ptr, s2, lse_b_ptr, lse_a2, u0_ptr, u1_ptr, u2_ptr, dk0, dk1, dk2, i0, i1, i2,
              na0, na1, na2, norm_ptr, lc0, lc1, lc2, m0, n0, col0, n_rows, dim, offs_m, in_a, b_lo, b_hi,
              hard_coef, g_scale, acc0, acc1, acc2, acc3, acc4, acc5,
              NUM_SOURCES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
              SLICE_D: tl.constexpr, NUM_SLICES: tl.constexpr,
              BLOCK_DK0: tl.constexpr, BLOCK_DK1: tl.constexpr, BLOCK_DK2: tl.constexpr,
              PRECISION: tl.constexpr,
              SRC_PRECISION0: tl.constexpr, SRC_PRECISION1: tl.constexpr, SRC_PRECISION2: tl.constexpr,
              UPCAST: tl.constexpr, MASKED: tl.constexpr, EVEN_D: tl.constexpr,
              EVEN_DK0: tl.constexpr, EVEN_DK1: tl.constexpr, EVEN_DK2: tl.constexpr):
    """One BLOCK_M x BLOCK_N tile of G (base 2: u = S log2(e), one FFMA and one MUFU.EX2 per exponential) and its
    products into the accumulators. MASKED tiles (past the end of the rows / columns, or on the diagonal) carry
    the masks and the hard targets; the others (all but ~BLOCK_M / BLOCK_N + 1 per program) neither, and load
    without bounds checks where the contraction dims are whole chunks (EVEN_D, EVEN_DK_k)."""
    offs_n = n0 + tl.arange(0, BLOCK_N)
    in_b = (offs_n >= b_lo) & (offs_n < b_hi)
    if MASKED:
        in_b = in_b & (offs_n < n_rows)
    lse_b2 = tl.load(lse_b_ptr + offs_n, mask=in_b, other=float("inf")) * LOG2E
    dots = _dot_any(a_ptr, b_ptr, m0, n0, n_rows, dim, BLOCK_M, BLOCK_N, BLOCK_D, UPCAST, PRECISION,
                    EVEN_D and not MASKED)
    u = dots * s2
    g = tl.exp2(u - lse_a2[:, None]) + tl.exp2(u - lse_b2[None, :])
    if NUM_SOURCES > 0:
        g -= _source_terms(u0_ptr, dk0, i0, na0, norm_ptr, lc0, m0, n0, n_rows, offs_n, in_b, BLOCK_M, BLOCK_N,
                           BLOCK_DK0, UPCAST, SRC_PRECISION0, EVEN_DK0 and not MASKED)
    if NUM_SOURCES > 1:
        g -= _source_terms(u1_ptr, dk1, i1, na1, norm_ptr + n_rows, lc1, m0, n0, n_rows, offs_n, in_b, BLOCK_M,
                           BLOCK_N, BLOCK_DK1, UPCAST, SRC_PRECISION1, EVEN_DK1 and not MASKED)
    if NUM_SOURCES > 2:
        g -= _source_terms(u2_ptr, dk2, i2, na2, norm_ptr + 2 * n_rows, lc2, m0, n0, n_rows, offs_n, in_b,
                           BLOCK_M, BLOCK_N, BLOCK_DK2, UPCAST, SRC_PRECISION2, EVEN_DK2 and not MASKED)
    if MASKED:
        is_diag = offs_m[:, None] == offs_n[None, :]
        g -= tl.where(is_diag & in_a[:, None], hard_coef, 0.0) + tl.where(is_diag & in_b[None, :], hard_coef, 0.0)
        g = tl.where((offs_m < n_rows)[:, None] & (offs_n < n_rows)[None, :], g, 0.0)
    gq = (g * g_scale).to(a_ptr.dtype.element_ty)
    if UPCAST:
        gq = gq.to(tl.float32)
    full = EVEN_D and not MASKED
    acc0 = _slice_product(acc0, gq, b_ptr, n0, col0, n_rows, dim, BLOCK_N, SLICE_D, UPCAST, PRECISION, full)
    if NUM_SLICES > 1:
        acc1 = _slice_product(acc1, gq, b_ptr, n0, col0 + SLICE_D, n_rows, dim, BLOCK_N, SLICE_D, UPCAST,
                              PRECISION, full)
    if NUM_SLICES > 2:
        acc2 = _slice_product(acc2, gq, b_ptr, n0, col0 + 2 * SLICE_D, n_rows, dim, BLOCK_N, SLICE_D, UPCAST,
                              PRECISION, full)
    if NUM_SLICES > 3:
        acc3 = _slice_product(acc3, gq, b_ptr, n0, col0 + 3 * SLICE_D, n_rows, dim, BLOCK_N, SLICE_D, UPCAST,
                              PRECISION, full)
    if NUM_SLICES > 4:
        acc4 = _slice_product(acc4, gq, b_ptr, n0, col0 + 4 * SLICE_D, n_rows, dim, BLOCK_N, SLICE_D, UPCAST,
                              PRECISION, full)
    if NUM_SLICES > 5:
        acc5 = _slice_product(acc5, gq, b_ptr, n0, col0 + 5 * SLICE_D, n_rows, dim, BLOCK_N, SLICE_D, UPCAST,
                              PRECISION, full)
    return acc0, acc1, acc2, acc3, acc4, acc5


@triton.jit
def smooth_clap_bwd_kernel(
    a_ptr, b_ptr,                       # anchors A and candidates Bc (B, d), contiguous, fp32/bf16/fp16
    scale_ptr, out_scale_ptr,           # logit_scale s (1,) fp32; s g / (N G_SCALE) (1,) fp32
    u0_ptr, u1_ptr, u2_ptr, dk0, dk1, dk2,
    lse_a_ptr, lse_b_ptr, norm_ptr,     # (B,) lse of the anchors' and candidates' direction; (K, B) n^k
    out_ptr,                            # out (B, d), dtype of A: dA
    ds_ptr,                             # out (grid,) fp32: sum_ab G_ab (A_a . Bc_b) per program (WITH_DS)
    n_rows, dim, a_lo, a_hi, b_lo, b_hi,    # counted anchors and counted candidates
    hard_coef, lc0, lc1, lc2, it0, it1, it2, g_scale,   # 1 - beta; log2(beta w_k) (-inf for 0); 1 / tau_k
    NUM_SOURCES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    SLICE_D: tl.constexpr, NUM_SLICES: tl.constexpr,
    BLOCK_DK0: tl.constexpr, BLOCK_DK1: tl.constexpr, BLOCK_DK2: tl.constexpr,
    PRECISION: tl.constexpr,
    SRC_PRECISION0: tl.constexpr, SRC_PRECISION1: tl.constexpr, SRC_PRECISION2: tl.constexpr,
    UPCAST: tl.constexpr, WITH_DS: tl.constexpr,
    EVEN_D: tl.constexpr = False,       # d a multiple of BLOCK_D and of the d groups: interior tiles load unchecked
    EVEN_DK0: tl.constexpr = False, EVEN_DK1: tl.constexpr = False, EVEN_DK2: tl.constexpr = False,
):
    pid = tl.program_id(0)
    dgroup = tl.program_id(1)
    s2 = tl.load(scale_ptr) * LOG2E
    m0 = pid * BLOCK_M
    col0 = dgroup * (NUM_SLICES * SLICE_D)
    offs_m = m0 + tl.arange(0, BLOCK_M)
    in_a = (offs_m < n_rows) & (offs_m >= a_lo) & (offs_m < a_hi)
    lse_a2 = tl.load(lse_a_ptr + offs_m, mask=in_a, other=float("inf")) * LOG2E
    # the anchors' source log-normalisers in base 2 with log2(beta w_k) folded in, once per program
    i0 = it0 * LOG2E
    i1 = it1 * LOG2E
    i2 = it2 * LOG2E
    na0 = lse_a2
    na1 = lse_a2
    na2 = lse_a2
    if NUM_SOURCES > 0:
        na0 = tl.load(norm_ptr + offs_m, mask=in_a, other=float("inf")) * LOG2E - lc0
    if NUM_SOURCES > 1:
        na1 = tl.load(norm_ptr + n_rows + offs_m, mask=in_a, other=float("inf")) * LOG2E - lc1
    if NUM_SOURCES > 2:
        na2 = tl.load(norm_ptr + 2 * n_rows + offs_m, mask=in_a, other=float("inf")) * LOG2E - lc2
    acc0 = tl.zeros((BLOCK_M, SLICE_D), tl.float32)
    acc1 = tl.zeros((BLOCK_M, SLICE_D), tl.float32)
    acc2 = tl.zeros((BLOCK_M, SLICE_D), tl.float32)
    acc3 = tl.zeros((BLOCK_M, SLICE_D), tl.float32)
    acc4 = tl.zeros((BLOCK_M, SLICE_D), tl.float32)
    acc5 = tl.zeros((BLOCK_M, SLICE_D), tl.float32)
    # anchors that are not counted only meet the counted candidates (the [a counted] terms vanish)
    counted = (m0 < a_hi) & (m0 + BLOCK_M > a_lo)
    # interior tiles: [0, n_full) less the diagonal band [band_lo, band_hi) (tile indices); then the band and
    # the partial last tile (every tile of a partial row block) with masks and hard targets
    n_tiles = tl.cdiv(n_rows, BLOCK_N)
    n_full = tl.where(m0 + BLOCK_M <= n_rows, n_rows // BLOCK_N, 0)
    band_lo = tl.minimum(m0 // BLOCK_N, n_full)
    band_hi = tl.minimum(tl.cdiv(tl.minimum(m0 + BLOCK_M, n_rows), BLOCK_N), n_full)
    band = band_hi - band_lo
    for masked in tl.static_range(2):
        for i in range(0, (band + n_tiles - n_full) if masked else (n_full - band)):
            if masked:
                n0 = tl.where(i < band, band_lo + i, n_full + i - band) * BLOCK_N
            else:
                n0 = (i + tl.where(i >= band_lo, band, 0)) * BLOCK_N
            if counted | ((n0 < b_hi) & (n0 + BLOCK_N > b_lo)):
                acc0, acc1, acc2, acc3, acc4, acc5 = _bwd_tile(
                    a_ptr, b_ptr, s2, lse_b_ptr, lse_a2, u0_ptr, u1_ptr, u2_ptr, dk0, dk1, dk2, i0, i1, i2,
                    na0, na1, na2, norm_ptr, lc0, lc1, lc2, m0, n0, col0, n_rows, dim, offs_m, in_a, b_lo, b_hi,
                    hard_coef, g_scale, acc0, acc1, acc2, acc3, acc4, acc5,
                    NUM_SOURCES, BLOCK_M, BLOCK_N, BLOCK_D, SLICE_D, NUM_SLICES, BLOCK_DK0, BLOCK_DK1, BLOCK_DK2,
                    PRECISION, SRC_PRECISION0, SRC_PRECISION1, SRC_PRECISION2, UPCAST, masked == 1,
                    EVEN_D, EVEN_DK0, EVEN_DK1, EVEN_DK2)
    c = tl.load(out_scale_ptr)
    ds = 0.0
    ds = _finish_slice(out_ptr, a_ptr, acc0, c, ds, m0, col0, n_rows, dim, BLOCK_M, SLICE_D, WITH_DS)
    if NUM_SLICES > 1:
        ds = _finish_slice(out_ptr, a_ptr, acc1, c, ds, m0, col0 + SLICE_D, n_rows, dim, BLOCK_M, SLICE_D, WITH_DS)
    if NUM_SLICES > 2:
        ds = _finish_slice(out_ptr, a_ptr, acc2, c, ds, m0, col0 + 2 * SLICE_D, n_rows, dim, BLOCK_M, SLICE_D,
                           WITH_DS)
    if NUM_SLICES > 3:
        ds = _finish_slice(out_ptr, a_ptr, acc3, c, ds, m0, col0 + 3 * SLICE_D, n_rows, dim, BLOCK_M, SLICE_D,
                           WITH_DS)
    if NUM_SLICES > 4:
        ds = _finish_slice(out_ptr, a_ptr, acc4, c, ds, m0, col0 + 4 * SLICE_D, n_rows, dim, BLOCK_M, SLICE_D,
                           WITH_DS)
    if NUM_SLICES > 5:
        ds = _finish_slice(out_ptr, a_ptr, acc5, c, ds, m0, col0 + 5 * SLICE_D, n_rows, dim, BLOCK_M, SLICE_D,
                           WITH_DS)
    if WITH_DS:
        # sum_ab G_ab (A_a . Bc_b) = sum_a A_a . (sum_b G_ab Bc_b) = sum_a A_a . acc_a / G_SCALE over this
        # program's columns of d: the d groups' shares add up
        tl.store(ds_ptr + pid * tl.num_programs(1) + dgroup, ds / g_scale)
