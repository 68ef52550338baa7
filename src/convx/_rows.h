/* convx: the rows kernel: a dense convolution at unit stride and dilation,
 * vectorised along the output rows, for small images of few channels
 * (LeNet-like layers, and their input gradients).
 *
 * Computes one output channel of one image,
 *
 *     out[i, j] = bias + sum_c sum_p sum_q  w[(c*K + p)*K + q] * xs_c[i + p - top][j + q]
 *
 * for 0 <= i < OH, 0 <= j < OW, where xs_c is channel c of the source with
 * its rows padded along the width only (Wp = OW + K - 1 values a row, rows
 * Wp apart, channels ``plane`` apart), and a row i + p - top outside
 * [0, Hs) is no term at all: the zero rows of the border are never
 * multiplied.  That is what the input gradient's rule asks for, and what
 * makes this kernel pay where the others do not: an unpadded layer's input
 * gradient is a forward pass over the output gradient inside a border of
 * K - 1 rows on each side, which LeNet's C3 (10x10 outputs of 14x14
 * inputs, 5x5) makes half of what the direct kernels read.
 *
 * The output is computed in bands of R = 4 rows (8 for a lone filter of 8
 * rows or more where a row is one vector, which no pair of filters fills
 * to the 8 chains below; the last band moved up to
 * end at the last row, recomputing rows of the one before: the same values
 * again), each row in NV vectors (the last moved left to end at the row's
 * end; a row narrower than a vector takes one vector, reading past the row
 * into the scratch's slack, and stores its first OW lanes), R x NV sums in
 * vector registers over the channels and taps, for two output channels at
 * once where a row is one vector (8 chains of multiply-adds: one takes 4
 * cycles, and two units start one each a cycle).  Each vector of a source row
 * is loaded once per band and tap column, and serves every row of the band
 * that reads it (up to min(R, K)): the source row t of the band (t = 0 ..
 * R + K - 2) is tap row t - r of band row r, known when the kernel is
 * compiled, since K is (5 or 7).  Every output sums bias, then c, then p,
 * then q in order, whatever the band: the bits depend on the shapes only.
 *
 * No checking is done here: _rows_passes.pxi guarantees that every read lies
 * in the scratch (the slack after the last row is at least a vector).  On
 * x86-64 the body is compiled for x86-64-v4 (64-byte vectors, up to 3 a row of
 * floats and 4 of doubles: 16 sums of its 32 registers),
 * -v3 and the baseline (32-byte vectors, up to 2 a row: 8 of AVX2's 16
 * registers hold the sums) and picked at run time by cvx_isa.
 */
#ifndef CONVX_ROWS_H
#define CONVX_ROWS_H

#include <stddef.h>
#include <string.h>

#include "_runtime.h"

#define CVX_ROWS_R 4          /* output rows of a band */
#define CVX_ROWS_R_MAX 8      /* ... and of a single filter's band where a row is one vector */
#define CVX_ROWS_NARROW_VB 32
#define CVX_ROWS_NARROW_NV 2  /* vectors a row, at most: -v3 and the baseline */
#define CVX_ROWS_WIDE_VB 64
#define CVX_ROWS_WIDE_NV 4    /* x86-64-v4: 3 of floats, 4 of doubles (CVX_ROWS_WIDE_NV_OF) */
#define CVX_ROWS_WIDE_NV_OF(itemsize) ((itemsize) == 8 ? 4 : 3)

#define CVX_ROWS_ARGS(T)                                                            \
    const T *xs, ptrdiff_t plane, ptrdiff_t Hs, ptrdiff_t Wp, ptrdiff_t C,          \
    const T *w, ptrdiff_t F, ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t top,             \
    const T *bias, T *out, ptrdiff_t OH, ptrdiff_t OW
#define CVX_ROWS_PASS xs, plane, Hs, Wp, C, w, F, KH, KW, top, bias, out, OH, OW

/* A loaded vector kept in a register for all its uses (CVX_KEEP_IF): with
 * the weight's broadcast, loading it again in each multiply-add is two
 * loads a multiply-add, the load ports the bound.  Only where a register
 * holds the vector: 64 bytes at x86-64-v4, 32 at -v3 (LV, the level the
 * body is compiled for). */
#define CVX_ROWS_KEEP(x, LV, VB) CVX_KEEP_IF(x, (LV) == 4 || ((LV) == 3 && (VB) == 32))

/* One variant V for T: vectors of VB bytes. */
#define CVX_DEFINE_ROWS_VARIANT(V, T, VB)                                           \
CVX_VECTOR_TYPE(T, V##_vt, VB);                                                     \
/* Where vector v of a row's NV starts: v*VL, the last at ``last``. */             \
static inline CVX_ALWAYS_INLINE ptrdiff_t V##_at(int v, const int NV, ptrdiff_t last) \
{                                                                                   \
    return v < NV - 1 ? v * (ptrdiff_t)(VB / sizeof(T)) : last;                     \
}                                                                                   \
/* The band of rows i .. i + R - 1 of FB output channels (weights C*K*K    */     \
/* apart, planes OH*OW apart): source row s0 + t is band row r's tap row   */     \
/* t - r.  EDGE: some of those source rows lie outside 0 .. Hs - 1.        */     \
static inline CVX_ALWAYS_INLINE void V##_band(                                      \
    const T *xs, ptrdiff_t plane, ptrdiff_t Hs, ptrdiff_t Wp, ptrdiff_t C,          \
    const T *w, const T *bias, ptrdiff_t s0, T *o, ptrdiff_t OHW, ptrdiff_t OW,     \
    ptrdiff_t last, const int K, const int NV, const int FB, const int R,           \
    const int EDGE, const int LV)                                                   \
{                                                                                   \
    enum { VL = VB / sizeof(T) };                                                   \
    V##_vt acc[2][CVX_ROWS_R_MAX][CVX_ROWS_WIDE_NV];                                \
    for (int f = 0; f < FB; f++) {                                                  \
        const T b = bias ? bias[f] : 0;                                             \
        for (int r = 0; r < R; r++)                                                 \
            for (int v = 0; v < NV; v++) acc[f][r][v] = CVX_V0ADD(V##_vt, b);       \
    }                                                                               \
    for (ptrdiff_t c = 0; c < C; c++) {                                             \
        const T *xc = xs + c * plane;                                               \
        const T *wc = w + c * K * K;                                                \
        CVX_UNROLL(16)                                                              \
        for (int t = 0; t < R + K - 1; t++) {                                       \
            const ptrdiff_t s = s0 + t;                                             \
            if (EDGE && (s < 0 || s >= Hs))                                         \
                continue;                                                           \
            const T *row = xc + s * Wp;                                             \
            CVX_UNROLL(8)                                                           \
            for (int q = 0; q < K; q++) {                                           \
                V##_vt x[CVX_ROWS_WIDE_NV];                                         \
                for (int v = 0; v < NV; v++) {                                      \
                    memcpy(&x[v], row + q + V##_at(v, NV, last), sizeof x[v]);      \
                    CVX_ROWS_KEEP(x[v], LV, VB);                                    \
                }                                                                   \
                for (int f = 0; f < FB; f++)                                        \
                    for (int r = 0; r < R; r++) {                                   \
                        const int p = t - r;                                        \
                        if (p < 0 || p >= K)                                        \
                            continue;                                               \
                        const V##_vt wv = CVX_VSUB0(V##_vt, wc[f * C * K * K + p * K + q]); \
                        for (int v = 0; v < NV; v++) CVX_VMAC(acc[f][r][v], wv, x[v]); \
                    }                                                               \
            }                                                                       \
        }                                                                           \
    }                                                                               \
    for (int f = 0; f < FB; f++) {                                                  \
        T *of = o + f * OHW;                                                        \
        if (OW >= (ptrdiff_t)VL) {                                                  \
            for (int r = 0; r < R; r++)                                             \
                for (int v = 0; v < NV; v++)                                        \
                    memcpy(of + r * OW + V##_at(v, NV, last), &acc[f][r][v],        \
                           sizeof acc[f][r][v]);                                    \
        } else {   /* a row narrower than a vector: its first OW lanes */          \
            for (int r = 0; r < R; r++)                                             \
                memcpy(of + r * OW, &acc[f][r][0], (size_t)OW * sizeof(T));         \
        }                                                                           \
    }                                                                               \
}                                                                                   \
/* FB output channels (f and f + 1 where FB = 2), in bands of R rows (the  */     \
/* last moved up to end at row OH).                                          */    \
static inline CVX_ALWAYS_INLINE void V##_planes(CVX_ROWS_ARGS(T), const int K,      \
                                                const int NV, const int FB,         \
                                                const int R, const int LV)          \
{                                                                                   \
    enum { VL = VB / sizeof(T) };                                                   \
    const ptrdiff_t last = OW >= (ptrdiff_t)VL ? OW - (ptrdiff_t)VL : 0;            \
    (void)F; (void)KH; (void)KW;                                                    \
    for (ptrdiff_t i0 = 0; i0 < OH; i0 += R) {                                      \
        const ptrdiff_t i = i0 + R <= OH ? i0 : OH - R;                             \
        if (i - top >= 0 && i - top + R + K - 1 <= Hs)                              \
            V##_band(xs, plane, Hs, Wp, C, w, bias, i - top, out + i * OW, OH * OW, OW, \
                     last, K, NV, FB, R, 0, LV);                                    \
        else                                                                        \
            V##_band(xs, plane, Hs, Wp, C, w, bias, i - top, out + i * OW, OH * OW, OW, \
                     last, K, NV, FB, R, 1, LV);                                    \
    }                                                                               \
}                                                                                   \
/* All F output channels: in pairs where a row is one vector (8 chains of  */     \
/* multiply-adds, not 4: the latency of one is 4 cycles, and two units     */     \
/* take one each a cycle), and the last single one in bands of 8 rows      */     \
/* there (a depthwise layer's only filter); else one at a time.            */     \
static inline CVX_ALWAYS_INLINE void V##_all(CVX_ROWS_ARGS(T), const int K,         \
                                             const int NV, const int LV)            \
{                                                                                   \
    ptrdiff_t f = 0;                                                                \
    const ptrdiff_t wf = C * K * K, of = OH * OW;                                   \
    if (NV == 1) {                                                                  \
        for (; f + 2 <= F; f += 2)                                                  \
            V##_planes(xs, plane, Hs, Wp, C, w + f * wf, 2, KH, KW, top,            \
                       bias ? bias + f : NULL, out + f * of, OH, OW, K, NV, 2,      \
                       CVX_ROWS_R, LV);                                             \
        if (f < F && OH >= CVX_ROWS_R_MAX) {                                        \
            V##_planes(xs, plane, Hs, Wp, C, w + f * wf, 1, KH, KW, top,            \
                       bias ? bias + f : NULL, out + f * of, OH, OW, K, NV, 1,      \
                       CVX_ROWS_R_MAX, LV);                                         \
            f++;                                                                    \
        }                                                                           \
    }                                                                               \
    for (; f < F; f++)                                                              \
        V##_planes(xs, plane, Hs, Wp, C, w + f * wf, 1, KH, KW, top,                \
                   bias ? bias + f : NULL, out + f * of, OH, OW, K, NV, 1,          \
                   CVX_ROWS_R, LV);                                                 \
}                                                                                   \
/* By K (5 or 7) and the vectors a row (1 .. NVMAX). */                           \
static inline CVX_ALWAYS_INLINE void V##_by(CVX_ROWS_ARGS(T), const int NVMAX,      \
                                            const int LV)                           \
{                                                                                   \
    enum { VL = VB / sizeof(T) };                                                   \
    const ptrdiff_t nv = (OW + (ptrdiff_t)VL - 1) / (ptrdiff_t)VL;                  \
    if (nv <= 1) {                                                                  \
        if (KH == 5) V##_all(CVX_ROWS_PASS, 5, 1, LV);                              \
        else V##_all(CVX_ROWS_PASS, 7, 1, LV);                                      \
    } else if (nv == 2 || NVMAX < 3) {                                              \
        if (KH == 5) V##_all(CVX_ROWS_PASS, 5, 2, LV);                              \
        else V##_all(CVX_ROWS_PASS, 7, 2, LV);                                      \
    } else if (nv == 3 || NVMAX < 4) {                                              \
        if (KH == 5) V##_all(CVX_ROWS_PASS, 5, 3, LV);                              \
        else V##_all(CVX_ROWS_PASS, 7, 3, LV);                                      \
    } else {                                                                        \
        if (KH == 5) V##_all(CVX_ROWS_PASS, 5, 4, LV);                              \
        else V##_all(CVX_ROWS_PASS, 7, 4, LV);                                      \
    }                                                                               \
}

#define CVX_DEFINE_ROWS(NAME, T)                                                    \
CVX_DEFINE_ROWS_VARIANT(NAME##_n, T, CVX_ROWS_NARROW_VB)                            \
CVX_DEFINE_ROWS_VARIANT(NAME##_w, T, CVX_ROWS_WIDE_VB)                              \
static inline CVX_ALWAYS_INLINE void NAME##_body(CVX_ROWS_ARGS(T), const int LV)    \
{                                                                                   \
    if (LV == 4)                                                                    \
        NAME##_w_by(CVX_ROWS_PASS, CVX_ROWS_WIDE_NV_OF(sizeof(T)), LV);             \
    else                                                                            \
        NAME##_n_by(CVX_ROWS_PASS, CVX_ROWS_NARROW_NV, LV);                         \
}                                                                                   \
CVX_ISA_DISPATCH_LEVEL(NAME, CVX_ROWS_ARGS(T), CVX_ROWS_PASS, NAME##_body)

CVX_DEFINE_ROWS(cvx_rows_f32, float)
CVX_DEFINE_ROWS(cvx_rows_f64, double)

/* Values after the last source row that the kernel may read (a row narrower
 * than a vector reads up to a vector past its end, into lanes it drops). */
#define CVX_ROWS_SLACK (CVX_ROWS_WIDE_VB / 4)

/* The widest output row the kernel takes: NVMAX vectors of the level's. */
static inline ptrdiff_t cvx_rows_max_width(ptrdiff_t itemsize)
{
    return cvx_isa >= 4 ? CVX_ROWS_WIDE_NV_OF(itemsize) * CVX_ROWS_WIDE_VB / itemsize
                        : CVX_ROWS_NARROW_NV * CVX_ROWS_NARROW_VB / itemsize;
}

#endif
