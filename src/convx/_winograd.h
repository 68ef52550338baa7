/* convx: the transforms of Winograd's minimal filtering algorithm F(4x4, 3x3)
 * and of F(2x2, 5x5), which shares its points, 6x6 tiles and B^T: its G is
 * 6x5 (cvx_wino_g5) and its A^T has two rows, [1 1 1 1 1 0] and
 * [0 1 -1 2 -2 1], 36 multiplies per channel for 4 outputs where the
 * direct sum takes 100.
 *
 * A 3x3 correlation at unit stride gives each 4x4 tile of output from a 6x6
 * tile of input d (the tiles overlap by 2) as
 *
 *     Y = A^T [ sum_c (G g_c G^T) (.) (B^T d_c B) ] A
 *
 * where (.) multiplies element by element and g_c is the kernel of input
 * channel c: 36 multiplies per channel for 16 outputs where the direct sum
 * takes 144.  Over many channels and filters the sum over c is, for each of
 * the 36 positions xi of the 6x6 transformed tile, a matrix product
 *
 *     M[xi] (filters x tiles) = U[xi] (filters x channels) . V[xi] (channels x tiles)
 *
 * which convx's own GEMM computes (_gemm.h; _winograd_passes.pxi drives it).
 * This file holds the three transforms around those products, with the
 * matrices of Lavin and Gray (2016) at the points 0, 1, -1, 2, -2, infinity:
 *
 *   B^T (input)                 G (kernel)                   A^T (output)
 *   [4  0 -5  0  1  0]          [ 1/4     0     0 ]          [1  1  1  1  1  0]
 *   [0 -4 -4  1  1  0]          [-1/6  -1/6  -1/6 ]          [0  1 -1  2 -2  0]
 *   [0  4 -4 -1  1  0]          [-1/6   1/6  -1/6 ]          [0  1  1  4  4  0]
 *   [0 -2 -1  2  1  0]          [ 1/24  1/12  1/6 ]          [0  1 -1  8 -8  1]
 *   [0  2 -1 -2  1  0]          [ 1/24 -1/12  1/6 ]
 *   [0  4  0 -5  0  1]          [ 0     0     1   ]
 *
 * Tiles are numbered over the whole batch, image by image and row by row
 * (TH x TW tiles per image); a block of tiles t0 .. t0 + nt is one column
 * each of V and M, whose rows are (xi, channel) and (xi, filter), ``tb``
 * columns apart; matrix xi's rows begin ``xs`` values after matrix xi - 1's
 * (cvx_wino_stride).  The input and output transforms work on L tiles at once
 * (a vector's worth: 8 floats, 4 doubles): a generic version, one loop over
 * the lanes per step, for the baseline; one with AVX2 intrinsics (below)
 * where cvx_isa is 3 or more (x86-64-v3 and v4), except F(2x2, 5x5)'s
 * output transform, there the generic code compiled for x86-64-v3.  The
 * kernel's transform is computed in double and rounded once, four filters
 * at a time (one AVX2 vector of doubles at v3), or at x86-64-v4 four
 * filters of two channels, gathered into one AVX-512 vector; without fused
 * multiply-adds: each value the scalar code's, bit for bit.
 *
 * No checking is done here: _winograd_passes.pxi guarantees the sizes.
 */
#ifndef CONVX_WINOGRAD_H
#define CONVX_WINOGRAD_H

#include <float.h>
#include <stddef.h>
#include <string.h>

#include "_gemm.h"
#include "_runtime.h"

/* B^T along one axis of a 6x6 tile of L lanes: out[a*os] = sum_r BT[a][r] in[r*is]. */
#define CVX_WINO_BT(T, L, in, is, out, os)                                          \
    for (int l = 0; l < L; l++) {                                                   \
        const T d0 = in[0 * is][l], d1 = in[1 * is][l], d2 = in[2 * is][l];         \
        const T d3 = in[3 * is][l], d4 = in[4 * is][l], d5 = in[5 * is][l];         \
        out[0 * os][l] = 4 * d0 - 5 * d2 + d4;                                      \
        out[1 * os][l] = -4 * (d1 + d2) + (d3 + d4);                                \
        out[2 * os][l] = 4 * (d1 - d2) + (d4 - d3);                                 \
        out[3 * os][l] = 2 * (d3 - d1) + (d4 - d2);                                 \
        out[4 * os][l] = 2 * (d1 - d3) + (d4 - d2);                                 \
        out[5 * os][l] = 4 * d1 - 5 * d3 + d5;                                      \
    }

/* A^T along one axis, lane l: out[i*os][l] = sum_a AT[i][a] in[a*is][l], for
 * F(4x4, 3x3)'s four rows (CVX_WINO_A4) and F(2x2, 5x5)'s two, [1 1 1 1 1 0]
 * and [0 1 -1 2 -2 1] (CVX_WINO_A2). */
#define CVX_WINO_A4(T, in, is, out, os, l)                                          \
    do {                                                                            \
        const T m0 = in[0 * is][l], m1 = in[1 * is][l], m2 = in[2 * is][l];         \
        const T m3 = in[3 * is][l], m4 = in[4 * is][l], m5 = in[5 * is][l];         \
        const T s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;         \
        out[0 * os][l] = m0 + s12 + s34;                                            \
        out[1 * os][l] = d12 + 2 * d34;                                             \
        out[2 * os][l] = s12 + 4 * s34;                                             \
        out[3 * os][l] = d12 + 8 * d34 + m5;                                        \
    } while (0)

#define CVX_WINO_A2(T, in, is, out, os, l)                                          \
    do {                                                                            \
        const T m1 = in[1 * is][l], m2 = in[2 * is][l];                             \
        const T m3 = in[3 * is][l], m4 = in[4 * is][l];                             \
        out[0 * os][l] = in[0][l] + (m1 + m2) + (m3 + m4);                          \
        out[1 * os][l] = (m1 - m2) + 2 * (m3 - m4) + in[5 * is][l];                 \
    } while (0)

/* Where a block's tiles lie: for tile t0 + l, its image, and the row and
 * column (in the input, which may be outside it) of its first value, or
 * img = -1 (row = col = 0) past the block's nt tiles; tiles ``step`` apart
 * (4 outputs a side for F(4x4, 3x3), 2 for F(2x2, 5x5)). */
static inline void cvx_wino_lanes(ptrdiff_t L, ptrdiff_t t0, ptrdiff_t t, ptrdiff_t nt,
                                  ptrdiff_t TH, ptrdiff_t TW, ptrdiff_t pt, ptrdiff_t pl,
                                  ptrdiff_t step, ptrdiff_t *img, ptrdiff_t *row,
                                  ptrdiff_t *col)
{
    for (ptrdiff_t l = 0; l < L; l++) {
        if (t + l >= nt) {
            img[l] = -1;
            row[l] = col[l] = 0;
            continue;
        }
        const ptrdiff_t tau = t0 + t + l, in_img = tau % (TH * TW);
        img[l] = tau / (TH * TW);
        row[l] = step * (in_img / TW) - pt;
        col[l] = step * (in_img % TW) - pl;
    }
}

/* How far apart V's (M's) 36 matrices of ``rows`` rows of tb values lie:
 * rows*tb rounded up to whole cache lines, and to an odd number of them.
 * The transforms write (read) one line of each of the 36 in turn; at a
 * stride of a multiple of 4 KiB (64 channels of 48 tiles in float32: 12
 * KiB) all 36 lines fell in one set of the L1 cache, which holds 8 or 12,
 * and each evicted another.  An odd number of lines puts them in 36 sets. */
static inline ptrdiff_t cvx_wino_stride(ptrdiff_t rows, ptrdiff_t tb, ptrdiff_t size)
{
    const ptrdiff_t line = 64 / size, n = (rows * tb + line - 1) / line;
    return (n | 1) * line;
}

/* V[xi*xs + c*tb + t] = (B^T d B)[xi] for the 6x6 input tile d of channel
 * c of tile t0 + t (zero outside the image), 0 <= t < ncols; columns past nt
 * (up to ncols, a multiple of L) are zero.  x is the batch, (N, C, H, W);
 * xs is cvx_wino_stride(C, tb, sizeof(T)).  Returns 1 when a value of V is
 * not finite, else 0: always where x's tiles hold a NaN or an infinity (each
 * input value enters some value of its tile's transform with a weight that
 * is not zero), and where finite values overflow.  So the caller need not
 * look at x first (a pass over it took 13% of a call's time). */
#define CVX_WINO_IN_ARGS(T)                                                         \
    const T *x, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W, ptrdiff_t pt, ptrdiff_t pl,  \
    ptrdiff_t TH, ptrdiff_t TW, ptrdiff_t t0, ptrdiff_t nt, ptrdiff_t ncols, T *V,  \
    ptrdiff_t tb, ptrdiff_t xs, ptrdiff_t step
#define CVX_WINO_IN_PASS x, C, H, W, pt, pl, TH, TW, t0, nt, ncols, V, tb, xs, step

#define CVX_DEFINE_WINO_IN(NAME, T, L)                                              \
static inline CVX_ALWAYS_INLINE int NAME##_body(CVX_WINO_IN_ARGS(T))                \
{                                                                                   \
    T seen = 0;                                                                     \
    for (ptrdiff_t t = 0; t < ncols; t += L) {                                      \
        ptrdiff_t img[L], row[L], col[L];                                           \
        cvx_wino_lanes(L, t0, t, nt, TH, TW, pt, pl, step, img, row, col);          \
        for (ptrdiff_t c = 0; c < C; c++) {                                         \
            T p[36][L], s[36][L];                                                   \
            for (ptrdiff_t l = 0; l < L; l++) {                                     \
                if (img[l] < 0) {                                                   \
                    for (int e = 0; e < 36; e++) p[e][l] = 0;                       \
                    continue;                                                       \
                }                                                                   \
                const T *src = x + (img[l] * C + c) * H * W;                        \
                const ptrdiff_t r0 = row[l], q0 = col[l];                           \
                if (r0 >= 0 && q0 >= 0 && r0 + 6 <= H && q0 + 6 <= W) {             \
                    src += r0 * W + q0;                                             \
                    for (int r = 0; r < 6; r++)                                     \
                        for (int q = 0; q < 6; q++) p[r * 6 + q][l] = src[r * W + q]; \
                } else {                                                            \
                    for (int r = 0; r < 6; r++)                                     \
                        for (int q = 0; q < 6; q++) {                               \
                            const ptrdiff_t i = r0 + r, j = q0 + q;                 \
                            p[r * 6 + q][l] = i >= 0 && i < H && j >= 0 && j < W    \
                                              ? src[i * W + j] : (T)0;              \
                        }                                                           \
                }                                                                   \
            }                                                                       \
            for (int r = 0; r < 6; r++) {      /* along each row: s[r][b] */        \
                T (*in)[L] = p + r * 6, (*out)[L] = s + r * 6;                      \
                CVX_WINO_BT(T, L, in, 1, out, 1)                                    \
            }                                                                       \
            for (int b = 0; b < 6; b++) {      /* down each column: p[a][b] */      \
                T (*in)[L] = s + b, (*out)[L] = p + b;                              \
                CVX_WINO_BT(T, L, in, 6, out, 6)                                    \
            }                                                                       \
            for (int e = 0; e < 36; e++) {                                          \
                memcpy(V + e * xs + c * tb + t, p[e], sizeof p[e]);                \
                for (ptrdiff_t l = 0; l < L; l++)                                   \
                    seen += p[e][l] * 0;                                            \
            }                                                                       \
        }                                                                           \
    }                                                                               \
    return seen != seen;                                                            \
}                                                                                   \
static int NAME(CVX_WINO_IN_ARGS(T)) { return NAME##_body(CVX_WINO_IN_PASS); }

/* out[n, f, Ni + a, Nj + b] = (A^T M A)[a][b] + bias[f] for each tile t0 + t
 * (image n, tile row i, tile column j), 0 <= t < nt, where M's 36 values
 * for filter f are M[xi*xs + f*tb + t] and A^T (N x 6, N = step: 4 for
 * F(4x4, 3x3), 2 for F(2x2, 5x5)) is applied by AT (CVX_WINO_A4 or
 * CVX_WINO_A2); only the cells inside the (N, F, OH, OW) output are
 * written.  M has at least nt rounded up to L columns.  L tiles at once,
 * each step one loop over the lanes, which the compiler vectorises (at
 * x86-64-v3, contracting to fused multiply-adds).  Returns 1 when a value
 * of a tile's transform (written or cut off at the output's edge) is not
 * finite, else 0: the products of finite values, or their sums, can
 * overflow where the direct sums do not (V is up to 100 times the input). */
#define CVX_WINO_OUT_ARGS(T)                                                        \
    const T *M, ptrdiff_t F, ptrdiff_t tb, ptrdiff_t xs, ptrdiff_t t0, ptrdiff_t nt, \
    ptrdiff_t TH, ptrdiff_t TW, const T *bias, T *out, ptrdiff_t OH, ptrdiff_t OW,      \
    ptrdiff_t step
#define CVX_WINO_OUT_PASS M, F, tb, xs, t0, nt, TH, TW, bias, out, OH, OW, step

#define CVX_DEFINE_WINO_OUT(NAME, T, L, ATTR, N, AT)                                \
ATTR static int NAME(CVX_WINO_OUT_ARGS(T))                                          \
{                                                                                   \
    T seen = 0;                                                                     \
    for (ptrdiff_t t = 0; t < nt; t += L) {                                         \
        ptrdiff_t img[L], row[L], col[L];                                           \
        cvx_wino_lanes(L, t0, t, nt, TH, TW, 0, 0, N, img, row, col);               \
        for (ptrdiff_t f = 0; f < F; f++) {                                         \
            T m[36][L], s[6 * N][L], y[N * N][L];                                   \
            for (int e = 0; e < 36; e++)                                            \
                memcpy(m[e], M + e * xs + f * tb + t, sizeof m[e]);                \
            for (int b = 0; b < 6; b++) {      /* down each column: s[i][b] */      \
                T (*in)[L] = m + b, (*o)[L] = s + b;                                \
                for (ptrdiff_t l = 0; l < L; l++)                                   \
                    AT(T, in, 6, o, 6, l);                                          \
            }                                                                       \
            for (int i = 0; i < N; i++) {      /* along each row: y[i][j] */        \
                T (*in)[L] = s + i * 6, (*o)[L] = y + i * N;                        \
                for (ptrdiff_t l = 0; l < L; l++)                                   \
                    AT(T, in, 1, o, 1, l);                                          \
            }                                                                       \
            const T b0 = bias ? bias[f] : (T)0;                                     \
            for (int e = 0; e < N * N; e++)                                         \
                for (ptrdiff_t l = 0; l < L; l++)                                   \
                    seen += (y[e][l] + b0) * 0;                                     \
            for (ptrdiff_t l = 0; l < L && img[l] >= 0; l++) {                      \
                T *dst = out + ((img[l] * F + f) * OH + row[l]) * OW + col[l];      \
                const ptrdiff_t rows = OH - row[l] < N ? OH - row[l] : N;           \
                const ptrdiff_t cols = OW - col[l] < N ? OW - col[l] : N;           \
                for (ptrdiff_t i = 0; i < rows; i++)                                \
                    for (ptrdiff_t j = 0; j < cols; j++)                            \
                        dst[i * OW + j] = y[i * N + j][l] + b0;                     \
            }                                                                       \
        }                                                                           \
    }                                                                               \
    return seen != seen;                                                            \
}

CVX_DEFINE_WINO_IN(cvx_wino_in_f32_v1, float, 8)
CVX_DEFINE_WINO_IN(cvx_wino_in_f64_v1, double, 4)
CVX_DEFINE_WINO_OUT(cvx_wino_out4_f32_v1, float, 8, , 4, CVX_WINO_A4)
CVX_DEFINE_WINO_OUT(cvx_wino_out4_f64_v1, double, 4, , 4, CVX_WINO_A4)
CVX_DEFINE_WINO_OUT(cvx_wino_out2_f32_v1, float, 8, , 2, CVX_WINO_A2)
CVX_DEFINE_WINO_OUT(cvx_wino_out2_f64_v1, double, 4, , 2, CVX_WINO_A2)

#if CVX_X86_DISPATCH
/* ---------------------------------------------------------------------- */
/* x86-64-v3 and up: the same transforms with AVX2 intrinsics.  A tile's   */
/* rows are read as they lie, four values at a time (masked where they     */
/* reach past the image), and the L tiles' values turned into one vector   */
/* per (row, column) by in-register transposes.  The same sums as the      */
/* generic code, in the same order (contracted to fused multiply-adds).   */
/* ---------------------------------------------------------------------- */
#include <immintrin.h>

#define CVX_AVX2 __attribute__((target("arch=x86-64-v3")))

/* The 1-D transforms on vector variables (any vector type). */
#define CVX_WINO_BT_V(d, o)                                                         \
    do {                                                                            \
        o[0] = 4 * d[0] - 5 * d[2] + d[4];                                          \
        o[1] = -4 * (d[1] + d[2]) + (d[3] + d[4]);                                  \
        o[2] = 4 * (d[1] - d[2]) + (d[4] - d[3]);                                   \
        o[3] = 2 * (d[3] - d[1]) + (d[4] - d[2]);                                   \
        o[4] = 2 * (d[1] - d[3]) + (d[4] - d[2]);                                   \
        o[5] = 4 * d[1] - 5 * d[3] + d[5];                                          \
    } while (0)

#define CVX_WINO_AT_V(m, o)                                                         \
    do {                                                                            \
        const __typeof__(m[0]) s12 = m[1] + m[2], d12 = m[1] - m[2];                \
        const __typeof__(m[0]) s34 = m[3] + m[4], d34 = m[3] - m[4];                \
        o[0] = m[0] + s12 + s34;                                                    \
        o[1] = d12 + 2 * d34;                                                       \
        o[2] = s12 + 4 * s34;                                                       \
        o[3] = d12 + 8 * d34 + m[5];                                                \
    } while (0)

/* Lane l's tile reads, in each of its rows ra..rb that lie in the image
 * (zeros in the others, and for lanes past the block's tiles), 8 values
 * from its first column q0 (0-5 are used), at x[base + c*H*W + r*W + k]:
 * where all 8 lie in the row, k = 0..7 (kind 0); else, when the row has 8
 * values, those from cs = q0 clamped to [0, W - 8] (k = 0..7), moved by
 * q0 - cs lanes (idx) and zeroed outside the row (keep) (kind 1); else one
 * at a time, zeros outside the row (kind 2, a row narrower than 8; and
 * kind 1 where ``shift`` is 0: the float64 code has no shifted loads).
 *
 * The transforms run the channels (filters) outermost and, inside, a chunk
 * of CVX_WINO_CHUNK groups of L tiles: each channel's plane is then read
 * (written) in one sweep of neighbouring rows, which the hardware
 * prefetchers follow, where the other order hopped between C planes per
 * group of tiles and waited for memory.  So each group's lanes are worked
 * out once per chunk, here. */
#define CVX_WINO_CHUNK 8

typedef struct {
    ptrdiff_t base[8];
    int ra[8], rb[8], kind[8];
    int idx[8][8], keep[8][8];
} cvx_wino_in_lanes;

static inline void cvx_wino_in_setup(int L, int shift, ptrdiff_t C, ptrdiff_t H,
                                     ptrdiff_t W, ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t TH,
                                     ptrdiff_t TW, ptrdiff_t t0, ptrdiff_t t, ptrdiff_t nt,
                                     ptrdiff_t step, cvx_wino_in_lanes *s)
{
    ptrdiff_t img[8], row[8], col[8];
    cvx_wino_lanes(L, t0, t, nt, TH, TW, pt, pl, step, img, row, col);
    for (int l = 0; l < L; l++) {
        const ptrdiff_t r0 = row[l], q0 = col[l];
        ptrdiff_t cs = q0 < 0 ? 0 : q0;
        cs = cs > W - 8 ? W - 8 : cs;
        s->ra[l] = r0 < 0 ? (int)-r0 : 0;
        s->rb[l] = img[l] < 0 ? 0 : H - r0 < 6 ? (int)(H - r0) : 6;
        s->kind[l] = q0 >= 0 && q0 + 8 <= W ? 0 : W >= 8 && shift ? 1 : 2;
        for (int q = 0; q < 8; q++) {
            const int in = q0 + q >= 0 && q0 + q < W;
            const ptrdiff_t k = q + q0 - cs;
            s->idx[l][q] = k < 0 ? 0 : k > 7 ? 7 : (int)k;
            s->keep[l][q] = in ? -1 : 0;
        }
        s->base[l] = img[l] < 0 ? 0 : (img[l] * C * H + r0) * W + (s->kind[l] == 1 ? cs : q0);
    }
}

/* The chunks of the block's ncols columns (groups of L), each channel
 * outermost: the body (the macro's last argument) sees c, t (the group's first column) and s (its lanes). */
#define CVX_WINO_IN_CHUNKS(L, SHIFT, ...)                                          \
    cvx_wino_in_lanes lanes[CVX_WINO_CHUNK];                                        \
    for (ptrdiff_t t1 = 0; t1 < ncols; t1 += L * CVX_WINO_CHUNK) {                  \
        const ptrdiff_t ng = (ncols - t1) / L < CVX_WINO_CHUNK ? (ncols - t1) / L     \
                                                              : CVX_WINO_CHUNK;     \
        for (ptrdiff_t g = 0; g < ng; g++)                                          \
            cvx_wino_in_setup(L, SHIFT, C, H, W, pt, pl, TH, TW, t0, t1 + L * g, nt, \
                              step, lanes + g);                                     \
        for (ptrdiff_t c = 0; c < C; c++)                                           \
            for (ptrdiff_t g = 0; g < ng; g++) {                                    \
                const cvx_wino_in_lanes *s = lanes + g;                             \
                const ptrdiff_t t = t1 + L * g;                                     \
                __VA_ARGS__                                                         \
            }                                                                       \
    }

CVX_AVX2 static int cvx_wino_in_f32_avx2(CVX_WINO_IN_ARGS(float))
{
    static const float zero8[8] = {0};
    __m256 seen[6];       /* sums of 0 * V: NaN once a value is not finite */
    for (int a = 0; a < 6; a++) seen[a] = _mm256_setzero_ps();
    CVX_WINO_IN_CHUNKS(8, 1, {   /* W >= 8: no lane of kind 2 */
        __m256 h[6][6], v[6], o[6];
        for (int r = 0; r < 6; r++) {
            __m256 R[8], d[6];
            /* every lane the same way, without a branch: a row outside
             * the image reads zeros, and kind 0 moves by nothing */
            for (int l = 0; l < 8; l++) {
                const int live = r >= s->ra[l] && r < s->rb[l];
                const float *p = live ? x + s->base[l] + c * H * W + r * W : zero8;
                R[l] = _mm256_and_ps(
                    _mm256_permutevar8x32_ps(_mm256_loadu_ps(p),
                                             _mm256_loadu_si256((const __m256i *)s->idx[l])),
                    _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)s->keep[l])));
            }
            /* lanes (l | l + 4) of a_l, b_l: tiles l and l + 4, columns 0-3, 4-7 */
            __m256 a[4], b[4];
            for (int l = 0; l < 4; l++) {
                a[l] = _mm256_permute2f128_ps(R[l], R[l + 4], 0x20);
                b[l] = _mm256_permute2f128_ps(R[l], R[l + 4], 0x31);
            }
            const __m256 t0_ = _mm256_unpacklo_ps(a[0], a[1]), t1_ = _mm256_unpackhi_ps(a[0], a[1]);
            const __m256 t2_ = _mm256_unpacklo_ps(a[2], a[3]), t3_ = _mm256_unpackhi_ps(a[2], a[3]);
            const __m256 u0 = _mm256_unpacklo_ps(b[0], b[1]), u2 = _mm256_unpacklo_ps(b[2], b[3]);
            d[0] = _mm256_shuffle_ps(t0_, t2_, 0x44);
            d[1] = _mm256_shuffle_ps(t0_, t2_, 0xEE);
            d[2] = _mm256_shuffle_ps(t1_, t3_, 0x44);
            d[3] = _mm256_shuffle_ps(t1_, t3_, 0xEE);
            d[4] = _mm256_shuffle_ps(u0, u2, 0x44);
            d[5] = _mm256_shuffle_ps(u0, u2, 0xEE);
            CVX_WINO_BT_V(d, h[r]);          /* along the row */
        }
        for (int bq = 0; bq < 6; bq++) {     /* down each column */
            for (int r = 0; r < 6; r++) v[r] = h[r][bq];
            CVX_WINO_BT_V(v, o);
            for (int a = 0; a < 6; a++) {
                _mm256_storeu_ps(V + (a * 6 + bq) * xs + c * tb + t, o[a]);
                seen[a] = _mm256_fmadd_ps(o[a], _mm256_setzero_ps(), seen[a]);
            }
        }
    })
    for (int a = 1; a < 6; a++) seen[0] = _mm256_add_ps(seen[0], seen[a]);
    return _mm256_movemask_ps(_mm256_cmp_ps(seen[0], seen[0], _CMP_UNORD_Q)) != 0;
}

CVX_AVX2 static int cvx_wino_in_f64_avx2(CVX_WINO_IN_ARGS(double))
{
    __m256d seen[6];
    for (int a = 0; a < 6; a++) seen[a] = _mm256_setzero_pd();
    CVX_WINO_IN_CHUNKS(4, 0, {
        __m256d h[6][6], v[6], o[6];
        for (int r = 0; r < 6; r++) {
            __m256d a[4], d[6];
            __m128d e[4];
            for (int l = 0; l < 4; l++) {
                const ptrdiff_t at = s->base[l] + c * H * W + r * W;
                if (r < s->ra[l] || r >= s->rb[l]) {
                    a[l] = _mm256_setzero_pd();
                    e[l] = _mm_setzero_pd();
                } else if (s->kind[l] == 0) {
                    a[l] = _mm256_loadu_pd(x + at);
                    e[l] = _mm_loadu_pd(x + at + 4);
                } else {
                    double w6[6];
                    for (int q = 0; q < 6; q++)
                        w6[q] = s->keep[l][q] ? x[at + q] : 0.0;
                    a[l] = _mm256_loadu_pd(w6);
                    e[l] = _mm_loadu_pd(w6 + 4);
                }
            }
            const __m256d t0_ = _mm256_unpacklo_pd(a[0], a[1]), t1_ = _mm256_unpackhi_pd(a[0], a[1]);
            const __m256d t2_ = _mm256_unpacklo_pd(a[2], a[3]), t3_ = _mm256_unpackhi_pd(a[2], a[3]);
            d[0] = _mm256_permute2f128_pd(t0_, t2_, 0x20);
            d[1] = _mm256_permute2f128_pd(t1_, t3_, 0x20);
            d[2] = _mm256_permute2f128_pd(t0_, t2_, 0x31);
            d[3] = _mm256_permute2f128_pd(t1_, t3_, 0x31);
            d[4] = _mm256_set_m128d(_mm_unpacklo_pd(e[2], e[3]), _mm_unpacklo_pd(e[0], e[1]));
            d[5] = _mm256_set_m128d(_mm_unpackhi_pd(e[2], e[3]), _mm_unpackhi_pd(e[0], e[1]));
            CVX_WINO_BT_V(d, h[r]);
        }
        for (int bq = 0; bq < 6; bq++) {
            for (int r = 0; r < 6; r++) v[r] = h[r][bq];
            CVX_WINO_BT_V(v, o);
            for (int a = 0; a < 6; a++) {
                _mm256_storeu_pd(V + (a * 6 + bq) * xs + c * tb + t, o[a]);
                seen[a] = _mm256_fmadd_pd(o[a], _mm256_setzero_pd(), seen[a]);
            }
        }
    })
    for (int a = 1; a < 6; a++) seen[0] = _mm256_add_pd(seen[0], seen[a]);
    return _mm256_movemask_pd(_mm256_cmp_pd(seen[0], seen[0], _CMP_UNORD_Q)) != 0;
}

/* Where each lane's 4x4 outputs go, per group of tiles: ``at``, its place
 * in filter 0's planes when they all lie in the output, else -1 (buf, then
 * copied, clipped); and its image, row and column (img -1 past nt). */
typedef struct {
    ptrdiff_t at[8], img[8], row[8], col[8];
} cvx_wino_out_lanes;

/* As CVX_WINO_IN_CHUNKS, each filter f outermost, for the output. */
#define CVX_WINO_OUT_CHUNKS(L, ...)                                                \
    cvx_wino_out_lanes lanes[CVX_WINO_CHUNK];                                       \
    for (ptrdiff_t t1 = 0; t1 < nt; t1 += L * CVX_WINO_CHUNK) {                     \
        const ptrdiff_t ng = (nt - t1 + L - 1) / L < CVX_WINO_CHUNK                 \
                                 ? (nt - t1 + L - 1) / L : CVX_WINO_CHUNK;          \
        for (ptrdiff_t g = 0; g < ng; g++) {                                        \
            cvx_wino_out_lanes *s = lanes + g;                                      \
            cvx_wino_lanes(L, t0, t1 + L * g, nt, TH, TW, 0, 0, step, s->img, s->row,  \
                           s->col);                                                 \
            for (int l = 0; l < L; l++)                                             \
                s->at[l] = s->img[l] >= 0 && s->row[l] + 4 <= OH && s->col[l] + 4 <= OW \
                           ? (s->img[l] * F * OH + s->row[l]) * OW + s->col[l] : -1; \
        }                                                                           \
        for (ptrdiff_t f = 0; f < F; f++)                                           \
            for (ptrdiff_t g = 0; g < ng; g++) {                                    \
                const cvx_wino_out_lanes *s = lanes + g;                            \
                const ptrdiff_t t = t1 + L * g;                                     \
                __VA_ARGS__                                                         \
            }                                                                       \
    }

/* Lane l writes its rows at dst[l], ld[l] apart: in out, or in buf. */
#define CVX_WINO_SINKS(T, L)                                                        \
    for (int l = 0; l < L; l++) {                                                   \
        dst[l] = s->at[l] >= 0 ? out + s->at[l] + f * OH * OW : buf[l];             \
        ld[l] = s->at[l] >= 0 ? OW : 4;                                             \
    }

/* ... and buf's rows go to the cells of out that there are. */
#define CVX_WINO_CLIP(T, L)                                                         \
    for (int l = 0; l < L; l++) {                                                   \
        if (s->at[l] >= 0 || s->img[l] < 0)                                         \
            continue;                                                               \
        T *o = out + ((s->img[l] * F + f) * OH + s->row[l]) * OW + s->col[l];       \
        const ptrdiff_t rows = OH - s->row[l] < 4 ? OH - s->row[l] : 4;             \
        const ptrdiff_t cols = OW - s->col[l] < 4 ? OW - s->col[l] : 4;             \
        for (ptrdiff_t i = 0; i < rows; i++)                                        \
            for (int j = 0; j < 4; j++)                                             \
                if (j < cols)                                                       \
                    o[i * OW + j] = buf[l][i * 4 + j];                              \
    }

CVX_AVX2 static int cvx_wino_out4_f32_avx2(CVX_WINO_OUT_ARGS(float))
{
    __m256 seen = _mm256_setzero_ps();   /* sums of 0 * y: NaN once one is not finite */
    CVX_WINO_OUT_CHUNKS(8, {
        ptrdiff_t ld[8];
        float *dst[8];
        float buf[8][16];
        __m256 s4[4][6], m[6], y[4];
        CVX_WINO_SINKS(float, 8)
        for (int bq = 0; bq < 6; bq++) {     /* down each column */
            __m256 o[4];
            for (int a = 0; a < 6; a++) m[a] = _mm256_loadu_ps(M + (a * 6 + bq) * xs + f * tb + t);
            CVX_WINO_AT_V(m, o);
            for (int i = 0; i < 4; i++) s4[i][bq] = o[i];
        }
        const __m256 bv = _mm256_set1_ps(bias ? bias[f] : 0.0f);
        for (int i = 0; i < 4; i++) {        /* along each row */
            CVX_WINO_AT_V(s4[i], y);
            for (int j = 0; j < 4; j++) {
                y[j] = y[j] + bv;
                seen = _mm256_fmadd_ps(y[j], _mm256_setzero_ps(), seen);
            }
            /* lanes (l | l + 4) of r_l: row i of tiles l and l + 4 */
            const __m256 t0_ = _mm256_unpacklo_ps(y[0], y[1]), t1_ = _mm256_unpackhi_ps(y[0], y[1]);
            const __m256 t2_ = _mm256_unpacklo_ps(y[2], y[3]), t3_ = _mm256_unpackhi_ps(y[2], y[3]);
            __m256 r[4];
            r[0] = _mm256_shuffle_ps(t0_, t2_, 0x44);
            r[1] = _mm256_shuffle_ps(t0_, t2_, 0xEE);
            r[2] = _mm256_shuffle_ps(t1_, t3_, 0x44);
            r[3] = _mm256_shuffle_ps(t1_, t3_, 0xEE);
            for (int l = 0; l < 4; l++) {
                _mm_storeu_ps(dst[l] + i * ld[l], _mm256_castps256_ps128(r[l]));
                _mm_storeu_ps(dst[l + 4] + i * ld[l + 4], _mm256_extractf128_ps(r[l], 1));
            }
        }
        CVX_WINO_CLIP(float, 8)
    })
    return _mm256_movemask_ps(_mm256_cmp_ps(seen, seen, _CMP_UNORD_Q)) != 0;
}

CVX_AVX2 static int cvx_wino_out4_f64_avx2(CVX_WINO_OUT_ARGS(double))
{
    __m256d seen = _mm256_setzero_pd();
    CVX_WINO_OUT_CHUNKS(4, {
        ptrdiff_t ld[4];
        double *dst[4];
        double buf[4][16];
        __m256d s4[4][6], m[6], y[4];
        CVX_WINO_SINKS(double, 4)
        for (int bq = 0; bq < 6; bq++) {
            __m256d o[4];
            for (int a = 0; a < 6; a++) m[a] = _mm256_loadu_pd(M + (a * 6 + bq) * xs + f * tb + t);
            CVX_WINO_AT_V(m, o);
            for (int i = 0; i < 4; i++) s4[i][bq] = o[i];
        }
        const __m256d bv = _mm256_set1_pd(bias ? bias[f] : 0.0);
        for (int i = 0; i < 4; i++) {
            CVX_WINO_AT_V(s4[i], y);
            for (int j = 0; j < 4; j++) {
                y[j] = y[j] + bv;
                seen = _mm256_fmadd_pd(y[j], _mm256_setzero_pd(), seen);
            }
            const __m256d t0_ = _mm256_unpacklo_pd(y[0], y[1]), t1_ = _mm256_unpackhi_pd(y[0], y[1]);
            const __m256d t2_ = _mm256_unpacklo_pd(y[2], y[3]), t3_ = _mm256_unpackhi_pd(y[2], y[3]);
            _mm256_storeu_pd(dst[0] + i * ld[0], _mm256_permute2f128_pd(t0_, t2_, 0x20));
            _mm256_storeu_pd(dst[1] + i * ld[1], _mm256_permute2f128_pd(t1_, t3_, 0x20));
            _mm256_storeu_pd(dst[2] + i * ld[2], _mm256_permute2f128_pd(t0_, t2_, 0x31));
            _mm256_storeu_pd(dst[3] + i * ld[3], _mm256_permute2f128_pd(t1_, t3_, 0x31));
        }
        CVX_WINO_CLIP(double, 4)
    })
    return _mm256_movemask_pd(_mm256_cmp_pd(seen, seen, _CMP_UNORD_Q)) != 0;
}
#endif

/* The input and output transforms at the level cvx_isa. */
#if CVX_X86_DISPATCH
#define CVX_WINO_PICK(NAME, ARGS, PASS, WIDE)                                        \
static int NAME(ARGS) { return (cvx_isa >= 3 && WIDE ? NAME##_avx2 : NAME##_v1)(PASS); }
#else
#define CVX_WINO_PICK(NAME, ARGS, PASS, WIDE)                                        \
static int NAME(ARGS) { return NAME##_v1(PASS); }
#endif

/* (the AVX2 input transforms read 8 values a row: rows of at least 8) */
CVX_WINO_PICK(cvx_wino_in_f32, CVX_WINO_IN_ARGS(float), CVX_WINO_IN_PASS, W >= 8)
CVX_WINO_PICK(cvx_wino_in_f64, CVX_WINO_IN_ARGS(double), CVX_WINO_IN_PASS, W >= 8)
CVX_WINO_PICK(cvx_wino_out4_f32, CVX_WINO_OUT_ARGS(float), CVX_WINO_OUT_PASS, 1)
CVX_WINO_PICK(cvx_wino_out4_f64, CVX_WINO_OUT_ARGS(double), CVX_WINO_OUT_PASS, 1)

/* F(2x2, 5x5)'s: at x86-64-v3, the generic code compiled for it. */
#if CVX_X86_DISPATCH
CVX_DEFINE_WINO_OUT(cvx_wino_out2_f32_avx2, float, 8, CVX_AVX2, 2, CVX_WINO_A2)
CVX_DEFINE_WINO_OUT(cvx_wino_out2_f64_avx2, double, 4, CVX_AVX2, 2, CVX_WINO_A2)
#endif
CVX_WINO_PICK(cvx_wino_out2_f32, CVX_WINO_OUT_ARGS(float), CVX_WINO_OUT_PASS, 1)
CVX_WINO_PICK(cvx_wino_out2_f64, CVX_WINO_OUT_ARGS(double), CVX_WINO_OUT_PASS, 1)

/* The output transform of the tiles ``step`` apart: 4 (F(4x4, 3x3)) or 2. */
static int cvx_wino_out_f32(CVX_WINO_OUT_ARGS(float))
{
    return (step == 2 ? cvx_wino_out2_f32 : cvx_wino_out4_f32)(CVX_WINO_OUT_PASS);
}
static int cvx_wino_out_f64(CVX_WINO_OUT_ARGS(double))
{
    return (step == 2 ? cvx_wino_out2_f64 : cvx_wino_out4_f64)(CVX_WINO_OUT_PASS);
}

/* Rows o0 .. o0 + CVX_MR - 1 (one micro-panel) of each of the 36 matrices
 * U[xi] = (G g G^T)[xi] (O x I; g = w[o, i], R x R; or with ``flip`` g =
 * w[i, o] turned by 180 degrees, the input gradient's kernel, its outputs
 * being w's inputs; w is one group's (O, I, R, R), or (I, O, R, R) flipped;
 * cvx_wino_weights_* R = 3, cvx_wino_weights5_* R = 5), written straight
 * into their packed form for the matrix product (_gemm.h, cvx_prepack: K
 * blocks of cvx_kc_step(I, CVX_ROWS_WHOLE, ...) columns, micro-panels of
 * CVX_MR rows), matrix xi at pack + xi*Mp*I.  Rows o >= O (the last panel's
 * padding, up to Mp) are zeros.  A block of CVX_WINO_IB columns of the panel
 * is one contiguous run in each matrix: it is computed first, then copied,
 * so that every cache line is written whole, at once.  Computed in double,
 * rounded once to T.  Returns 1 when a kernel holds a value that is not
 * finite (it would spread over every value of its transform), or when its
 * largest magnitude is above zero and below CVX_WINO_SMALL(T) (its
 * transform, rounded to T, could fall among the subnormal numbers, where its
 * error is no longer relative to the kernel's: weights of 1e-42 in float32
 * gave 104 times Winograd's bound); else 0. */
#define CVX_WINO_IB 32   /* columns per block: divides CVX_KC, or falls in one block */
/* 2**12 times T's smallest normal number */
#define CVX_WINO_SMALL(T) ((sizeof(T) == sizeof(float) ? (double)FLT_MIN : DBL_MIN) * 4096.0)

#define CVX_WINO_WEIGHTS_ARGS(T)                                                    \
    const T *w, ptrdiff_t O, ptrdiff_t I, int flip, ptrdiff_t o0, T *pack
#define CVX_WINO_WEIGHTS_PASS w, O, I, flip, o0, pack

/* The panel's CVX_MR rows are the lanes: each step below is one loop over  */
/* them, which the compiler makes one vector operation (4 doubles with      */
/* AVX2), with each lane's sums in the scalar order.                        */
/* G of F(4x4, 3x3) (in the table at the top) and of F(2x2, 5x5): row a for
 * the point a_i is [1, a_i, ..., a_i^(R-1)] / prod_(j != i) (a_i - a_j), the
 * last (infinity) [0, ..., 0, 1]. */
static const double cvx_wino_g3[6][5] = {
    {1.0 / 4, 0, 0}, {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
static const double cvx_wino_g5[6][5] = {
    {1.0 / 4, 0, 0, 0, 0},
    {-1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6},
    {-1.0 / 6, 1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 3, 2.0 / 3},
    {1.0 / 24, -1.0 / 12, 1.0 / 6, -1.0 / 3, 2.0 / 3},
    {0, 0, 0, 0, 1}};

/* An R x R kernel (R = 3: G = cvx_wino_g3; R = 5: cvx_wino_g5).  Each sum
 * is taken left to right, G's column 0 first. */
#define CVX_DEFINE_WINO_WEIGHTS(NAME, T, ATTR, R, G)                                \
ATTR static int NAME(CVX_WINO_WEIGHTS_ARGS(T))                                      \
{                                                                                   \
    const ptrdiff_t Mp = (O + CVX_MR - 1) / CVX_MR * CVX_MR;                        \
    const ptrdiff_t step = cvx_kc_step(I, CVX_ROWS_WHOLE, sizeof(T));               \
    int small = 0;                                                                  \
    for (ptrdiff_t i0 = 0; i0 < I; i0 += CVX_WINO_IB) {                             \
        const ptrdiff_t ib = I - i0 < CVX_WINO_IB ? I - i0 : CVX_WINO_IB;           \
        const ptrdiff_t pc = i0 / step * step;                                      \
        const ptrdiff_t kc = I - pc < step ? I - pc : step;                         \
        T u[36][CVX_WINO_IB * CVX_MR];    /* u[xi][(i - i0)*MR + o - o0] */         \
        for (ptrdiff_t i = 0; i < ib; i++) {                                        \
            /* g[p*R + q][r], h[a*R + q][r] */                                      \
            double g[R * R][CVX_MR], h[6 * R][CVX_MR];                              \
            for (int r = 0; r < CVX_MR; r++) {                                      \
                const ptrdiff_t o = o0 + r;                                         \
                const T *src = o >= O ? NULL : flip ? w + ((i0 + i) * O + o) * R * R \
                                                    : w + (o * I + i0 + i) * R * R; \
                for (int e = 0; e < R * R; e++)                                     \
                    g[e][r] = src == NULL ? 0.0 : flip ? src[R * R - 1 - e] : src[e]; \
            }                                                                       \
            for (int r = 0; r < CVX_MR; r++) {                                      \
                double top = 0.0;                                                   \
                for (int e = 0; e < R * R; e++) {                                   \
                    const double m = g[e][r] < 0 ? -g[e][r] : g[e][r];              \
                    small |= !(m <= DBL_MAX);    /* NaN or infinite */              \
                    top = m > top ? m : top;                                        \
                }                                                                   \
                small |= top > 0 && top < CVX_WINO_SMALL(T);                        \
            }                                                                       \
            for (int a = 0; a < 6; a++)                                             \
                for (int q = 0; q < R; q++)                                         \
                    for (int r = 0; r < CVX_MR; r++) {                              \
                        double acc = G[a][0] * g[q][r];                             \
                        for (int p = 1; p < R; p++)                                 \
                            acc = acc + G[a][p] * g[p * R + q][r];                  \
                        h[a * R + q][r] = acc;                                      \
                    }                                                               \
            for (int a = 0; a < 6; a++)                                             \
                for (int b = 0; b < 6; b++)                                         \
                    for (int r = 0; r < CVX_MR; r++) {                              \
                        double acc = h[a * R][r] * G[b][0];                         \
                        for (int q = 1; q < R; q++)                                 \
                            acc = acc + h[a * R + q][r] * G[b][q];                  \
                        u[a * 6 + b][i * CVX_MR + r] = (T)acc;                      \
                    }                                                               \
        }                                                                           \
        for (int xi = 0; xi < 36; xi++)                                             \
            memcpy(pack + xi * Mp * I + pc * Mp + o0 * kc + (i0 - pc) * CVX_MR, u[xi], \
                   ib * CVX_MR * sizeof(T));                                        \
    }                                                                               \
    return small;                                                                   \
}

CVX_DEFINE_WINO_WEIGHTS(cvx_wino_weights_f32_v1, float, , 3, cvx_wino_g3)
CVX_DEFINE_WINO_WEIGHTS(cvx_wino_weights_f64_v1, double, , 3, cvx_wino_g3)
CVX_DEFINE_WINO_WEIGHTS(cvx_wino_weights5_f32_v1, float, , 5, cvx_wino_g5)
CVX_DEFINE_WINO_WEIGHTS(cvx_wino_weights5_f64_v1, double, , 5, cvx_wino_g5)
#if CVX_X86_DISPATCH
/* (no fused multiply-adds: the same double sums, so the same bits, as the  */
/* baseline's)                                                              */
#define CVX_WINO_WEIGHTS_AVX2 __attribute__((target("arch=x86-64-v3"), optimize("fp-contract=off")))
CVX_DEFINE_WINO_WEIGHTS(cvx_wino_weights_f32_avx2, float, CVX_WINO_WEIGHTS_AVX2, 3, cvx_wino_g3)
CVX_DEFINE_WINO_WEIGHTS(cvx_wino_weights_f64_avx2, double, CVX_WINO_WEIGHTS_AVX2, 3, cvx_wino_g3)
CVX_DEFINE_WINO_WEIGHTS(cvx_wino_weights5_f32_avx2, float, CVX_WINO_WEIGHTS_AVX2, 5, cvx_wino_g5)
CVX_DEFINE_WINO_WEIGHTS(cvx_wino_weights5_f64_avx2, double, CVX_WINO_WEIGHTS_AVX2, 5,
                        cvx_wino_g5)

/* x86-64-v4: two columns of the panel at once, in 8 lanes of one AVX-512
 * vector of doubles (lane l: column i + l / CVX_MR, filter o0 + l % CVX_MR,
 * the order the panel holds them in), each lane's kernel gathered from w.
 * The same double sums as above, in the same order and without fused
 * multiply-adds, each rounded once to T: the same bits.  Each of the 36
 * values is one vector, stored as the panel's 2*CVX_MR values there.  (The
 * generic code above, one column of 4 lanes a step filled value by value,
 * took 18-24 ns a 3x3 float32 kernel at x86-64-v3 and v4 on one thread, 64
 * to 256 channels, a third to three quarters of a one-image layer's time;
 * this takes 11-16, about half of it the copies into the panels, which
 * write U: 4 times the weights' bytes.)  The lanes' offsets are 32-bit:
 * CVX_WINO_WEIGHTS_PICK takes it where they fit. */
#define CVX_WINO_WEIGHTS_V4 __attribute__((target("arch=x86-64-v4"), optimize("fp-contract=off")))
#define CVX_WINO_GATHER_F32(k, idx, p)                                              \
    _mm512_cvtps_pd(_mm256_mmask_i32gather_ps(_mm256_setzero_ps(), k, idx, p, 4))
#define CVX_WINO_GATHER_F64(k, idx, p) _mm512_mask_i32gather_pd(_mm512_setzero_pd(), k, idx, p, 8)
#define CVX_WINO_PUT_F32(p, v) _mm256_store_ps(p, _mm512_cvtpd_ps(v))
#define CVX_WINO_PUT_F64(p, v) _mm512_store_pd(p, v)
#define CVX_DEFINE_WINO_WEIGHTS_V4(NAME, T, R, G, GATHER, PUT)                      \
CVX_WINO_WEIGHTS_V4 static int NAME(CVX_WINO_WEIGHTS_ARGS(T))                       \
{                                                                                   \
    const ptrdiff_t Mp = (O + CVX_MR - 1) / CVX_MR * CVX_MR;                        \
    __mmask8 small = 0;                                                             \
    int32_t at[2 * CVX_MR];        /* lane l's kernel, from the first's */         \
    __mmask8 rows = 0;             /* the lanes of filters o < O */               \
    for (int l = 0; l < 2 * CVX_MR; l++) {                                          \
        const ptrdiff_t c = l / CVX_MR, r = l % CVX_MR;                             \
        at[l] = (int32_t)((flip ? c * O + r : r * I + c) * R * R);                  \
        if (o0 + r < O)                                                             \
            rows |= (__mmask8)(1u << l);                                            \
    }                                                                               \
    const __m256i idx = _mm256_loadu_si256((const __m256i *)at);                    \
    const ptrdiff_t step = cvx_kc_step(I, CVX_ROWS_WHOLE, sizeof(T));               \
    for (ptrdiff_t i0 = 0; i0 < I; i0 += CVX_WINO_IB) {                             \
        const ptrdiff_t ib = I - i0 < CVX_WINO_IB ? I - i0 : CVX_WINO_IB;           \
        const ptrdiff_t pc = i0 / step * step;                                      \
        const ptrdiff_t kc = I - pc < step ? I - pc : step;                         \
        _Alignas(64) T u[36][CVX_WINO_IB * CVX_MR];                                 \
        for (ptrdiff_t i = 0; i < ib; i += 2) {                                     \
            const __mmask8 k = i + 1 < ib ? rows : (__mmask8)(rows & ((1u << CVX_MR) - 1)); \
            const T *src = flip ? w + ((i0 + i) * O + o0) * R * R                    \
                                : w + (o0 * I + i0 + i) * R * R;                    \
            __m512d g[R * R];                                                       \
            for (int e = 0; e < R * R; e++)                                         \
                g[e] = GATHER(k, idx, src + (flip ? R * R - 1 - e : e));            \
            __m512d top = _mm512_setzero_pd();                                      \
            for (int e = 0; e < R * R; e++) {                                       \
                const __m512d m = _mm512_abs_pd(g[e]);                              \
                small |= _mm512_cmp_pd_mask(m, _mm512_set1_pd(DBL_MAX), _CMP_NLE_UQ); \
                top = _mm512_max_pd(top, m);                                        \
            }                                                                       \
            small |= _mm512_cmp_pd_mask(top, _mm512_setzero_pd(), _CMP_GT_OQ)       \
                     & _mm512_cmp_pd_mask(top, _mm512_set1_pd(CVX_WINO_SMALL(T)), _CMP_LT_OQ); \
            for (int a = 0; a < 6; a++) {                                           \
                __m512d h[R];                                                       \
                for (int q = 0; q < R; q++) {                                       \
                    __m512d acc = _mm512_mul_pd(_mm512_set1_pd(G[a][0]), g[q]);     \
                    for (int p = 1; p < R; p++)                                     \
                        acc = _mm512_add_pd(acc, _mm512_mul_pd(_mm512_set1_pd(G[a][p]), \
                                                               g[p * R + q]));      \
                    h[q] = acc;                                                     \
                }                                                                   \
                for (int b = 0; b < 6; b++) {                                       \
                    __m512d acc = _mm512_mul_pd(h[0], _mm512_set1_pd(G[b][0]));     \
                    for (int q = 1; q < R; q++)                                     \
                        acc = _mm512_add_pd(acc, _mm512_mul_pd(h[q], _mm512_set1_pd(G[b][q]))); \
                    PUT(u[a * 6 + b] + i * CVX_MR, acc);                            \
                }                                                                   \
            }                                                                       \
        }                                                                           \
        for (int xi = 0; xi < 36; xi++)                                             \
            memcpy(pack + xi * Mp * I + pc * Mp + o0 * kc + (i0 - pc) * CVX_MR, u[xi], \
                   ib * CVX_MR * sizeof(T));                                        \
    }                                                                               \
    return small != 0;                                                              \
}
CVX_DEFINE_WINO_WEIGHTS_V4(cvx_wino_weights_f32_v4, float, 3, cvx_wino_g3, CVX_WINO_GATHER_F32,
                           CVX_WINO_PUT_F32)
CVX_DEFINE_WINO_WEIGHTS_V4(cvx_wino_weights_f64_v4, double, 3, cvx_wino_g3, CVX_WINO_GATHER_F64,
                           CVX_WINO_PUT_F64)
CVX_DEFINE_WINO_WEIGHTS_V4(cvx_wino_weights5_f32_v4, float, 5, cvx_wino_g5, CVX_WINO_GATHER_F32,
                           CVX_WINO_PUT_F32)
CVX_DEFINE_WINO_WEIGHTS_V4(cvx_wino_weights5_f64_v4, double, 5, cvx_wino_g5, CVX_WINO_GATHER_F64,
                           CVX_WINO_PUT_F64)
/* (the kernel's transforms: at x86-64-v4, v3 or the baseline) */
#define CVX_WINO_WEIGHTS_PICK(NAME, T)                                              \
static int NAME(CVX_WINO_WEIGHTS_ARGS(T))                                           \
{                                                                                   \
    const int fits = (I > O ? I : O) < (ptrdiff_t)1 << 24;   /* x 4 rows x 25 */    \
    return (cvx_isa >= 4 && fits ? NAME##_v4 : cvx_isa >= 3 ? NAME##_avx2 : NAME##_v1)( \
        CVX_WINO_WEIGHTS_PASS);                                                     \
}
#else
#define CVX_WINO_WEIGHTS_PICK(NAME, T)                                              \
static int NAME(CVX_WINO_WEIGHTS_ARGS(T)) { return NAME##_v1(CVX_WINO_WEIGHTS_PASS); }
#endif
CVX_WINO_WEIGHTS_PICK(cvx_wino_weights_f32, float)
CVX_WINO_WEIGHTS_PICK(cvx_wino_weights_f64, double)
CVX_WINO_WEIGHTS_PICK(cvx_wino_weights5_f32, float)
CVX_WINO_WEIGHTS_PICK(cvx_wino_weights5_f64, double)

#endif
