/* convx: the depthwise micro-kernel (one input and one output channel per
 * group), for unit horizontal stride.
 *
 * Computes, for one channel of one image,
 *
 *     out[i, j] = bias + sum_{p, q}  w[p*KW + q] * xpad[(i*sh + p*dh)*Wp + j + q*dw]
 *
 * for 0 <= i < rows and ja <= j < jb, where xpad is the channel with its
 * zero border (rows Wp apart) and ``out`` points at row 0 of the block (rows
 * OW apart).  Along each output row, blocks of CVX_DW_BLOCK bytes of
 * outputs (32 floats, 16 doubles; then of one vector) start at the bias and
 * get one multiply-add per tap, taps in (p, q) order, in vector registers, reading
 * every input row where it lies (no packing, no channel block to fill: the
 * direct kernel's blocks of 4 output channels would be 3/4 padding here);
 * the row's last outputs get the same sums tap by tap.  Each output is
 * summed in the same order whatever the block, so the bits do not depend on
 * the threads (nor on the blocking: the same bits as tap by tap).
 *
 * No checking is done here: _core.pyx guarantees that every read lies in
 * xpad (jb - 1 + (KW - 1)*dw < Wp and the rows exist).  On x86-64 the body
 * is compiled for x86-64-v4, -v3 and the baseline and picked at run time by
 * cvx_isa (CVX_ISA_DISPATCH, _runtime.h).
 */
#ifndef CONVX_DEPTHWISE_H
#define CONVX_DEPTHWISE_H

#include <stddef.h>
#include <string.h>

#include "_runtime.h"

/* Bytes of outputs kept in registers while the taps are summed: CVX_DW_NV
 * vectors of 32 bytes (32 floats, 16 doubles; two SSE registers each on the
 * baseline). */
#define CVX_DW_BLOCK 128
#define CVX_DW_NV 4

#define CVX_DW_ARGS(T)                                                              \
    const T *xpad, ptrdiff_t Wp, const T *w, ptrdiff_t KH, ptrdiff_t KW,            \
    ptrdiff_t sh, ptrdiff_t dh, ptrdiff_t dw, T bias, T *out, ptrdiff_t OW,         \
    ptrdiff_t rows, ptrdiff_t ja, ptrdiff_t jb
#define CVX_DW_PASS xpad, Wp, w, KH, KW, sh, dh, dw, bias, out, OW, rows, ja, jb

#define CVX_DEFINE_DEPTHWISE(NAME, T)                                               \
typedef T NAME##_vt __attribute__((vector_size(CVX_DW_BLOCK / CVX_DW_NV)));         \
static inline __attribute__((always_inline)) void NAME##_body(CVX_DW_ARGS(T))       \
{                                                                                   \
    enum { JB = CVX_DW_BLOCK / sizeof(T) };                                         \
    for (ptrdiff_t i = 0; i < rows; i++) {                                          \
        T *restrict o = out + i * OW;                                               \
        const T *base = xpad + i * sh * Wp;                                         \
        ptrdiff_t j = ja;                                                           \
        for (; j + JB <= jb; j += JB) {   /* JB outputs in registers over the taps */ \
            NAME##_vt acc[CVX_DW_NV];                                               \
            for (int v = 0; v < CVX_DW_NV; v++) acc[v] = (NAME##_vt){0} + bias;     \
            for (ptrdiff_t p = 0; p < KH; p++) {                                    \
                const T *row = base + p * dh * Wp + j;                              \
                for (ptrdiff_t q = 0; q < KW; q++) {                                \
                    const NAME##_vt wv = (NAME##_vt){0} + w[p * KW + q];            \
                    const T *s = row + q * dw;                                      \
                    for (int v = 0; v < CVX_DW_NV; v++) {                           \
                        NAME##_vt x;                                                \
                        memcpy(&x, s + v * (JB / CVX_DW_NV), sizeof x);             \
                        acc[v] = acc[v] + wv * x;                                   \
                    }                                                               \
                }                                                                   \
            }                                                                       \
            memcpy(o + j, acc, sizeof acc);                                         \
        }                                                                           \
        for (; j + JB / CVX_DW_NV <= jb; j += JB / CVX_DW_NV) {  /* one vector */   \
            NAME##_vt acc = (NAME##_vt){0} + bias;                                  \
            for (ptrdiff_t p = 0; p < KH; p++) {                                    \
                const T *row = base + p * dh * Wp + j;                              \
                for (ptrdiff_t q = 0; q < KW; q++) {                                \
                    NAME##_vt x;                                                    \
                    memcpy(&x, row + q * dw, sizeof x);                             \
                    acc = acc + ((NAME##_vt){0} + w[p * KW + q]) * x;               \
                }                                                                   \
            }                                                                       \
            memcpy(o + j, &acc, sizeof acc);                                        \
        }                                                                           \
        if (j == jb)                                                                \
            continue;                                                               \
        for (ptrdiff_t jj = j; jj < jb; jj++)  /* the rest, tap by tap */           \
            o[jj] = bias;                                                           \
        for (ptrdiff_t p = 0; p < KH; p++) {                                        \
            const T *row = base + p * dh * Wp;                                      \
            for (ptrdiff_t q = 0; q < KW; q++) {                                    \
                const T wv = w[p * KW + q];                                         \
                const T *restrict s = row + q * dw;                                 \
                for (ptrdiff_t jj = j; jj < jb; jj++)                               \
                    o[jj] += wv * s[jj];                                            \
            }                                                                       \
        }                                                                           \
    }                                                                               \
}                                                                                   \
CVX_ISA_DISPATCH(NAME, CVX_DW_ARGS(T), CVX_DW_PASS, NAME##_body)

CVX_DEFINE_DEPTHWISE(cvx_depthwise_f32, float)
CVX_DEFINE_DEPTHWISE(cvx_depthwise_f64, double)

/* The depthwise weight gradient of one channel of one image:
 *
 *     acc[p*KW + q] += sum_{i < rows, j < OW} xpad[(i*sh + p*dh)*Wp + j + q*dw] * g[i*OW + j]
 *
 * For each row of taps p and block of up to 4 taps q, the sums run along
 * the output rows in vector registers (two vectors of g at a time, one
 * accumulator pair per tap; then one vector), the last columns one at a
 * time; then each
 * tap's lanes are added in order, then its column tail, then that goes into
 * acc.  The order depends on the shapes only: the same bits for any
 * threads.  Reads stay in xpad (OW - 1 + (KW - 1)*dw < Wp). */
#define CVX_DWW_ARGS(T)                                                             \
    const T *xpad, ptrdiff_t Wp, const T *g, ptrdiff_t OW, ptrdiff_t rows,          \
    ptrdiff_t sh, ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t dh, ptrdiff_t dw, T *acc
#define CVX_DWW_PASS xpad, Wp, g, OW, rows, sh, KH, KW, dh, dw, acc

/* Taps q0 .. q0 + NQ - 1 of tap row p. */
#define CVX_DWW_TAPS(VT, T, NQ)                                                     \
    do {                                                                            \
        enum { VL = (int)(sizeof(VT) / sizeof(T)) };                                \
        VT a0[NQ], a1[NQ];                                                          \
        T tail[NQ];                                                                 \
        for (int k = 0; k < NQ; k++) {                                              \
            a0[k] = (VT){0};                                                        \
            a1[k] = (VT){0};                                                        \
            tail[k] = 0;                                                            \
        }                                                                           \
        for (ptrdiff_t i = 0; i < rows; i++) {                                      \
            const T *gr = g + i * OW;                                               \
            const T *xr = xpad + (i * sh + p * dh) * Wp + q0 * dw;                  \
            ptrdiff_t j = 0;                                                        \
            for (; j + 2 * VL <= OW; j += 2 * VL) {                                 \
                VT g0, g1;                                                          \
                memcpy(&g0, gr + j, sizeof g0);                                     \
                memcpy(&g1, gr + j + VL, sizeof g1);                                \
                for (int k = 0; k < NQ; k++) {                                      \
                    VT x0, x1;                                                      \
                    memcpy(&x0, xr + k * dw + j, sizeof x0);                        \
                    memcpy(&x1, xr + k * dw + j + VL, sizeof x1);                   \
                    a0[k] = a0[k] + x0 * g0;                                        \
                    a1[k] = a1[k] + x1 * g1;                                        \
                }                                                                   \
            }                                                                       \
            if (j + VL <= OW) {                                                     \
                VT g0;                                                              \
                memcpy(&g0, gr + j, sizeof g0);                                     \
                for (int k = 0; k < NQ; k++) {                                      \
                    VT x0;                                                          \
                    memcpy(&x0, xr + k * dw + j, sizeof x0);                        \
                    a0[k] = a0[k] + x0 * g0;                                        \
                }                                                                   \
                j += VL;                                                            \
            }                                                                       \
            for (; j < OW; j++)                                                     \
                for (int k = 0; k < NQ; k++)                                        \
                    tail[k] = tail[k] + xr[k * dw + j] * gr[j];                     \
        }                                                                           \
        for (int k = 0; k < NQ; k++) {                                              \
            const VT v = a0[k] + a1[k];                                             \
            T sum = 0;                                                              \
            for (int l = 0; l < VL; l++) sum += v[l];                               \
            acc[p * KW + q0 + k] += sum + tail[k];                                  \
        }                                                                           \
    } while (0)

#define CVX_DEFINE_DW_WGRAD(NAME, VT, T)                                            \
static inline __attribute__((always_inline)) void NAME##_body(CVX_DWW_ARGS(T))      \
{                                                                                   \
    for (ptrdiff_t p = 0; p < KH; p++)                                              \
        for (ptrdiff_t q0 = 0; q0 < KW; q0 += 4) {                                  \
            switch (KW - q0 < 4 ? KW - q0 : 4) {                                    \
            case 1: CVX_DWW_TAPS(VT, T, 1); break;                                  \
            case 2: CVX_DWW_TAPS(VT, T, 2); break;                                  \
            case 3: CVX_DWW_TAPS(VT, T, 3); break;                                  \
            default: CVX_DWW_TAPS(VT, T, 4); break;                                 \
            }                                                                       \
        }                                                                           \
}                                                                                   \
CVX_ISA_DISPATCH(NAME, CVX_DWW_ARGS(T), CVX_DWW_PASS, NAME##_body)

CVX_DEFINE_DW_WGRAD(cvx_dw_wgrad_f32, cvx_depthwise_f32_vt, float)
CVX_DEFINE_DW_WGRAD(cvx_dw_wgrad_f64, cvx_depthwise_f64_vt, double)

#endif
