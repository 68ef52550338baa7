/* convx: the matrix product of the im2col passes, convx's own.
 *
 * Computes, for one image and one group,
 *
 *     C[i, j] (=|+=) bias[i] + sum_k A[i, k] * B[k, j]     0 <= i < M, 0 <= j < N
 *
 * where A and B are "operands": a dense matrix read with any two strides, a
 * matrix packed once per call (the weights), or an image read as its im2col
 * matrix (or that matrix transposed) without ever writing it out:
 *
 *     im2col:    B[(c, p, q), (i, j)] = x[c, i*sh - pt + p*dh, j*sw - pl + q*dw]
 *                (zero where that falls outside the image, i.e. in the padding)
 *     im2col_T:  B[(i, j), (c, p, q)] = the same value
 *
 * with taps k = (c*KH + p)*KW + q and output positions (i, j) -> i*OW + j.
 *
 * Why convx has its own: BLAS's thread count is process-wide (OpenBLAS's
 * pthreads build, SciPy's), so running BLAS on one thread inside convx's
 * parallel regions meant changing a setting other code owns; a product of
 * our own also reads the image straight into its packed panels, stops
 * between blocks when the call is interrupted, and sums every element in an
 * order that does not depend on the number of threads.
 *
 * Blocking (Goto / BLIS): the columns of B in blocks of CVX_NC, its rows in
 * blocks of CVX_KC (or one block: cvx_kc_step), packed into micro-panels of
 * NR columns; the rows of A in blocks of CVX_MC, packed into micro-panels of
 * CVX_MR rows; a micro-tile of CVX_MR x NR elements of C accumulates in
 * vector registers over a block of K, then is stored (the first block) or
 * added to C (the later ones).  Each element of C is therefore summed in the
 * same order, bias first, then k = 0, 1, ..., K - 1 in blocks that depend
 * only on K and the operands' kinds, whatever the tile it falls in and
 * whoever computes it.
 *
 * Instruction sets: the micro-kernel and its driver are compiled for
 * x86-64-v4 with 64-byte vectors (NR = 3 vectors: 48 floats or 24 doubles)
 * and micro-tiles of two micro-panels of A, 8 rows (24 accumulators of its
 * 32 registers; a last panel alone takes 4), for x86-64-v3 with 32-byte
 * vectors (24 floats or 12 doubles) and for the baseline with 16-byte
 * vectors (12 floats or 6 doubles; 32-byte vectors on SSE2 spill and run
 * 10x slower), chosen by cvx_isa (_runtime.h) at each call.  A last panel of
 * B narrower than NR sums only the vectors its columns need (a 1x1 weight
 * gradient of 64 float32 channels: panels of 48 and 16 columns, where three
 * vectors each computed 96).  The packers move memory and take NR as an
 * argument; they are compiled for x86-64-v3 and the baseline.
 *
 * CVX_KC is 128 so that a B panel of the widest micro-tile, KC x 48 floats
 * (24 KiB), stays in L1 while the micro-kernel sweeps A across it.  Measured
 * on an Intel Xeon with two 512-bit FMA units (1 thread, method='gemm', 48
 * passes of 8 layers of our own): 64-byte vectors with KC = 256 were slower
 * than 32-byte ones on strided layers (the 48 KiB panel left L1); with KC =
 * 128 they took 0.89x the time of the 32-byte, KC = 256 product (geomean;
 * 0.69-1.15x).  The 32-byte product lost 2% to the smaller KC there.
 *
 * Prefetching, measured on that Xeon (2 threads, method='gemm', interleaved
 * against the build before, best of 7-9 rounds; the same bits):
 *   - the micro-kernel fetches its tile of C for writing before the sums;
 *   - on the first panel's sweep it fetches A's rows ahead when A is read in
 *     place (a weight gradient's output gradient): R short runs of kc values
 *     at once, on their first reading from memory.  Doubles, 12 layers: 1x1
 *     of 64 -> 256 channels 0.70-0.78x the time, 96 -> 192 0.85-0.91x, the
 *     others 0.94-1.05x; at x86-64-v3, 0.93x and 0.98x.  Floats took
 *     0.78-0.85x on the first but up to 1.08x on 1x1 layers of 24 and 32
 *     channels, so they do without;
 *   - packing an image's tap of the first column (q = 0), it fetches the
 *     same cells two channels on, which later taps of the block read, both
 *     for the forward pass's columns and for the weight gradient's
 *     (positions down the panels).  Against the build with neither fetch,
 *     18 passes: a 1x1 stride-2 layer (256 -> 512) 0.87-0.96x, a 3x3
 *     stride-2 layer on 56x56 images 0.93-1.00x, a dilated 1-D layer (TCN)
 *     weight gradient 0.95x (float32) and 0.90x (float64), 1-D 5 taps
 *     0.93x, smaller images (14x14, 28x28) 0.99-1.02x (geomean 0.957).  One
 *     channel ahead gained less (geomean 0.972).
 *
 * The weight gradient of a 1-D layer at unit stride has a product of its
 * own, NAME##_taps, with the taps as rows: tap q's row of the column matrix
 * is each channel shifted by q*dw, so the channels, packed once per block
 * of positions into panels of 4 rows along the whole span of the taps
 * (CVX_PANELS), serve every tap from a moved origin, and each block of the
 * output gradient, packed once, serves every tap.  The other order packs
 * the column matrix, KW times the values, transposed.  Against it, 2
 * threads on that Xeon, the same bits: the dilated 1-D layer (TCN, 64 ->
 * 64 channels, 3 taps) 0.75-0.80x the time in float32, 0.88-0.91x in
 * float64; 9 other 1-D layers: benchmarks/wgrad_taps.py.
 *
 * No checking is done here: the callers in _core.pyx guarantee the sizes.
 */
#ifndef CONVX_GEMM_H
#define CONVX_GEMM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_runtime.h"

#define CVX_MR 4        /* rows of a micro-tile (cvx_pack_a_dense interleaves 4 rows) */
_Static_assert(CVX_MR == 4, "cvx_pack_a_dense interleaves exactly 4 rows");
#define CVX_NV 3        /* vectors of columns in a micro-tile */
_Static_assert(CVX_NV == 3, "the driver's narrow tiles are of 1 and 2 vectors");
#define CVX_KC 128      /* depth of a packed block (see above) */
#define CVX_KC_ONE 256  /* the deepest single block (cvx_kc_max) */
#define CVX_MC 128      /* rows of A packed at once: a multiple of CVX_MR */
#define CVX_NC 384      /* columns of B packed at once: a multiple of every NR (48, 24, 12, 6) */
#define CVX_NR_MAX 48   /* the widest panel: float32 at x86-64-v4 */
_Static_assert(CVX_NC % CVX_NR_MAX == 0, "CVX_NC holds whole panels of every width");

enum { CVX_DENSE = 0, CVX_PREPACKED = 1, CVX_IM2COL = 2, CVX_IM2COL_T = 3, CVX_ROWS = 4,
       CVX_PANELS = 5, CVX_ROWS_WHOLE = 6, CVX_COLUMNS = 7 };

/* The deepest block cvx_kc_step gives a product of depth K, whatever its
 * operands: what a packed block of A or B must hold (the scratch sizes in
 * _gemm_passes.pxi). */
static inline ptrdiff_t cvx_kc_max(ptrdiff_t K)
{
    return K <= CVX_KC_ONE ? K : CVX_KC;
}

/* The depth of the blocks of a product of depth K whose B is of kind b_kind,
 * of elements of elem bytes: CVX_KC; but all of K, one block, when K <=
 * CVX_KC_ONE and B is a Winograd transform's tiles (ROWS_WHOLE) or, in
 * doubles, is packed from an image (IM2COL).  Each block past the first
 * reads back the tiles of C the ones before wrote.  Against blocks of
 * CVX_KC, 2 threads on the AVX-512 Xeon (model 167), interleaved, median of
 * 9-13 rounds: a 3x3 layer of 256 channels on 14x14 images by Winograd,
 * float32, 0.78-0.90x the time forward and 0.85-0.93x the input gradient
 * (a 160 -> 256 channel layer's, 0.78x); a 1x1 stride-2 layer of 256 -> 512
 * channels, float64, 0.91-0.92x forward.
 * Elsewhere one deeper block lost: that layer in float32 1.05x; input
 * gradients of 256 filters, whose B is the output gradient, 1.04-1.10x.
 * Depths of 160-224 moved 0.98-1.03x, inside the noise (docs/design.md,
 * "Where the product stands").  cvx_prepack and the Winograd weight
 * transform lay out A's blocks by it too. */
static inline ptrdiff_t cvx_kc_step(ptrdiff_t K, int b_kind, size_t elem)
{
    const int one = b_kind == CVX_ROWS_WHOLE || (b_kind == CVX_IM2COL && elem == 8);
    return one ? cvx_kc_max(K) : CVX_KC;
}

/* One operand.  DENSE: element (r, c) at p[r*rs + c*cs].  COLUMNS (A
 * only): element (i, k) at p[i + k*cs], read in place by the micro-kernel
 * (a micro-tile's rows side by side in each depth step's line: the input
 * gradient's w.T for one small image, which packing read a row of w
 * apart).  ROWS (B only): element (k, j) at p[k*rs + j], read in place by
 * the micro-kernel, not packed (worth it when M or K is small: each value
 * is then used by few rows of A, and copying it into a panel costs as much
 * as using it); its last panel, narrower than NR, is packed.  ROWS_WHOLE:
 * ROWS whose rows can be read past the last column up to a multiple of 16
 * values (whose sums are dropped): every panel is read in place.  PREPACKED: packed by
 * cvx_prepack_*, rs = the rows rounded up to CVX_MR.  PANELS (A only): packed
 * by cvx_pack_panels_* along the whole depth, element (i, k) at
 * p[(i / MR)*rs + k*MR + i % MR], so that moving p by s*MR moves the depth
 * by s.  IM2COL, IM2COL_T: p is
 * one group's channels of an image, (C, H, W) in C order, and the geometry
 * below says how it is read; its positions are the output positions p0,
 * p0 + 1, ... (a block of the image's). */
typedef struct {
    int kind;
    const void *p;
    ptrdiff_t rs, cs;
    ptrdiff_t H, W, KH, KW, OW, sh, sw, dh, dw, pt, pl;
    ptrdiff_t p0;       /* IM2COL, IM2COL_T: the output position of the first column (row);
                           PREPACKED: the first row, a multiple of CVX_MR */
    ptrdiff_t k0;       /* IM2COL_T: the tap of the first column */
} cvx_operand;

static inline ptrdiff_t cvx_min(ptrdiff_t a, ptrdiff_t b) { return a < b ? a : b; }

/* Smallest j >= 0 with j*stride + offset >= 0, clipped to [0, n]. */
static inline ptrdiff_t cvx_first_valid(ptrdiff_t offset, ptrdiff_t stride, ptrdiff_t n)
{
    ptrdiff_t j = offset < 0 ? (-offset + stride - 1) / stride : 0;
    return j < n ? j : n;
}

/* One past the largest j with j*stride + offset <= size - 1, clipped to [0, n]. */
static inline ptrdiff_t cvx_end_valid(ptrdiff_t offset, ptrdiff_t stride, ptrdiff_t size,
                                      ptrdiff_t n)
{
    ptrdiff_t last = size - 1 - offset;
    if (last < 0)
        return 0;
    last = last / stride + 1;
    return last < n ? last : n;
}

/* ---------------------------------------------------------------------- */
/* Packing, for each element type.                                         */
/*                                                                         */
/* A block of A (rows ic..ic+mc, depth pc..pc+kc) packed: micro-panel t    */
/* holds rows ic + t*MR .. + MR - 1, element (i, k) at                     */
/* dst[t*MR*kc + (k - pc)*MR + i % MR], zero past mc.  A block of B (depth */
/* pc..pc+kc, columns jc..jc+nc): micro-panel t holds columns jc + t*nr    */
/* .. + nr - 1, element (k, j) at dst[t*nr*kc + (k - pc)*nr + j % nr],     */
/* zero past nc.                                                           */
/* ---------------------------------------------------------------------- */

/* ---------------------------------------------------------------------- */
/* Runs of output rows in vectors (x86-64-v3 and v4).  A tap's row of the   */
/* im2col matrix at unit column stride, over several output rows, is       */
/* gathered one output row's run at a time with masked loads of whole      */
/* vectors, which touch only the cells of the image (the padding's come as */
/* zeros); col2im adds its runs back the same way.  Run by run, value by   */
/* value, the cutting into runs cost more than the copying on small images */
/* (cvx_pack_tap_##S has the numbers).  The same values, the same sums: the */
/* same bits.                                                               */
/* ---------------------------------------------------------------------- */
/* 0: run by run, value by value, at every level (set by tests, through
 * _core.set_vector_runs, to compare the two). */
static int cvx_vector_runs = 1;

#if CVX_X86_DISPATCH
#include <immintrin.h>

CVX_V4 static inline __m512 cvx_row_ld_f32_v4(const float *p, ptrdiff_t lo, ptrdiff_t hi)
{
    const __mmask16 m = hi > lo ? (__mmask16)(((1u << hi) - 1) ^ ((1u << lo) - 1)) : 0;
    return _mm512_maskz_loadu_ps(m, p);
}
CVX_V4 static inline __m512d cvx_row_ld_f64_v4(const double *p, ptrdiff_t lo, ptrdiff_t hi)
{
    const __mmask8 m = hi > lo ? (__mmask8)(((1u << hi) - 1) ^ ((1u << lo) - 1)) : 0;
    return _mm512_maskz_loadu_pd(m, p);
}
CVX_V3 static inline __m256 cvx_row_ld_f32_v3(const float *p, ptrdiff_t lo, ptrdiff_t hi)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i a = _mm256_set1_epi32((int)cvx_min(lo, 8) - 1);
    const __m256i b = _mm256_set1_epi32((int)hi);
    return _mm256_maskload_ps(p, _mm256_and_si256(_mm256_cmpgt_epi32(idx, a),
                                                  _mm256_cmpgt_epi32(b, idx)));
}
CVX_V3 static inline __m256d cvx_row_ld_f64_v3(const double *p, ptrdiff_t lo, ptrdiff_t hi)
{
    const __m256i idx = _mm256_setr_epi64x(0, 1, 2, 3);
    const __m256i a = _mm256_set1_epi64x(cvx_min(lo, 4) - 1), b = _mm256_set1_epi64x(hi);
    return _mm256_maskload_pd(p, _mm256_and_si256(_mm256_cmpgt_epi64(idx, a),
                                                  _mm256_cmpgt_epi64(b, idx)));
}

/* The tap (plane, column offset off_w, row offset off_h, output columns   */
/* j0 .. j1 that read the image) at nc output positions from row i, column */
/* j on: row[0 .. nc), and up to VL - 1 values past it, which the caller   */
/* leaves room for (each run is stored in whole vectors; the next run      */
/* overwrites what lies past its end).  With `fetch`, the cache lines two  */
/* channels on, as cvx_fetch_run does.                                     */
#define CVX_DEFINE_TAP_ROW(NAME, T, ATTR, VL, LOAD, STORE, ZERO)                    \
ATTR static void NAME(const cvx_operand *X, const T *plane, ptrdiff_t off_w,        \
                      ptrdiff_t off_h, ptrdiff_t j0, ptrdiff_t j1, ptrdiff_t i,     \
                      ptrdiff_t j, ptrdiff_t nc, T *row, int fetch)                 \
{                                                                                   \
    const ptrdiff_t ahead = 2 * X->H * X->W;                                        \
    for (ptrdiff_t done = 0; done < nc; i++, j = 0) {                               \
        const ptrdiff_t len = cvx_min(X->OW - j, nc - done), end = j + len;         \
        const ptrdiff_t r = i * X->sh + off_h;                                      \
        T *d = row + done - j;               /* d[col]: output column col */        \
        done += len;                                                                \
        if (r < 0 || r >= X->H || j1 <= j0) {                                       \
            for (ptrdiff_t c = j; c < end; c += VL) STORE(d + c, ZERO);             \
            continue;                                                               \
        }                                                                           \
        /* src[col]: the cell output column col reads (col in j0 .. j1) */          \
        const uintptr_t base = (uintptr_t)(plane + r * X->W);                       \
        const ptrdiff_t va = j > j0 ? j : j0, vb = end < j1 ? end : j1;             \
        if (fetch && vb > va) {                                                     \
            const uintptr_t a = base + (va + off_w + ahead) * sizeof(T);            \
            const uintptr_t z = base + (vb - 1 + off_w + ahead) * sizeof(T);        \
            for (uintptr_t l = a; l < z; l += 64) CVX_PREFETCH_R((const void *)l);  \
            CVX_PREFETCH_R((const void *)z);                                        \
        }                                                                           \
        for (ptrdiff_t c = j; c < end; c += VL) {                                   \
            const ptrdiff_t lo = (c > j0 ? c : j0) - c;                             \
            const ptrdiff_t hi = cvx_min(cvx_min(c + VL, end), j1) - c;             \
            STORE(d + c, LOAD((const T *)(base + (c + off_w) * sizeof(T)), lo, hi));\
        }                                                                           \
    }                                                                               \
}

CVX_DEFINE_TAP_ROW(cvx_tap_row_f32_v4, float, CVX_V4, 16, cvx_row_ld_f32_v4,
                   _mm512_storeu_ps, _mm512_setzero_ps())
CVX_DEFINE_TAP_ROW(cvx_tap_row_f64_v4, double, CVX_V4, 8, cvx_row_ld_f64_v4,
                   _mm512_storeu_pd, _mm512_setzero_pd())
CVX_DEFINE_TAP_ROW(cvx_tap_row_f32_v3, float, CVX_V3, 8, cvx_row_ld_f32_v3,
                   _mm256_storeu_ps, _mm256_setzero_ps())
CVX_DEFINE_TAP_ROW(cvx_tap_row_f64_v3, double, CVX_V3, 4, cvx_row_ld_f64_v3,
                   _mm256_storeu_pd, _mm256_setzero_pd())

/* The row at the level cvx_isa: 1 when built, 0 below x86-64-v3 (or when  */
/* cvx_vector_runs is 0). */
#define CVX_DEFINE_TAP_ROW_PICK(S, T)                                               \
static int cvx_tap_row_##S(const cvx_operand *X, const T *plane, ptrdiff_t off_w,   \
                           ptrdiff_t off_h, ptrdiff_t j0, ptrdiff_t j1, ptrdiff_t i,\
                           ptrdiff_t j, ptrdiff_t nc, T *row, int fetch)            \
{                                                                                   \
    if (!cvx_vector_runs)                                                           \
        return 0;                                                                   \
    if (cvx_isa >= 4)                                                               \
        cvx_tap_row_##S##_v4(X, plane, off_w, off_h, j0, j1, i, j, nc, row, fetch); \
    else if (cvx_isa >= 3)                                                          \
        cvx_tap_row_##S##_v3(X, plane, off_w, off_h, j0, j1, i, j, nc, row, fetch); \
    else                                                                            \
        return 0;                                                                   \
    return 1;                                                                       \
}
CVX_DEFINE_TAP_ROW_PICK(f32, float)
CVX_DEFINE_TAP_ROW_PICK(f64, double)
#define CVX_TAP_ROW_f32_v3 cvx_tap_row_f32
#define CVX_TAP_ROW_f64_v3 cvx_tap_row_f64

/* The first n values of a vector (n <= VL) stored at p, the others left. */
CVX_V4 static inline void cvx_row_st_f32_v4(float *p, ptrdiff_t n, __m512 v)
{
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), v);
}
CVX_V4 static inline void cvx_row_st_f64_v4(double *p, ptrdiff_t n, __m512d v)
{
    _mm512_mask_storeu_pd(p, (__mmask8)((1u << n) - 1), v);
}
CVX_V3 static inline void cvx_row_st_f32_v3(float *p, ptrdiff_t n, __m256 v)
{
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n),
                                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), v);
}
CVX_V3 static inline void cvx_row_st_f64_v3(double *p, ptrdiff_t n, __m256d v)
{
    _mm256_maskstore_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n),
                                              _mm256_setr_epi64x(0, 1, 2, 3)), v);
}

/* cvx_add_run_S: dst[j] += src[j], j < n: the input gradient's col2im     */
/* adding one run of a tap's row back into the image, in vectors, the last  */
/* one masked (it reads and writes only the run's cells): the same sums.    */
/* Runs are an output row long at most, a few vectors.                      */
/* cvx_add_runs_S: dst[j] += src[0][j], then += src[1][j], ... src[m-1][j]: */
/* the runs of a kernel row's taps that land on the same cells of an image  */
/* row, summed in one pass in registers, in the order m calls of add_run    */
/* would add them: the same sums.                                           */
#define CVX_DEFINE_ADD_RUN(S, T, ATTR, VL, LOAD, STORE, ADD)                        \
ATTR static void cvx_add_run_##S(T *dst, const T *src, ptrdiff_t n)                 \
{                                                                                   \
    for (ptrdiff_t j = 0; j < n; j += VL) {                                         \
        const ptrdiff_t m = cvx_min(VL, n - j);                                     \
        STORE(dst + j, m, ADD(LOAD(dst + j, 0, m), LOAD(src + j, 0, m)));           \
    }                                                                               \
}                                                                                   \
ATTR static void cvx_add_runs_##S(T *dst, const T *const *src, int m, ptrdiff_t n)  \
{                                                                                   \
    for (ptrdiff_t j = 0; j < n; j += VL) {                                         \
        const ptrdiff_t r = cvx_min(VL, n - j);                                     \
        __typeof__(LOAD(dst, 0, VL)) acc = LOAD(dst + j, 0, r);                     \
        for (int k = 0; k < m; k++)                                                 \
            acc = ADD(acc, LOAD(src[k] + j, 0, r));                                 \
        STORE(dst + j, r, acc);                                                     \
    }                                                                               \
}

CVX_DEFINE_ADD_RUN(f32_v4, float, CVX_V4, 16, cvx_row_ld_f32_v4, cvx_row_st_f32_v4,
                   _mm512_add_ps)
CVX_DEFINE_ADD_RUN(f64_v4, double, CVX_V4, 8, cvx_row_ld_f64_v4, cvx_row_st_f64_v4,
                   _mm512_add_pd)
CVX_DEFINE_ADD_RUN(f32_v3, float, CVX_V3, 8, cvx_row_ld_f32_v3, cvx_row_st_f32_v3,
                   _mm256_add_ps)
CVX_DEFINE_ADD_RUN(f64_v3, double, CVX_V3, 4, cvx_row_ld_f64_v3, cvx_row_st_f64_v3,
                   _mm256_add_pd)
#endif

/* The same at the level cvx_isa (below x86-64-v3, or with cvx_vector_runs */
/* 0, value by value). */
#if CVX_X86_DISPATCH
#define CVX_RUN_VECTORS(F, S, ...)                                                  \
    if (cvx_vector_runs && cvx_isa >= 4) { F##S##_v4(__VA_ARGS__); return; }        \
    if (cvx_vector_runs && cvx_isa >= 3) { F##S##_v3(__VA_ARGS__); return; }
#else
#define CVX_RUN_VECTORS(F, S, ...)
#endif
#define CVX_DEFINE_ADD_RUN_PICK(S, T)                                               \
static void cvx_add_run_##S(T *dst, const T *src, ptrdiff_t n)                      \
{                                                                                   \
    CVX_RUN_VECTORS(cvx_add_run_, S, dst, src, n)                                   \
    for (ptrdiff_t j = 0; j < n; j++) dst[j] += src[j];                             \
}                                                                                   \
static void cvx_add_runs_##S(T *dst, const T *const *src, int m, ptrdiff_t n)       \
{                                                                                   \
    CVX_RUN_VECTORS(cvx_add_runs_, S, dst, src, m, n)                               \
    for (ptrdiff_t j = 0; j < n; j++) {                                             \
        T acc = dst[j];                                                             \
        for (int k = 0; k < m; k++) acc += src[k][j];                               \
        dst[j] = acc;                                                               \
    }                                                                               \
}
CVX_DEFINE_ADD_RUN_PICK(f32, float)
CVX_DEFINE_ADD_RUN_PICK(f64, double)
#define CVX_TAP_ROW_f32_v1(...) 0
#define CVX_TAP_ROW_f64_v1(...) 0
/* the room a row leaves for its builder's last vector */
#define CVX_ROW_SLACK 16
/* into panels narrower than the widest, the row builder only for output  */
/* rows of at most this many bytes */
#define CVX_ROW_SHORT 128

#define CVX_DEFINE_PACK(T, S, ATTR)                                                   \
ATTR static void cvx_pack_a_dense_##S(const cvx_operand *A, ptrdiff_t ic, ptrdiff_t mc,  \
                                 ptrdiff_t pc, ptrdiff_t kc, T *dst)                \
{                                                                                   \
    const T *p = (const T *)A->p;                                                   \
    for (ptrdiff_t ir = 0; ir < mc; ir += CVX_MR) {                                 \
        const ptrdiff_t mr = cvx_min(CVX_MR, mc - ir);                              \
        T *d = dst + ir * kc;                                                       \
        if (mr == CVX_MR && A->cs == 1) {   /* 4 rows interleaved: vectorised */   \
            const T *s0 = p + (ic + ir) * A->rs + pc, *s1 = s0 + A->rs;             \
            const T *s2 = s1 + A->rs, *s3 = s2 + A->rs;                             \
            for (ptrdiff_t k = 0; k < kc; k++) {                                    \
                d[k * 4] = s0[k];                                                   \
                d[k * 4 + 1] = s1[k];                                               \
                d[k * 4 + 2] = s2[k];                                               \
                d[k * 4 + 3] = s3[k];                                               \
            }                                                                       \
            continue;                                                               \
        }                                                                           \
        if (mr == CVX_MR && A->rs == 1) {   /* the 4 rows side by side: 4 values a */ \
            const T *s = p + ic + ir + pc * A->cs;  /* step, one short copy each */ \
            for (ptrdiff_t k = 0; k < kc; k++)                                      \
                memcpy(d + k * 4, s + k * A->cs, 4 * sizeof(T));                    \
            continue;                                                               \
        }                                                                           \
        for (ptrdiff_t i = 0; i < CVX_MR; i++) {                                    \
            if (i >= mr) {                                                          \
                for (ptrdiff_t k = 0; k < kc; k++) d[k * CVX_MR + i] = 0;           \
                continue;                                                           \
            }                                                                       \
            const T *s = p + (ic + ir + i) * A->rs + pc * A->cs;                    \
            if (A->cs == 1)                                                         \
                for (ptrdiff_t k = 0; k < kc; k++) d[k * CVX_MR + i] = s[k];        \
            else                                                                    \
                for (ptrdiff_t k = 0; k < kc; k++) d[k * CVX_MR + i] = s[k * A->cs];\
        }                                                                           \
    }                                                                               \
}                                                                                   \
                                                                                    \
/* Rows r0 .. r1 (r0 a multiple of MR; r1 <= M) of a dense A (M x K),     */     \
/* packed block by block along K: block pc starts at dst + pc*Mp (Mp = M     */     \
/* rounded up to MR), as cvx_operand PREPACKED reads it beside a B of kind   */     \
/* b_kind (cvx_kc_step); the whole of A for r0 = 0, r1 = M.  Parts of        */     \
/* disjoint rows can be packed side by side.                                 */     \
ATTR static void cvx_prepack_##S(const cvx_operand *A, ptrdiff_t M, ptrdiff_t K,    \
                                 ptrdiff_t r0, ptrdiff_t r1, int b_kind, T *dst)    \
{                                                                                   \
    const ptrdiff_t Mp = (M + CVX_MR - 1) / CVX_MR * CVX_MR;                        \
    const ptrdiff_t step = cvx_kc_step(K, b_kind, sizeof(T));                       \
    for (ptrdiff_t pc = 0; pc < K; pc += step) {                                    \
        const ptrdiff_t kc = cvx_min(step, K - pc);                                 \
        cvx_pack_a_dense_##S(A, r0, r1 - r0, pc, kc, dst + pc * Mp + r0 * kc);      \
    }                                                                               \
}                                                                                   \
                                                                                    \
/* Rows 0..M of a dense matrix, columns 0..K, as cvx_operand PANELS reads    */     \
/* them (rs = ps): element (r, k) is p[r*rs + off + k] for k0 <= k < k1, and */     \
/* zero elsewhere (the padding) and in the rows past M; off + k0 >= 0.       */     \
ATTR static void cvx_pack_panels_##S(const T *p, ptrdiff_t rs, ptrdiff_t off, ptrdiff_t M,\
                                     ptrdiff_t k0, ptrdiff_t k1, ptrdiff_t K, T *dst,\
                                     ptrdiff_t ps)                                  \
{                                                                                   \
    for (ptrdiff_t ir = 0; ir < M; ir += CVX_MR) {                                  \
        const ptrdiff_t mr = cvx_min(CVX_MR, M - ir);                               \
        T *d = dst + ir / CVX_MR * ps;                                              \
        memset(d, 0, k0 * CVX_MR * sizeof(T));                                      \
        const T *s0 = p + ir * rs + (off + k0);   /* (row ir, column k0): in x */   \
        T *dk = d + k0 * CVX_MR;                                                    \
        if (mr == CVX_MR) {                 /* 4 rows interleaved: vectorised */    \
            const T *s1 = s0 + rs, *s2 = s1 + rs, *s3 = s2 + rs;                    \
            for (ptrdiff_t j = 0; j < k1 - k0; j++) {                               \
                dk[j * 4] = s0[j];                                                  \
                dk[j * 4 + 1] = s1[j];                                              \
                dk[j * 4 + 2] = s2[j];                                              \
                dk[j * 4 + 3] = s3[j];                                              \
            }                                                                       \
        } else {                                                                    \
            for (ptrdiff_t j = 0; j < k1 - k0; j++)                                 \
                for (ptrdiff_t i = 0; i < CVX_MR; i++)                              \
                    dk[j * CVX_MR + i] = i < mr ? s0[i * rs + j] : 0;               \
        }                                                                           \
        memset(d + k1 * CVX_MR, 0, (K - k1) * CVX_MR * sizeof(T));                  \
    }                                                                               \
}                                                                                   \
                                                                                    \
ATTR static const T *cvx_pack_a_##S(const cvx_operand *A, ptrdiff_t ic, ptrdiff_t mc,    \
                               ptrdiff_t pc, ptrdiff_t kc, T *buf)                  \
{                                                                                   \
    if (A->kind == CVX_PREPACKED)                                                   \
        return (const T *)A->p + pc * A->rs + (A->p0 + ic) * kc;                    \
    cvx_pack_a_dense_##S(A, ic, mc, pc, kc, buf);                                   \
    return buf;                                                                     \
}                                                                                   \
                                                                                    \
/* Where output positions pos0, pos0 + 1, ... of tap k read, one output row  */     \
/* at a time: for each row, `before` zeros, then `n` values from `src` at    */     \
/* step X->sw, then `after` zeros (the cells of the padding).                */     \
typedef struct {                                                                    \
    const T *plane;                       /* the tap's channel */                   \
    ptrdiff_t off_w, off_h, j0, j1;       /* its column offset, row offset and */   \
                                          /* the output columns that read data */   \
    ptrdiff_t i, j;                       /* the next position's row and column */  \
} cvx_tap_##S;                                                                      \
                                                                                    \
/* Tap (c, p, q) from output row i, column j on (no divisions where the   */     \
/* column stride is 1). */                                                          \
ATTR static inline void cvx_tap_at_##S(const cvx_operand *X, ptrdiff_t c, ptrdiff_t p,   \
                                       ptrdiff_t q, ptrdiff_t i, ptrdiff_t j,       \
                                       cvx_tap_##S *t)                              \
{                                                                                   \
    t->plane = (const T *)X->p + c * X->H * X->W;                                   \
    t->off_w = q * X->dw - X->pl;                                                   \
    t->off_h = p * X->dh - X->pt;                                                   \
    if (X->sw == 1) {                                                               \
        t->j0 = cvx_min(t->off_w < 0 ? -t->off_w : 0, X->OW);                       \
        t->j1 = X->W - t->off_w <= 0 ? 0 : cvx_min(X->W - t->off_w, X->OW);         \
    } else {                                                                        \
        t->j0 = cvx_first_valid(t->off_w, X->sw, X->OW);                            \
        t->j1 = cvx_end_valid(t->off_w, X->sw, X->W, X->OW);                        \
    }                                                                               \
    if (t->j1 < t->j0)                                                              \
        t->j1 = t->j0;                                                              \
    t->i = i;                                                                       \
    t->j = j;                                                                       \
}                                                                                   \
                                                                                    \
ATTR static inline void cvx_tap_start_##S(const cvx_operand *X, ptrdiff_t k, ptrdiff_t pos0,\
                                     cvx_tap_##S *t)                                \
{                                                                                   \
    const ptrdiff_t q = k % X->KW, p = (k / X->KW) % X->KH, c = k / (X->KW * X->KH);\
    const ptrdiff_t i = pos0 / X->OW;                                               \
    cvx_tap_at_##S(X, c, p, q, i, pos0 - i * X->OW, t);                             \
}                                                                                   \
                                                                                    \
/* The next run of at most `left` positions, within one output row. */             \
ATTR static inline ptrdiff_t cvx_tap_run_##S(const cvx_operand *X, cvx_tap_##S *t,       \
                                        ptrdiff_t left, ptrdiff_t *before,          \
                                        const T **src, ptrdiff_t *n, ptrdiff_t *after)\
{                                                                                   \
    const ptrdiff_t ja = t->j, jb = cvx_min(X->OW, ja + left);                      \
    const ptrdiff_t r = t->i * X->sh + t->off_h;                                    \
    ptrdiff_t va = ja > t->j0 ? ja : t->j0, vb = jb < t->j1 ? jb : t->j1;           \
    if (r < 0 || r >= X->H || vb <= va)                                             \
        va = vb = jb;                                                               \
    *before = va - ja;                                                              \
    *n = vb - va;                                                                   \
    *after = jb - vb;                                                               \
    *src = *n ? t->plane + r * X->W + va * X->sw + t->off_w : NULL;                 \
    if (jb == X->OW) {                                                              \
        t->i++;                                                                     \
        t->j = 0;                                                                   \
    } else {                                                                        \
        t->j = jb;                                                                  \
    }                                                                               \
    return jb - ja;                                                                 \
}                                                                                   \
                                                                                    \
/* d[j] = src[j*s] for j < n; returns d + n.  Four a step: with one value  */     \
/* a step the loop's speed followed where the compiler happened to put it   */     \
/* (the weight gradient of a depthwise stride-2 layer took 1.4x the time in */     \
/* one build of the same loop as in another; perf put it here).             */     \
ATTR static inline T *cvx_gather_##S(T *d, const T *src, ptrdiff_t n, ptrdiff_t s)  \
{                                                                                   \
    ptrdiff_t j = 0;                                                                \
    for (; j + 4 <= n; j += 4) {                                                    \
        const T a = src[j * s], b = src[(j + 1) * s];                               \
        const T c = src[(j + 2) * s], e = src[(j + 3) * s];                         \
        d[j] = a;                                                                   \
        d[j + 1] = b;                                                               \
        d[j + 2] = c;                                                               \
        d[j + 3] = e;                                                               \
    }                                                                               \
    for (; j < n; j++) d[j] = src[j * s];                                           \
    return d + n;                                                                   \
}                                                                                   \
                                                                                    \
/* Rows k0..k1 of the im2col matrix, positions p0..p0+np: row k at         */     \
/* dst + (k - k0)*ld.                                                       */     \
ATTR static void cvx_im2col_##S(const cvx_operand *X, ptrdiff_t k0, ptrdiff_t k1,        \
                           ptrdiff_t p0, ptrdiff_t np, T *dst, ptrdiff_t ld)        \
{                                                                                   \
    for (ptrdiff_t k = k0; k < k1; k++) {                                           \
        cvx_tap_##S t;                                                              \
        T *d = dst + (k - k0) * ld;                                                 \
        cvx_tap_start_##S(X, k, p0, &t);                                            \
        for (ptrdiff_t done = 0; done < np;) {                                      \
            ptrdiff_t before, n, after;                                             \
            const T *src;                                                           \
            done += cvx_tap_run_##S(X, &t, np - done, &before, &src, &n, &after);   \
            for (ptrdiff_t j = 0; j < before; j++) *d++ = 0;                        \
            if (X->sw == 1)                                                         \
                for (ptrdiff_t j = 0; j < n; j++) *d++ = src[j];                    \
            else                                                                    \
                d = cvx_gather_##S(d, src, n, X->sw);                               \
            for (ptrdiff_t j = 0; j < after; j++) *d++ = 0;                         \
        }                                                                           \
    }                                                                               \
}                                                                                   \
                                                                                    \
/* Fetches the cache lines of a run of n values (cvx_tap_run's), two channels */    \
/* on: the cells that later taps of a packed block read.  The address may lie */    \
/* past the image, where a prefetch does nothing. */                                \
ATTR static inline void cvx_fetch_run_##S(const cvx_operand *X, const T *src,       \
                                     ptrdiff_t n)                                   \
{                                                                                   \
    const uintptr_t a = (uintptr_t)src + 2 * X->H * X->W * sizeof(T);              \
    const uintptr_t z = a + (n - 1) * X->sw * sizeof(T);                            \
    for (uintptr_t l = a; l < z; l += 64) CVX_PREFETCH_R((const void *)l);          \
    CVX_PREFETCH_R((const void *)z);                                                \
}                                                                                   \
                                                                                    \
/* The same for what tap k reads at positions pos0..pos0+np. */                     \
ATTR static inline void cvx_fetch_tap_##S(const cvx_operand *X, ptrdiff_t k,        \
                                     ptrdiff_t pos0, ptrdiff_t np)                  \
{                                                                                   \
    cvx_tap_##S t;                                                                  \
    cvx_tap_start_##S(X, k, pos0, &t);                                              \
    for (ptrdiff_t done = 0; done < np;) {                                          \
        ptrdiff_t before, n, after;                                                 \
        const T *src;                                                               \
        done += cvx_tap_run_##S(X, &t, np - done, &before, &src, &n, &after);       \
        if (n)                                                                      \
            cvx_fetch_run_##S(X, src, n);                                           \
    }                                                                               \
}                                                                                   \
                                                                                    \
/* Writes row kk of a packed block, column by column from column `col`:    */      \
/* the columns of panel t are at dst + (t*kc + kk)*nr + l.                  */      \
typedef struct { T *p; ptrdiff_t l, nr, step; } cvx_cursor_##S;                     \
                                                                                    \
ATTR static inline cvx_cursor_##S cvx_cursor_##S##_at(T *dst, ptrdiff_t kc, ptrdiff_t nr,\
                                                 ptrdiff_t kk, ptrdiff_t col)       \
{                                                                                   \
    cvx_cursor_##S c;                                                               \
    c.p = dst + ((col / nr) * kc + kk) * nr + col % nr;                             \
    c.l = col % nr;                                                                 \
    c.nr = nr;                                                                      \
    c.step = (kc - 1) * nr;    /* from the end of one panel's row to the next's */  \
    return c;                                                                       \
}                                                                                   \
                                                                                    \
/* n values (src[0], src[step], ...; zeros when src is NULL) at the cursor. */     \
ATTR static inline void cvx_put_##S(cvx_cursor_##S *c, const T *src, ptrdiff_t step,     \
                               ptrdiff_t n)                                         \
{                                                                                   \
    while (n > 0) {                                                                 \
        const ptrdiff_t run = cvx_min(n, c->nr - c->l);                             \
        T *d = c->p;                                                                \
        if (!src)                                                                   \
            for (ptrdiff_t j = 0; j < run; j++) d[j] = 0;                           \
        else if (step == 1)                                                         \
            for (ptrdiff_t j = 0; j < run; j++) d[j] = src[j];                      \
        else if (step == 2) /* (a constant step: vectorised with shuffles) */       \
            for (ptrdiff_t j = 0; j < run; j++) d[j] = src[2 * j];                  \
        else                                                                        \
            for (ptrdiff_t j = 0; j < run; j++) d[j] = src[j * step];               \
        if (src)                                                                    \
            src += run * step;                                                      \
        n -= run;                                                                   \
        c->l += run;                                                                \
        c->p += run;                                                                \
        if (c->l == c->nr) {                                                        \
            c->l = 0;                                                               \
            c->p += c->step;                                                        \
        }                                                                           \
    }                                                                               \
}                                                                                   \
                                                                                    \
/* Row kk's values, built in `from`, copied into the panels of nr columns. */     \
ATTR static inline CVX_ALWAYS_INLINE void cvx_row_panels_##S(                      \
    const T *from, ptrdiff_t nc, T *dst, ptrdiff_t kc, ptrdiff_t nr, ptrdiff_t kk)  \
{                                                                                   \
    T *p = dst + kk * nr;                                                           \
    ptrdiff_t col = 0;                                                              \
    if (nr == CVX_NR_MAX)                                                           \
        for (; col + CVX_NR_MAX <= nc; col += CVX_NR_MAX, p += kc * CVX_NR_MAX)     \
            for (ptrdiff_t l = 0; l < CVX_NR_MAX; l++) p[l] = from[col + l];        \
    else                                                                            \
        for (; col + nr <= nc; col += nr, p += kc * nr)                             \
            for (ptrdiff_t l = 0; l < nr; l++) p[l] = from[col + l];                \
    for (ptrdiff_t l = 0; col + l < nc; l++) p[l] = from[col + l];                  \
}                                                                                   \
                                                                                    \
/* Row kk of a packed block by the vector row builder (CVX_TAP_ROW_*):     */      \
/* 1 when built, 0 where it does not apply (out of line: the products     */      \
/* inline cvx_pack_b, which it would make larger).                       */      \
ATTR static CVX_NOINLINE int cvx_pack_tap_row_##S(                                  \
    const cvx_operand *X, const cvx_tap_##S *t, int first, ptrdiff_t nc, T *dst,    \
    ptrdiff_t kc, ptrdiff_t nr, ptrdiff_t kk)                                       \
{                                                                                   \
    T row[CVX_NC + CVX_ROW_SLACK];                                                  \
    if (!CVX_TAP_ROW_##S(X, t->plane, t->off_w, t->off_h, t->j0, t->j1, t->i, t->j, \
                         nc, row, first))                                           \
        return 0;                                                                   \
    cvx_row_panels_##S(row, nc, dst, kc, nr, kk);                                   \
    return 1;                                                                       \
}                                                                                   \
                                                                                    \
/* Row kk of a packed block: tap (c, p, q) at nc output positions from     */      \
/* row i, column j on.  At unit column stride, where they span several     */      \
/* output rows, from x86-64-v3 on: the vector row builder                  */      \
/* (cvx_pack_tap_row), into panels narrower than the widest only for       */      \
/* output rows of at most CVX_ROW_SHORT bytes.  Intel Xeon (AVX-512), one  */      \
/* thread, the packing alone, per value, run by run -> by the builder:     */      \
/* 3x3 float32 at x86-64-v4, 7x7 images 1.35 -> 0.58 ns, 14x14 0.66 ->     */      \
/* 0.27, 28x28 0.33 -> 0.19, 56x56 0.23 -> 0.15; float64 in panels of 24,  */      \
/* 7x7 1.29 -> 0.70, 14x14 0.72 -> 0.48, but 56x56 0.28 -> 0.40 (the copy  */      \
/* into narrow panels), which CVX_ROW_SHORT leaves run by run.  Else: into */      \
/* panels of the widest width (floats at x86-64-v4) the values are         */      \
/* gathered into one row, then copied panel by panel: 0.89-1.00x the time  */      \
/* of writing them run by run into the panels (Intel Xeon, 2 threads, 11   */      \
/* forward passes: 1x1, 3x3, 5x5, 7x7, strided, grouped, dilated, 1-D, one */      \
/* image; geomean 0.964).  Into narrower panels the row lost (1.02x at     */      \
/* x86-64-v3's 24 floats, 1.01x at v4's 24 doubles), so they are written   */      \
/* run by run.  A block that is one run at unit stride (1-D, no padding in */      \
/* it) is copied into the panels from the image: 0.95-0.98x on four 1-D   */      \
/* passes.  Always inlined: as this file grew, GCC stopped inlining it     */      \
/* into cvx_pack_b and the forward passes took 1.05-1.14x the time (3x3    */      \
/* and 5x5 float32).                                                       */      \
ATTR static inline CVX_ALWAYS_INLINE void cvx_pack_tap_##S(                        \
    const cvx_operand *X, ptrdiff_t c, ptrdiff_t p, ptrdiff_t q, ptrdiff_t i, ptrdiff_t j,\
    ptrdiff_t nc, T *dst, ptrdiff_t kc, ptrdiff_t nr, ptrdiff_t kk)                 \
{                                                                                   \
    const int flat = nr == CVX_NR_MAX;                                              \
    const int first = q == 0;   /* the first column of taps */                     \
    T row[CVX_NC];                                                                  \
    const T *from = row;                                                            \
    cvx_tap_##S t;                                                                  \
    cvx_tap_at_##S(X, c, p, q, i, j, &t);                                           \
    if (X->sw == 1 && X->OW - t.j < nc                                              \
        && (flat || X->OW * (ptrdiff_t)sizeof(T) <= CVX_ROW_SHORT)                  \
        && cvx_pack_tap_row_##S(X, &t, first, nc, dst, kc, nr, kk))                 \
        return;   /* several output rows' runs, by the vector row builder */        \
    cvx_cursor_##S cur = flat ? cvx_cursor_##S##_at(row, 1, CVX_NC, 0, 0)           \
                              : cvx_cursor_##S##_at(dst, kc, nr, kk, 0);            \
    for (ptrdiff_t done = 0; done < nc;) {                                          \
        ptrdiff_t before, n, after;                                                 \
        const T *src;                                                               \
        done += cvx_tap_run_##S(X, &t, nc - done, &before, &src, &n, &after);       \
        if (n && first) /* the first column of taps: the others read */            \
            cvx_fetch_run_##S(X, src, n); /* the same lines */                      \
        if (flat && n == nc && X->sw == 1) { /* one run, in place: the panels */    \
            from = src;                      /* are copied from the image     */    \
            break;                                                                  \
        }                                                                           \
        cvx_put_##S(&cur, NULL, 0, before);                                         \
        cvx_put_##S(&cur, src, X->sw, n);                                           \
        cvx_put_##S(&cur, NULL, 0, after);                                          \
    }                                                                               \
    if (flat)                                                                       \
        cvx_row_panels_##S(from, nc, dst, kc, CVX_NR_MAX, kk);                      \
}                                                                                   \
                                                                                    \
/* Always inlined into the products: once the row builder was added, GCC  */      \
/* kept it out of line, and the forward passes of float64 3x3 and 5x5     */      \
/* layers on 28x28 to 32x32 images, packed run by run, took 1.03-1.10x    */      \
/* the time (2 threads, the same bits).                                   */      \
ATTR static inline CVX_ALWAYS_INLINE void cvx_pack_b_##S(                           \
    const cvx_operand *B, ptrdiff_t pc, ptrdiff_t kc, ptrdiff_t jc, ptrdiff_t nc,    \
    ptrdiff_t nr, T *dst)                                                           \
{                                                                                   \
    const ptrdiff_t ncp = (nc + nr - 1) / nr * nr;                                  \
    if (B->kind == CVX_DENSE && B->rs == 1 && B->cs != 1) {                         \
        /* stored by columns (a 1x1 weight gradient's input, transposed): each */   \
        /* column's values run down one column of its panel, read in sweeps */      \
        /* (by rows, every value came from a different cache line) */               \
        cvx_pack_cols_##S((const T *)B->p + pc + jc * B->cs, B->cs, nc, kc, dst, nr, 0);\
        for (ptrdiff_t kk = 0; kk < kc; kk++) {                                     \
            cvx_cursor_##S cur = cvx_cursor_##S##_at(dst, kc, nr, kk, nc);          \
            cvx_put_##S(&cur, NULL, 0, ncp - nc);                                   \
        }                                                                           \
        return;                                                                     \
    }                                                                               \
    /* an im2col block: its first tap (c, p, q) and output position (i0, j0), */  \
    /* the tap then stepped along the block */                                     \
    ptrdiff_t c = 0, p = 0, q = 0, i0 = 0, j0 = 0;                                  \
    if (B->kind == CVX_IM2COL) {                                                    \
        q = pc % B->KW;                                                             \
        p = (pc / B->KW) % B->KH;                                                   \
        c = pc / (B->KW * B->KH);                                                   \
        i0 = (B->p0 + jc) / B->OW;                                                  \
        j0 = B->p0 + jc - i0 * B->OW;                                               \
    }                                                                               \
    for (ptrdiff_t kk = 0; kk < kc; kk++) {                                         \
        if (B->kind == CVX_DENSE) {                                                 \
            cvx_cursor_##S cur = cvx_cursor_##S##_at(dst, kc, nr, kk, 0);           \
            cvx_put_##S(&cur, (const T *)B->p + (pc + kk) * B->rs + jc * B->cs,     \
                        B->cs, nc);                                                 \
        } else if (B->kind == CVX_IM2COL) {                                         \
            cvx_pack_tap_##S(B, c, p, q, i0, j0, nc, dst, kc, nr, kk);              \
            if (++q == B->KW) {                                                     \
                q = 0;                                                              \
                if (++p == B->KH) {                                                 \
                    p = 0;                                                          \
                    c++;                                                            \
                }                                                                   \
            }                                                                       \
        }                                                                           \
        /* the unused columns of the last panel */                                  \
        cvx_cursor_##S cur = cvx_cursor_##S##_at(dst, kc, nr, kk, nc);              \
        cvx_put_##S(&cur, NULL, 0, ncp - nc);                                       \
    }                                                                               \
    if (B->kind == CVX_IM2COL_T) {                                                  \
        /* rows are output positions pc..pc+kc, columns taps jc..jc+nc: a tap's */  \
        /* positions go down one column of a panel */                               \
        /* (tap by tap: 8 at a time, transposed, took 1.05-1.2x the time) */        \
        for (ptrdiff_t j = 0; j < nc; j++) {                                        \
            T col[CVX_KC];                                                          \
            const ptrdiff_t k = B->k0 + jc + j;                                     \
            cvx_im2col_##S(B, k, k + 1, B->p0 + pc, kc, col, kc);                   \
            if (k % B->KW == 0) /* as cvx_pack_tap does */                          \
                cvx_fetch_tap_##S(B, k, B->p0 + pc, kc);                            \
            T *d = dst + (j / nr) * nr * kc + j % nr;                               \
            for (ptrdiff_t kk = 0; kk < kc; kk++) d[kk * nr] = col[kk];             \
        }                                                                           \
    }                                                                               \
}

/* Columns j0 .. j0+n-1 of a packed block whose columns are stored by
 * columns (a 1x1 weight gradient's input, transposed): column j0 + j's
 * kc values at src + j*step, each running down one column of its panel.
 * CVX_DEFINE_PACK_COLS_T (x86-64-v3, GCC): groups of G = 32 / sizeof(T)
 * columns in one panel in blocks of G x G values, transposed in registers
 * (three rounds of interleaving for 8 floats, two for 4 doubles), so that
 * each row of G values is one store; the scalar loop stored value by value
 * (19% of a 1x1 float32 weight gradient's time).  Not for doubles in panels
 * of 12 (x86-64-v3's), where the blocks took 1.06-1.17x the time of the
 * scalar loop on three 1x1 weight gradients of 24 to 96 filters, and 0.76-
 * 0.96x in panels of 24 (x86-64-v4's). */
#define CVX_DEFINE_PACK_COLS(T, S, ATTR)                                            \
ATTR static void cvx_pack_cols_##S(const T *src, ptrdiff_t step, ptrdiff_t n,       \
                                   ptrdiff_t kc, T *dst, ptrdiff_t nr, ptrdiff_t j0)\
{                                                                                   \
    for (ptrdiff_t j = 0; j < n; j++) {                                             \
        const ptrdiff_t col = j0 + j;                                               \
        T *d = dst + (col / nr) * nr * kc + col % nr;                               \
        const T *sj = src + j * step;                                               \
        for (ptrdiff_t kk = 0; kk < kc; kk++) d[kk * nr] = sj[kk];                  \
    }                                                                               \
}

#define CVX_DEFINE_PACK_COLS_T(T, S, IT, ATTR, LO, HI)                              \
typedef T cvx_pv_##S __attribute__((vector_size(32)));                              \
typedef IT cvx_pm_##S __attribute__((vector_size(32)));                             \
ATTR static void cvx_pack_cols_##S(const T *src, ptrdiff_t step, ptrdiff_t n,       \
                                   ptrdiff_t kc, T *dst, ptrdiff_t nr, ptrdiff_t j0)\
{                                                                                   \
    enum { G = 32 / sizeof(T), H = G / 2 };                                         \
    const cvx_pm_##S lo = {CVX_UNPAREN LO}, hi = {CVX_UNPAREN HI};                  \
    for (ptrdiff_t j = 0; j < n;) {                                                 \
        const ptrdiff_t col = j0 + j, l = col % nr;                                 \
        T *d = dst + (col / nr) * nr * kc + l;                                      \
        const T *sj = src + j * step;                                               \
        if (j + G > n || l + G > nr || (G == 4 && nr < 24)) {   /* a column alone */\
            for (ptrdiff_t kk = 0; kk < kc; kk++) d[kk * nr] = sj[kk];              \
            j++;                                                                    \
            continue;                                                               \
        }                                                                           \
        ptrdiff_t kk = 0;                                                           \
        for (; kk + G <= kc; kk += G) {   /* a G x G block, transposed */           \
            cvx_pv_##S r[G], t[G];                                                  \
            for (int i = 0; i < G; i++) memcpy(&r[i], sj + i * step + kk, sizeof r[i]);\
            for (int round = 0; round < (G == 8 ? 3 : 2); round++) {                \
                for (int i = 0; i < H; i++) {                                       \
                    t[2 * i] = __builtin_shuffle(r[i], r[i + H], lo);               \
                    t[2 * i + 1] = __builtin_shuffle(r[i], r[i + H], hi);           \
                }                                                                   \
                for (int i = 0; i < G; i++) r[i] = t[i];                            \
            }                                                                       \
            for (int i = 0; i < G; i++) memcpy(d + (kk + i) * nr, &r[i], sizeof r[i]);\
        }                                                                           \
        for (; kk < kc; kk++)                                                       \
            for (int i = 0; i < G; i++) d[kk * nr + i] = sj[i * step + kk];         \
        j += G;                                                                     \
    }                                                                               \
}

#if CVX_X86_DISPATCH
CVX_DEFINE_PACK_COLS_T(float, f32_v3, int32_t, CVX_V3, (0, 8, 1, 9, 2, 10, 3, 11),
                       (4, 12, 5, 13, 6, 14, 7, 15))
CVX_DEFINE_PACK_COLS_T(double, f64_v3, int64_t, CVX_V3, (0, 4, 1, 5), (2, 6, 3, 7))
CVX_DEFINE_PACK(float, f32_v3, CVX_V3)
CVX_DEFINE_PACK(double, f64_v3, CVX_V3)
#endif
CVX_DEFINE_PACK_COLS(float, f32_v1, )
CVX_DEFINE_PACK_COLS(double, f64_v1, )
CVX_DEFINE_PACK(float, f32_v1, )
CVX_DEFINE_PACK(double, f64_v1, )

/* ---------------------------------------------------------------------- */
/* Micro-kernel and driver, for each element type and instruction set.     */
/* ---------------------------------------------------------------------- */

/* The driver's call of the micro-kernel for its tile, with NV vectors of
 * columns: one inlined copy per layout of A (read in place, packed by
 * blocks, or packed in panels along its whole depth: `a_here`, `a_panels`,
 * constants in each driver, so that each holds only the copies it runs)
 * and height (one or two micro-panels), all strides fixed.  It reads the
 * driver's locals (`first`: the first panel of B, whose sweep reads A). */
#define CVX_GEMM_MICRO_CALLS(NAME, NV)                                              \
    do {                                                                            \
        if (a_here && two)                                                          \
            NAME##_micro(kc, ap + ir * A->rs, A->rs, 1, CVX_MR * A->rs, bp, ldb, cp, \
                         ldc, acc, bi, m, n, 2, NV, first);                         \
        else if (a_here)                                                            \
            NAME##_micro(kc, ap + ir * A->rs, A->rs, 1, CVX_MR * A->rs, bp, ldb, cp, \
                         ldc, acc, bi, m, n, 1, NV, first);                         \
        else if (a_columns && two)                                                  \
            NAME##_micro(kc, ap + ir, 1, A->cs, CVX_MR, bp, ldb, cp, ldc, acc, bi, m, \
                         n, 2, NV, first);                                          \
        else if (a_columns)                                                         \
            NAME##_micro(kc, ap + ir, 1, A->cs, CVX_MR, bp, ldb, cp, ldc, acc, bi, m, \
                         n, 1, NV, first);                                          \
        else if (a_panels && two)                                                   \
            NAME##_micro(kc, ap + ir / CVX_MR * A->rs, 1, CVX_MR, A->rs, bp, ldb, cp, \
                         ldc, acc, bi, m, n, 2, NV, first);                         \
        else if (a_panels)                                                          \
            NAME##_micro(kc, ap + ir / CVX_MR * A->rs, 1, CVX_MR, A->rs, bp, ldb, cp, \
                         ldc, acc, bi, m, n, 1, NV, first);                         \
        else if (two)                                                               \
            NAME##_micro(kc, ap + ir * kc, 1, CVX_MR, CVX_MR * kc, bp, ldb, cp, ldc, \
                         acc, bi, m, n, 2, NV, first);                              \
        else                                                                        \
            NAME##_micro(kc, ap + ir * kc, 1, CVX_MR, CVX_MR * kc, bp, ldb, cp, ldc, \
                         acc, bi, m, n, 1, NV, first);                              \
    } while (0)

/* The driver's tile at row ir of its block and column jr of its panels: one
 * or two micro-panels high (two where PANELS is 2 and the rows remain), at
 * most W columns wide, one inlined copy per layout, height and vector count,
 * strides fixed; ir then moves past it.  Both drivers expand it, each into
 * its own loops (a macro, not a shared function: see NAME##_taps). */
#define CVX_GEMM_TILE(NAME, PANELS, W)                                              \
    do {                                                                            \
        const int two = (PANELS) == 2 && mc - ir > CVX_MR;                          \
        const ptrdiff_t m = cvx_min(two ? 2 * CVX_MR : CVX_MR, mc - ir);            \
        const ptrdiff_t n = cvx_min((W), nc - jr);                                  \
        if (n > (CVX_NV - 1) * NAME##_VL)                                           \
            CVX_GEMM_MICRO_CALLS(NAME, CVX_NV);                                     \
        else if (n > NAME##_VL)                                                     \
            CVX_GEMM_MICRO_CALLS(NAME, 2);                                          \
        else                                                                        \
            CVX_GEMM_MICRO_CALLS(NAME, 1);                                          \
        ir += two ? 2 * CVX_MR : CVX_MR;                                            \
    } while (0)

#define CVX_DEFINE_GEMM(NAME, S, T, VB, ATTR, PANELS)                               \
CVX_VECTOR_TYPE(T, NAME##_vt, VB);                                                  \
enum { NAME##_VL = VB / sizeof(T), NAME##_NR = CVX_NV * (VB / sizeof(T)) };         \
                                                                                    \
/* C[0:m, 0:n] (=|+=) bias + a (R x kc, R = P*MR rows: P micro-panels,   */     \
/* pa apart; element (i, k) of a panel at a[i*ia + k*ka]; packed, ka = MR  */     \
/* and ia = 1; read in place, ka = 1 and ia = its row step; rows past m    */     \
/* read row m - 1, whose sums are dropped) . b (kc x NV*VL, rows ldb      */     \
/* apart).  P (1 or 2) and NV (1 to CVX_NV: a last panel of n < NR columns */     \
/* sums only the vectors it needs) are constants once inlined.  `ahead`:   */     \
/* the first panel of B, whose sweep reads A's block from memory.          */     \
ATTR static inline CVX_ALWAYS_INLINE void NAME##_micro(                             \
    ptrdiff_t kc, const T *restrict a, ptrdiff_t ia, ptrdiff_t ka, ptrdiff_t pa,    \
    const T *restrict b, ptrdiff_t ldb, T *c,                                       \
    ptrdiff_t ldc, int accumulate, const T *bias, ptrdiff_t m, ptrdiff_t n,         \
    const int P, const int NV, const int ahead)                                     \
{                                                                                   \
    enum { VL = NAME##_VL, NR = NAME##_NR, RMAX = 2 * CVX_MR };                     \
    const int R = P * CVX_MR;                                                       \
    NAME##_vt acc[RMAX][CVX_NV];                                                    \
    const T *ar[RMAX];                                                              \
    for (int i = 0; i < R; i++) {                                                   \
        const T b0 = bias && i < m ? bias[i] : (T)0;                                \
        for (int v = 0; v < NV; v++) acc[i][v] = CVX_V0ADD(NAME##_vt, b0);          \
        const ptrdiff_t r = i < m ? i : m - 1;                                      \
        ar[i] = a + r / CVX_MR * pa + r % CVX_MR * ia;                              \
    }                                                                               \
    /* C's lines, fetched while the sums run: a tile's rows are ldc apart, */    \
    /* and stored to at the end they stalled on their misses.             */    \
    if (m == R && n == NV * VL)                                                     \
        for (int i = 0; i < R; i++) {                                               \
            const char *row = (const char *)(c + i * ldc);                          \
            for (int v = 0; v < NV * VL * (int)sizeof(T); v += 64)                  \
                CVX_PREFETCH_W(row + v);                                            \
            CVX_PREFETCH_W(row + NV * VL * sizeof(T) - 1);                          \
        }                                                                           \
    for (ptrdiff_t k = 0; k < kc; k++) {                                            \
        /* A read in place, first sweep: each of its R rows, 4 lines ahead */    \
        /* (doubles only: see the header's note on prefetching)             */    \
        if (sizeof(T) == 8 && ahead && ka == 1 && k % 8 == 0 && k + 32 < kc)        \
            for (int i = 0; i < R; i++) CVX_PREFETCH_R(ar[i] + k + 32);             \
        NAME##_vt bv[CVX_NV];                                                       \
        for (int v = 0; v < NV; v++) bv[v] = CVX_VLD(NAME##_vt, b + k * ldb + v * VL); \
        for (int i = 0; i < R; i++) {                                               \
            const NAME##_vt ai = CVX_VSUB0(NAME##_vt, ar[i][k * ka]); /* broadcast */ \
            for (int v = 0; v < NV; v++) CVX_VMAC(acc[i][v], ai, bv[v]);            \
        }                                                                           \
    }                                                                               \
    if (m == R && n == NV * VL) {                                                   \
        for (int i = 0; i < R; i++)                                                 \
            for (int v = 0; v < NV; v++) {                                          \
                T *p = c + i * ldc + v * VL;                                        \
                if (accumulate) {                                                   \
                    const NAME##_vt cv = CVX_VLD(NAME##_vt, p);                     \
                    CVX_VADD(acc[i][v], cv, acc[i][v]);                             \
                }                                                                   \
                CVX_VST(p, acc[i][v]);                                              \
            }                                                                       \
    } else {                                                                        \
        T tmp[RMAX][NR];                                                            \
        for (int i = 0; i < R; i++)                                                 \
            for (int v = 0; v < NV; v++) CVX_VST(tmp[i] + v * VL, acc[i][v]);       \
        for (ptrdiff_t i = 0; i < m; i++)                                           \
            for (ptrdiff_t j = 0; j < n; j++)                                       \
                c[i * ldc + j] = accumulate ? c[i * ldc + j] + tmp[i][j] : tmp[i][j];\
    }                                                                               \
}                                                                                   \
                                                                                    \
/* Returns 1 when *stop was seen set (C is then incomplete), else 0; *stop */    \
/* is read before each block of CVX_MC x CVX_NC x step multiply-adds.        */     \
ATTR static int NAME(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const cvx_operand *A,   \
                     const cvx_operand *B, T *abuf, T *bbuf, T *C, ptrdiff_t ldc,   \
                     int accumulate, const T *bias, const int *stop)                \
{                                                                                   \
    enum { NR = NAME##_NR };                                                        \
    const ptrdiff_t step = cvx_kc_step(K, B->kind, sizeof(T));                      \
    for (ptrdiff_t jc = 0; jc < N; jc += CVX_NC) {                                  \
        const ptrdiff_t nc = cvx_min(CVX_NC, N - jc);                               \
        for (ptrdiff_t pc = 0; pc < K; pc += step) {                                \
            const ptrdiff_t kc = cvx_min(step, K - pc);                             \
            if (CVX_STOPPED(stop))                                                  \
                return 1;                                                           \
            /* ROWS: full panels read in place, the last partial one packed; */   \
            /* ROWS_WHOLE: that one read in place too                        */   \
            const int rows = B->kind == CVX_ROWS || B->kind == CVX_ROWS_WHOLE;      \
            const ptrdiff_t inplace = B->kind == CVX_ROWS_WHOLE ? nc                \
                                    : rows ? nc / NR * NR : 0;                      \
            if (rows) {                                                             \
                if (nc > inplace) {                                                 \
                    cvx_operand tail = *B;                                          \
                    tail.kind = CVX_DENSE;                                          \
                    tail.cs = 1;                                                    \
                    cvx_pack_b_##S(&tail, pc, kc, jc + inplace, nc - inplace, NR,   \
                                   bbuf);                                           \
                }                                                                   \
            } else {                                                                \
                cvx_pack_b_##S(B, pc, kc, jc, nc, NR, bbuf);                        \
            }                                                                       \
            const T *brow = (const T *)B->p + pc * B->rs + jc;                      \
            const int acc = accumulate || pc > 0;                                   \
            for (ptrdiff_t ic = 0; ic < M; ic += CVX_MC) {                          \
                const ptrdiff_t mc = cvx_min(CVX_MC, M - ic);                       \
                if (ic && CVX_STOPPED(stop)) /* at most MC x NC x KC between checks */\
                    return 1;                                                       \
                /* A dense along the depth is read in place (packing it    */ \
                /* would copy each value to use it NR times); else packed.  */ \
                const int a_here = A->kind == CVX_DENSE && A->cs == 1, a_panels = 0;\
                const int a_columns = A->kind == CVX_COLUMNS;                       \
                const T *ap = a_here ? (const T *)A->p + ic * A->rs + pc            \
                            : a_columns ? (const T *)A->p + ic + pc * A->cs         \
                                        : cvx_pack_a_##S(A, ic, mc, pc, kc, abuf);  \
                for (ptrdiff_t jr = 0; jr < nc; jr += NR) {                         \
                    const int here = jr < inplace, first = jr == 0;                 \
                    const T *bp = here ? brow + jr : bbuf + (jr - inplace) * kc;    \
                    const ptrdiff_t ldb = here ? B->rs : NR;                        \
                    for (ptrdiff_t ir = 0; ir < mc;) {                              \
                        T *cp = C + (ic + ir) * ldc + jc + jr;                      \
                        const T *bi = acc || !bias ? NULL : bias + ic + ir;         \
                        CVX_GEMM_TILE(NAME, PANELS, NR);                            \
                    }                                                               \
                }                                                                   \
            }                                                                       \
        }                                                                           \
    }                                                                               \
    return 0;                                                                       \
}                                                                                   \
                                                                                    \
/* C + t*cstep += A_t . B for taps t = 0 .. taps - 1, where A_t is A, of  */    \
/* kind CVX_PANELS, moved t*astep values along its depth: each block of B */    \
/* is packed once and serves every tap (a 1-D weight gradient with the    */    \
/* taps as rows, B the output gradient).  Its panels are of 2 vectors     */    \
/* where NR's would end with one of 1 (64 floats at x86-64-v4: 32 + 32    */    \
/* columns, not 48 + 16, whose last sums 8 vectors to 9 loads).  The loops */    \
/* below NAME's own, not shared with it: as one function, or with a sweep */    \
/* of a block shared by both, NAME took 1.07-1.23x the time on float64     */    \
/* 1x1 weight gradients and 3x3 forward passes (Intel Xeon, 2 threads).    */    \
/* Returns 1 when *stop was seen set, checked as NAME does.                */    \
ATTR static int NAME##_taps(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const cvx_operand *A,\
                            const cvx_operand *B, T *bbuf, T *C, ptrdiff_t ldc,     \
                            ptrdiff_t taps, ptrdiff_t astep, ptrdiff_t cstep,       \
                            const int *stop)                                        \
{                                                                                   \
    enum { NR = NAME##_NR, VL = NAME##_VL };                                        \
    const int a_here = 0, a_panels = 1, a_columns = 0, acc = 1;  /* (for the */     \
    /* calls of CVX_GEMM_MICRO_CALLS) */                                            \
    const T *bi = NULL;                                                             \
    for (ptrdiff_t jc = 0; jc < N; jc += CVX_NC) {                                  \
        const ptrdiff_t nc = cvx_min(CVX_NC, N - jc), rem = nc % NR;                \
        const ptrdiff_t nr = rem && rem <= VL && nc % (2 * VL) == 0 ? 2 * VL : NR;  \
        for (ptrdiff_t pc = 0; pc < K; pc += CVX_KC) {                              \
            const ptrdiff_t kc = cvx_min(CVX_KC, K - pc);                           \
            cvx_pack_b_##S(B, pc, kc, jc, nc, nr, bbuf);                            \
            for (ptrdiff_t t = 0; t < taps; t++) {                                  \
                const T *a0 = (const T *)A->p + t * astep + pc * CVX_MR;            \
                T *c0 = C + t * cstep + jc;                                         \
                for (ptrdiff_t ic = 0; ic < M; ic += CVX_MC) {                      \
                    const ptrdiff_t mc = cvx_min(CVX_MC, M - ic);                   \
                    if (CVX_STOPPED(stop)) /* at most MC x NC x KC between checks */\
                        return 1;                                                   \
                    const T *ap = a0 + ic / CVX_MR * A->rs;                         \
                    for (ptrdiff_t jr = 0; jr < nc; jr += nr) {                     \
                        const int first = jr == 0;                                  \
                        const T *bp = bbuf + jr * kc;                               \
                        const ptrdiff_t ldb = nr;                                   \
                        for (ptrdiff_t ir = 0; ir < mc;) {                          \
                            T *cp = c0 + (ic + ir) * ldc + jr;                      \
                            CVX_GEMM_TILE(NAME, PANELS, nr);                        \
                        }                                                           \
                    }                                                               \
                }                                                                   \
            }                                                                       \
        }                                                                           \
    }                                                                               \
    return 0;                                                                       \
}

#if CVX_X86_DISPATCH
CVX_DEFINE_GEMM(cvx_gemm_f32_v4, f32_v3, float, 64, CVX_V4, 2)
CVX_DEFINE_GEMM(cvx_gemm_f64_v4, f64_v3, double, 64, CVX_V4, 2)
CVX_DEFINE_GEMM(cvx_gemm_f32_v3, f32_v3, float, 32, CVX_V3, 1)
CVX_DEFINE_GEMM(cvx_gemm_f64_v3, f64_v3, double, 32, CVX_V3, 1)
#endif
CVX_DEFINE_GEMM(cvx_gemm_f32_v1, f32_v1, float, 16, , 1)
CVX_DEFINE_GEMM(cvx_gemm_f64_v1, f64_v1, double, 16, , 1)

/* The products at the instruction-set level cvx_isa. */
#if CVX_X86_DISPATCH
#define CVX_DISPATCH_GEMM(S, T)                                                     \
static int cvx_gemm_##S(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const cvx_operand *A,\
                        const cvx_operand *B, T *abuf, T *bbuf, T *C, ptrdiff_t ldc,\
                        int accumulate, const T *bias, const int *stop)             \
{                                                                                   \
    if (cvx_isa >= 4)                                                               \
        return cvx_gemm_##S##_v4(M, N, K, A, B, abuf, bbuf, C, ldc, accumulate, bias, stop);\
    if (cvx_isa >= 3)                                                               \
        return cvx_gemm_##S##_v3(M, N, K, A, B, abuf, bbuf, C, ldc, accumulate, bias, stop);\
    return cvx_gemm_##S##_v1(M, N, K, A, B, abuf, bbuf, C, ldc, accumulate, bias, stop);\
}                                                                                   \
static int cvx_gemm_taps_##S(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const cvx_operand *A,\
                             const cvx_operand *B, T *bbuf, T *C, ptrdiff_t ldc,    \
                             ptrdiff_t taps, ptrdiff_t astep, ptrdiff_t cstep,      \
                             const int *stop)                                       \
{                                                                                   \
    if (cvx_isa >= 4)                                                               \
        return cvx_gemm_##S##_v4_taps(M, N, K, A, B, bbuf, C, ldc, taps, astep, cstep, stop);\
    if (cvx_isa >= 3)                                                               \
        return cvx_gemm_##S##_v3_taps(M, N, K, A, B, bbuf, C, ldc, taps, astep, cstep, stop);\
    return cvx_gemm_##S##_v1_taps(M, N, K, A, B, bbuf, C, ldc, taps, astep, cstep, stop);\
}
#else
#define CVX_DISPATCH_GEMM(S, T)                                                     \
static int cvx_gemm_##S(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const cvx_operand *A,\
                        const cvx_operand *B, T *abuf, T *bbuf, T *C, ptrdiff_t ldc,\
                        int accumulate, const T *bias, const int *stop)             \
{ return cvx_gemm_##S##_v1(M, N, K, A, B, abuf, bbuf, C, ldc, accumulate, bias, stop); }\
static int cvx_gemm_taps_##S(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const cvx_operand *A,\
                             const cvx_operand *B, T *bbuf, T *C, ptrdiff_t ldc,    \
                             ptrdiff_t taps, ptrdiff_t astep, ptrdiff_t cstep,      \
                             const int *stop)                                       \
{ return cvx_gemm_##S##_v1_taps(M, N, K, A, B, bbuf, C, ldc, taps, astep, cstep, stop); }
#endif

CVX_DISPATCH_GEMM(f32, float)
CVX_DISPATCH_GEMM(f64, double)

/* The packers the kernels in _core.pyx call directly, at the level cvx_isa. */
#if CVX_X86_DISPATCH
#define CVX_DISPATCH_PACK(S, T)                                                     \
static void cvx_prepack_##S(const cvx_operand *A, ptrdiff_t M, ptrdiff_t K,       \
                            ptrdiff_t r0, ptrdiff_t r1, int b_kind, T *dst)         \
{                                                                                   \
    if (cvx_isa >= 3) cvx_prepack_##S##_v3(A, M, K, r0, r1, b_kind, dst);           \
    else cvx_prepack_##S##_v1(A, M, K, r0, r1, b_kind, dst);                        \
}                                                                                   \
static void cvx_im2col_##S(const cvx_operand *X, ptrdiff_t k0, ptrdiff_t k1,        \
                           ptrdiff_t p0, ptrdiff_t np, T *dst, ptrdiff_t ld)        \
{                                                                                   \
    if (cvx_isa >= 3) cvx_im2col_##S##_v3(X, k0, k1, p0, np, dst, ld);              \
    else cvx_im2col_##S##_v1(X, k0, k1, p0, np, dst, ld);                           \
}                                                                                   \
static void cvx_pack_panels_##S(const T *p, ptrdiff_t rs, ptrdiff_t off, ptrdiff_t M,\
                                ptrdiff_t k0, ptrdiff_t k1, ptrdiff_t K, T *dst,    \
                                ptrdiff_t ps)                                       \
{                                                                                   \
    if (cvx_isa >= 3) cvx_pack_panels_##S##_v3(p, rs, off, M, k0, k1, K, dst, ps);  \
    else cvx_pack_panels_##S##_v1(p, rs, off, M, k0, k1, K, dst, ps);               \
}
#else
#define CVX_DISPATCH_PACK(S, T)                                                     \
static void cvx_prepack_##S(const cvx_operand *A, ptrdiff_t M, ptrdiff_t K,       \
                            ptrdiff_t r0, ptrdiff_t r1, int b_kind, T *dst)         \
{ cvx_prepack_##S##_v1(A, M, K, r0, r1, b_kind, dst); }                             \
static void cvx_im2col_##S(const cvx_operand *X, ptrdiff_t k0, ptrdiff_t k1,        \
                           ptrdiff_t p0, ptrdiff_t np, T *dst, ptrdiff_t ld)        \
{ cvx_im2col_##S##_v1(X, k0, k1, p0, np, dst, ld); }                               \
static void cvx_pack_panels_##S(const T *p, ptrdiff_t rs, ptrdiff_t off, ptrdiff_t M,\
                                ptrdiff_t k0, ptrdiff_t k1, ptrdiff_t K, T *dst,    \
                                ptrdiff_t ps)                                       \
{ cvx_pack_panels_##S##_v1(p, rs, off, M, k0, k1, K, dst, ps); }
#endif

CVX_DISPATCH_PACK(f32, float)
CVX_DISPATCH_PACK(f64, double)

#endif
