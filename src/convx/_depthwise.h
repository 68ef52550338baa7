/* convx: the depthwise micro-kernel (one input and one output channel per
 * group), for unit horizontal stride.
 *
 * Computes, for one channel of one image,
 *
 *     out[i, j] = bias + sum_{p, q}  w[p*KW + q] * xpad[(i*sh + p*dh)*Wp + j + q*dw]
 *
 * for 0 <= i < rows and ja <= j < jb, where xpad is the channel with its
 * zero border (rows Wp apart) and ``out`` points at row 0 of the block (rows
 * OW apart).  Each output row is set to the bias and then gets one
 * multiply-add per tap, taps in (p, q) order: a loop along the row that the
 * compiler vectorises, reading every input row where it lies (no packing,
 * no channel block to fill: the direct kernel's blocks of 4 output channels
 * would be 3/4 padding here).  Each output is summed in the same order
 * whatever the block, so the bits do not depend on the threads.
 *
 * No checking is done here: _core.pyx guarantees that every read lies in
 * xpad (jb - 1 + (KW - 1)*dw < Wp and the rows exist).  On x86-64 the body
 * is compiled for x86-64-v4, -v3 and the baseline and picked at run time by
 * cvx_isa (CVX_ISA_DISPATCH, _runtime.h).
 */
#ifndef CONVX_DEPTHWISE_H
#define CONVX_DEPTHWISE_H

#include <stddef.h>

#include "_runtime.h"

#define CVX_DW_ARGS(T)                                                              \
    const T *xpad, ptrdiff_t Wp, const T *w, ptrdiff_t KH, ptrdiff_t KW,            \
    ptrdiff_t sh, ptrdiff_t dh, ptrdiff_t dw, T bias, T *out, ptrdiff_t OW,         \
    ptrdiff_t rows, ptrdiff_t ja, ptrdiff_t jb
#define CVX_DW_PASS xpad, Wp, w, KH, KW, sh, dh, dw, bias, out, OW, rows, ja, jb

#define CVX_DEFINE_DEPTHWISE(NAME, T)                                               \
static inline __attribute__((always_inline)) void NAME##_body(CVX_DW_ARGS(T))       \
{                                                                                   \
    for (ptrdiff_t i = 0; i < rows; i++) {                                          \
        T *restrict o = out + i * OW;                                               \
        for (ptrdiff_t j = ja; j < jb; j++)                                         \
            o[j] = bias;                                                            \
        for (ptrdiff_t p = 0; p < KH; p++) {                                        \
            const T *row = xpad + (i * sh + p * dh) * Wp;                           \
            for (ptrdiff_t q = 0; q < KW; q++) {                                    \
                const T wv = w[p * KW + q];                                         \
                const T *restrict s = row + q * dw;                                 \
                for (ptrdiff_t j = ja; j < jb; j++)                                 \
                    o[j] += wv * s[j];                                              \
            }                                                                       \
        }                                                                           \
    }                                                                               \
}                                                                                   \
CVX_ISA_DISPATCH(NAME, CVX_DW_ARGS(T), CVX_DW_PASS, NAME##_body)

CVX_DEFINE_DEPTHWISE(cvx_depthwise_f32, float)
CVX_DEFINE_DEPTHWISE(cvx_depthwise_f64, double)

#endif
