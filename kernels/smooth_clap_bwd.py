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
  2. recomputes each C^k tile (BLOCK_M BLOCK_N d_k MACs), forms G (exps per element: 2 for P^r, P^c, + 2 per
     source), masks it and casts it to the features' dtype (fp16: times G_SCALE = 2^14, see below),
  3. acc_slice += G_tile @ Bc_b[:, slice] for its NUM_SLICES slices of SLICE_D columns (BLOCK_M BLOCK_N
     NUM_SLICES SLICE_D MACs),
then scales by s g / (N G_SCALE) and stores its BLOCK_M x (its d columns) rows of dA once. With one d group
(every d <= 1536 on a GPU; d = 768: 6 slices of 128) S is computed once per (a, b) pair per launch: per launch
B^2 d (S) + sum_k B^2 d_k (C^k) + B^2 d (the product); more d groups recompute S and C^k per group. Anchors
that are not counted only visit the counted candidates (local loss: a rank's gradient costs its share).
Launch configuration (fastclap/losses/triton_config.py), chosen by compiling for sm_90a: hard loss with
16-bit features BLOCK_M x BLOCK_N = 64 x 32 (wgmma), 8 warps, 1 stage; with sources, fp32 features, on sm_80
or for d > 768: 32 x 32 (mma.sync), 8 warps, 2 stages. Registers: the accumulators take BLOCK_M d fp32 values
per program, 192 per thread at 64 x 768 over 8 warps; the 16-bit variants compile to 250-255 registers
without spills on sm_90a (d = 768, K = 0..3), while 64-row tiles with sources spill 190-260 B and 64 x 64
tiles 130-300 B. fp32 features (tf32x3: three products per dot) spill ~1 KB at 32 x 32.

Work (MACs, full ranges, B a multiple of the tiles, d and d_k padded to their chunks): forward B^2 d +
sum_k B^2 d_k (it also yields the source log-normalisers n^k), backward 2 (2 B^2 d + sum_k B^2 d_k):
5 B^2 d + 3 sum_k B^2 d_k against the floor 4 B^2 d + 2 sum_k B^2 d_k: 1.25 x for the hard loss, 1.34 x
for d_k = (88, 768) at d = 768 (C^k is recomputed in both backward launches). Exps: (2 + 2K) per element
of each backward tile.
benchmarks/work_model.py counts all of this from the launches (tests/test_work_model.py checks it against
the interpreter).

Bytes: a launch stores B d elements of its output (features' dtype) and, in the dX launch, one fp32 ds partial
per program; nothing of size B x B or (chunk x B) exists, and there is no elementwise torch pass over B x d.
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

from .smooth_clap import _dot_tile, _source_weight


@triton.jit
def _slice_product(acc, g, b_ptr, n0, col0, n_rows, dim,
                   BLOCK_N: tl.constexpr, SLICE_D: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """acc += g @ Bc[n0:n0+BLOCK_N, col0:col0+SLICE_D] (rows / columns past the end read as zeros)."""
    blk = tl.make_block_ptr(b_ptr, (n_rows, dim), (dim, 1), (n0, col0), (BLOCK_N, SLICE_D), (1, 0))
    b = tl.load(blk, boundary_check=(0, 1), padding_option="zero")
    if UPCAST:
        b = b.to(tl.float32)
    return tl.dot(g, b, acc, input_precision=PRECISION)


@triton.jit
def _store_slice(out_ptr, acc, m0, col0, n_rows, dim, BLOCK_M: tl.constexpr, SLICE_D: tl.constexpr):
    blk = tl.make_block_ptr(out_ptr, (n_rows, dim), (dim, 1), (m0, col0), (BLOCK_M, SLICE_D), (1, 0))
    tl.store(blk, acc.to(out_ptr.dtype.element_ty), boundary_check=(0, 1))


@triton.jit
def smooth_clap_bwd_kernel(
    a_ptr, b_ptr,                       # anchors A and candidates Bc (B, d), contiguous, fp32/bf16/fp16
    scale_ptr, out_scale_ptr,           # logit_scale s (1,) fp32; s g / (N G_SCALE) (1,) fp32
    u0_ptr, u1_ptr, u2_ptr, dk0, dk1, dk2,
    lse_a_ptr, lse_b_ptr, norm_ptr,     # (B,) lse of the anchors' and candidates' direction; (K, B) n^k
    out_ptr,                            # out (B, d), dtype of A: dA
    ds_ptr,                             # out (grid,) fp32: sum_ab G_ab (A_a . Bc_b) per program (WITH_DS)
    n_rows, dim, a_lo, a_hi, b_lo, b_hi,    # counted anchors and counted candidates
    hard_coef, c0, c1, c2, it0, it1, it2, g_scale,
    NUM_SOURCES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    SLICE_D: tl.constexpr, NUM_SLICES: tl.constexpr,
    BLOCK_DK0: tl.constexpr, BLOCK_DK1: tl.constexpr, BLOCK_DK2: tl.constexpr,
    PRECISION: tl.constexpr,
    SRC_PRECISION0: tl.constexpr, SRC_PRECISION1: tl.constexpr, SRC_PRECISION2: tl.constexpr,
    UPCAST: tl.constexpr, WITH_DS: tl.constexpr,
):
    pid = tl.program_id(0)
    dgroup = tl.program_id(1)
    s = tl.load(scale_ptr)
    m0 = pid * BLOCK_M
    col0 = dgroup * (NUM_SLICES * SLICE_D)
    offs_m = m0 + tl.arange(0, BLOCK_M)
    mask_m = offs_m < n_rows
    in_a = mask_m & (offs_m >= a_lo) & (offs_m < a_hi)
    lse_a = tl.load(lse_a_ptr + offs_m, mask=in_a, other=float("inf"))
    acc0 = tl.zeros((BLOCK_M, SLICE_D), tl.float32)
    acc1 = tl.zeros((BLOCK_M, SLICE_D), tl.float32)
    acc2 = tl.zeros((BLOCK_M, SLICE_D), tl.float32)
    acc3 = tl.zeros((BLOCK_M, SLICE_D), tl.float32)
    acc4 = tl.zeros((BLOCK_M, SLICE_D), tl.float32)
    acc5 = tl.zeros((BLOCK_M, SLICE_D), tl.float32)
    ds_acc = tl.zeros((BLOCK_M,), tl.float32)
    # anchors that are not counted only meet the counted candidates (the [a counted] terms vanish)
    skip = (m0 >= a_hi) | (m0 + BLOCK_M <= a_lo)
    n_start = tl.where(skip, (b_lo // BLOCK_N) * BLOCK_N, 0)
    n_end = tl.where(skip, b_hi, n_rows)
    for n0 in range(n_start, n_end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < n_rows
        in_b = mask_n & (offs_n >= b_lo) & (offs_n < b_hi)
        lse_b = tl.load(lse_b_ptr + offs_n, mask=in_b, other=float("inf"))
        dots = _dot_tile(a_ptr, b_ptr, m0, n0, n_rows, dim, BLOCK_M, BLOCK_N, BLOCK_D, UPCAST, PRECISION)
        s_tile = s * dots
        g = tl.exp(s_tile - lse_a[:, None]) + tl.exp(s_tile - lse_b[None, :])
        is_diag = offs_m[:, None] == offs_n[None, :]
        g -= tl.where(is_diag & in_a[:, None], hard_coef, 0.0) + tl.where(is_diag & in_b[None, :], hard_coef, 0.0)
        if NUM_SOURCES > 0:
            g -= _source_weight(u0_ptr, dk0, it0, c0, norm_ptr, m0, n0, n_rows, offs_m, offs_n, in_a, in_b,
                                BLOCK_M, BLOCK_N, BLOCK_DK0, UPCAST, SRC_PRECISION0)
        if NUM_SOURCES > 1:
            g -= _source_weight(u1_ptr, dk1, it1, c1, norm_ptr + n_rows, m0, n0, n_rows, offs_m, offs_n, in_a,
                                in_b, BLOCK_M, BLOCK_N, BLOCK_DK1, UPCAST, SRC_PRECISION1)
        if NUM_SOURCES > 2:
            g -= _source_weight(u2_ptr, dk2, it2, c2, norm_ptr + 2 * n_rows, m0, n0, n_rows, offs_m, offs_n,
                                in_a, in_b, BLOCK_M, BLOCK_N, BLOCK_DK2, UPCAST, SRC_PRECISION2)
        g = tl.where(mask_m[:, None] & mask_n[None, :], g, 0.0)
        if WITH_DS:
            ds_acc += tl.sum(g * dots, axis=1)
        gq = (g * g_scale).to(a_ptr.dtype.element_ty)
        if UPCAST:
            gq = gq.to(tl.float32)
        acc0 = _slice_product(acc0, gq, b_ptr, n0, col0, n_rows, dim, BLOCK_N, SLICE_D, UPCAST, PRECISION)
        if NUM_SLICES > 1:
            acc1 = _slice_product(acc1, gq, b_ptr, n0, col0 + SLICE_D, n_rows, dim, BLOCK_N, SLICE_D, UPCAST,
                                  PRECISION)
        if NUM_SLICES > 2:
            acc2 = _slice_product(acc2, gq, b_ptr, n0, col0 + 2 * SLICE_D, n_rows, dim, BLOCK_N, SLICE_D, UPCAST,
                                  PRECISION)
        if NUM_SLICES > 3:
            acc3 = _slice_product(acc3, gq, b_ptr, n0, col0 + 3 * SLICE_D, n_rows, dim, BLOCK_N, SLICE_D, UPCAST,
                                  PRECISION)
        if NUM_SLICES > 4:
            acc4 = _slice_product(acc4, gq, b_ptr, n0, col0 + 4 * SLICE_D, n_rows, dim, BLOCK_N, SLICE_D, UPCAST,
                                  PRECISION)
        if NUM_SLICES > 5:
            acc5 = _slice_product(acc5, gq, b_ptr, n0, col0 + 5 * SLICE_D, n_rows, dim, BLOCK_N, SLICE_D, UPCAST,
                                  PRECISION)
    c = tl.load(out_scale_ptr)
    _store_slice(out_ptr, acc0 * c, m0, col0, n_rows, dim, BLOCK_M, SLICE_D)
    if NUM_SLICES > 1:
        _store_slice(out_ptr, acc1 * c, m0, col0 + SLICE_D, n_rows, dim, BLOCK_M, SLICE_D)
    if NUM_SLICES > 2:
        _store_slice(out_ptr, acc2 * c, m0, col0 + 2 * SLICE_D, n_rows, dim, BLOCK_M, SLICE_D)
    if NUM_SLICES > 3:
        _store_slice(out_ptr, acc3 * c, m0, col0 + 3 * SLICE_D, n_rows, dim, BLOCK_M, SLICE_D)
    if NUM_SLICES > 4:
        _store_slice(out_ptr, acc4 * c, m0, col0 + 4 * SLICE_D, n_rows, dim, BLOCK_M, SLICE_D)
    if NUM_SLICES > 5:
        _store_slice(out_ptr, acc5 * c, m0, col0 + 5 * SLICE_D, n_rows, dim, BLOCK_M, SLICE_D)
    if WITH_DS:
        # every d group sees the same G: only the first one reports its share of ds
        tl.store(ds_ptr + pid * tl.num_programs(1) + dgroup, tl.where(dgroup == 0, tl.sum(ds_acc, axis=0), 0.0))
