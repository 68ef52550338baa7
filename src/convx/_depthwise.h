/* convx: the depthwise micro-kernel (one input and one output channel per
 * group), at any stride.
 *
 * Computes, for one channel of one image,
 *
 *     out[i, j] = bias + sum_{p, q}  w[p*KW + q] * xpad[(i*sh + p*dh)*Wp + j + qoff[q]]
 *
 * for 0 <= i < rows and ja <= j < jb, where xpad is the channel with its
 * zero border (rows Wp apart) and ``out`` points at row 0 of the block (rows
 * OW apart).  qoff[q] is where tap column q reads (q*dw at unit width
 * stride, dilation dw).  At a width stride sw the caller stores the padded
 * rows as sw phase planes, plane a holding columns a, a + sw, a + 2*sw, ...,
 * so that the outputs along a row read consecutive values again, and
 * qoff[q] is the plane of column q*dw plus its place in the plane
 * (_depthwise_passes.pxi).
 *
 * Along each output row, blocks of NVMAX vectors of outputs (128 bytes; 512
 * in the wide variant, x86-64-v4's) start at the bias and get one
 * multiply-add per tap, taps in (p, q) order, in vector registers, reading
 * every input row where it lies (no packing, no channel block to fill: the
 * direct kernel's blocks of 4 output channels would be 3/4 padding here);
 * the rest of the row takes one to NVMAX vectors, the last moved left to end
 * at the row's end (overlapping the one before it, whose values it stores
 * again), so that a 28-wide row is 4 independent chains, not 3 chains one
 * after another and 4 columns tap by tap; a row narrower than a vector gets
 * the same sums tap by tap.  At unit vertical stride and dilation two output
 * rows go together: each vector of an input row is loaded once for both
 * (for a 5x5 kernel, 6 rows of loads for 10 of multiply-adds, not 10).
 * Each output is summed in the same order whatever the block, so the bits
 * do not depend on the threads (nor on the blocking: the same bits as tap
 * by tap).
 *
 * No checking is done here: _core.pyx guarantees that every read lies in
 * xpad (jb - 1 + qoff[q] lies in its row, and the rows exist).  At unit
 * width stride qoff is NULL and tap column q reads q*dw.  On x86-64 the
 * body is compiled for x86-64-v4, -v3 and the baseline and picked at run
 * time by cvx_isa (CVX_ISA_DISPATCH, _runtime.h).
 */
#ifndef CONVX_DEPTHWISE_H
#define CONVX_DEPTHWISE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_runtime.h"

/* Each variant of the kernel keeps up to NVMAX vectors of VB bytes of
 * outputs in registers while the taps are summed (two rows' worth where
 * rows are paired).  The narrow variant (32-byte vectors, 4 of them: two
 * SSE registers each on the baseline) runs on every level; on x86-64-v4
 * the wide one (64-byte vectors, 8 of them: 16 accumulators, 8 inputs and
 * 2 weights of its 32 registers where rows are paired) takes rows at least
 * one of its vectors wide: twice the lanes per instruction and twice the
 * independent chains, which a kernel of many taps (compute bound) needs
 * to keep both multiply-add units busy.  The sums are the same per lane
 * in both: the same bits. */
#define CVX_DW_NARROW_VB 32
#define CVX_DW_NARROW_NV 4
#define CVX_DW_WIDE_VB 64
#define CVX_DW_WIDE_NV 8

/* The kernel's arguments (cvx_depthwise_f32 and _f64: unit width stride), and
 * with the phase planes' column offsets (cvx_depthwise_f32_phases, _f64_phases). */
#define CVX_DW_ARGS(T)                                                              \
    const T *xpad, ptrdiff_t Wp, const T *w, ptrdiff_t KH, ptrdiff_t KW,            \
    ptrdiff_t sh, ptrdiff_t dh, ptrdiff_t dw, T bias, T *out, ptrdiff_t OW,         \
    ptrdiff_t rows, ptrdiff_t ja, ptrdiff_t jb
#define CVX_DW_PASS xpad, Wp, w, KH, KW, sh, dh, dw, bias, out, OW, rows, ja, jb
#define CVX_DW_QARGS(T)                                                             \
    const T *xpad, ptrdiff_t Wp, const T *w, ptrdiff_t KH, ptrdiff_t KW,            \
    ptrdiff_t sh, ptrdiff_t dh, ptrdiff_t dw, const ptrdiff_t *qoff, T bias, T *out, \
    ptrdiff_t OW, ptrdiff_t rows, ptrdiff_t ja, ptrdiff_t jb
#define CVX_DW_QPASS xpad, Wp, w, KH, KW, sh, dh, dw, qoff, bias, out, OW, rows, ja, jb
/* Where tap column q reads, relative to its row: the phase planes' offsets
 * where there are some, else q*dw (NAME##_body passes a literal NULL). */
#define CVX_DW_COL(q) (qoff ? qoff[q] : (q) * dw)

/* The rest of a row, nv vectors (1 <= nv <= NVMAX), by a block of that many. */
#define CVX_DW_TAIL4(V, b0, o0, nv, R)                                              \
    switch (nv) {                                                                   \
    case 1: V##_block(b0, Wp, w, KH, KW, dh, dw, qoff, bias, o0, OW, last, 1, R); break; \
    case 2: V##_block(b0, Wp, w, KH, KW, dh, dw, qoff, bias, o0, OW, last, 2, R); break; \
    case 3: V##_block(b0, Wp, w, KH, KW, dh, dw, qoff, bias, o0, OW, last, 3, R); break; \
    default: V##_block(b0, Wp, w, KH, KW, dh, dw, qoff, bias, o0, OW, last, 4, R); break; \
    }
#define CVX_DW_TAIL8(V, b0, o0, nv, R)                                              \
    switch (nv) {                                                                   \
    case 1: V##_block(b0, Wp, w, KH, KW, dh, dw, qoff, bias, o0, OW, last, 1, R); break; \
    case 2: V##_block(b0, Wp, w, KH, KW, dh, dw, qoff, bias, o0, OW, last, 2, R); break; \
    case 3: V##_block(b0, Wp, w, KH, KW, dh, dw, qoff, bias, o0, OW, last, 3, R); break; \
    case 4: V##_block(b0, Wp, w, KH, KW, dh, dw, qoff, bias, o0, OW, last, 4, R); break; \
    case 5: V##_block(b0, Wp, w, KH, KW, dh, dw, qoff, bias, o0, OW, last, 5, R); break; \
    case 6: V##_block(b0, Wp, w, KH, KW, dh, dw, qoff, bias, o0, OW, last, 6, R); break; \
    case 7: V##_block(b0, Wp, w, KH, KW, dh, dw, qoff, bias, o0, OW, last, 7, R); break; \
    default: V##_block(b0, Wp, w, KH, KW, dh, dw, qoff, bias, o0, OW, last, 8, R); break; \
    }

/* One variant V of the kernel for T: vectors of VB bytes, blocks of up to
 * NVMAX of them, TAIL the switch above for NVMAX. */
#define CVX_DEFINE_DEPTHWISE_VARIANT(V, T, VB, NVMAX, TAIL)                         \
CVX_VECTOR_TYPE(T, V##_vt, VB);                                                     \
/* Where vector v of NV starts: v*VL, the last at ``last``.               */     \
static inline CVX_ALWAYS_INLINE ptrdiff_t V##_at(int v, const int NV, ptrdiff_t last) \
{                                                                                   \
    return v < NV - 1 ? v * (ptrdiff_t)(VB / sizeof(T)) : last;                     \
}                                                                                   \
/* NV vectors of outputs, at o + v*VL and the last at o + last, summed    */     \
/* over the taps in registers (NV independent chains of multiply-adds); */      \
/* the last may overlap the one before it, and store its values again.  */      \
static inline CVX_ALWAYS_INLINE void V##_vectors(                                   \
    const T *base, ptrdiff_t Wp, const T *w, ptrdiff_t KH, ptrdiff_t KW,            \
    ptrdiff_t dh, ptrdiff_t dw, const ptrdiff_t *qoff, T bias, T *o, ptrdiff_t last, \
    const int NV)                                                                   \
{                                                                                   \
    V##_vt acc[NVMAX];                                                              \
    for (int v = 0; v < NV; v++) acc[v] = CVX_V0ADD(V##_vt, bias);                  \
    for (ptrdiff_t p = 0; p < KH; p++) {                                            \
        const T *row = base + p * dh * Wp;                                          \
        for (ptrdiff_t q = 0; q < KW; q++) {                                        \
            const V##_vt wv = CVX_V0ADD(V##_vt, w[p * KW + q]);                     \
            const T *s = row + CVX_DW_COL(q);                                       \
            for (int v = 0; v < NV; v++) {                                          \
                V##_vt x;                                                           \
                memcpy(&x, s + V##_at(v, NV, last), sizeof x);                      \
                CVX_VMAC(acc[v], wv, x);                                            \
            }                                                                       \
        }                                                                           \
    }                                                                               \
    for (int v = 0; v < NV; v++)                                                    \
        memcpy(o + V##_at(v, NV, last), &acc[v], sizeof acc[v]);                    \
}                                                                                   \
                                                                                    \
/* The same for two output rows at once, o and o + OW, at unit vertical    */     \
/* stride and dilation: input row r serves tap row r of the first and r - 1 */     \
/* of the second, so each vector of it is loaded once for both (each output */     \
/* still sums its taps in (p, q) order: the same bits as row by row).       */     \
static inline CVX_ALWAYS_INLINE void V##_vectors2(                                  \
    const T *base, ptrdiff_t Wp, const T *w, ptrdiff_t KH, ptrdiff_t KW,            \
    ptrdiff_t dw, const ptrdiff_t *qoff, T bias, T *o, ptrdiff_t OW, ptrdiff_t last, \
    const int NV)                                                                   \
{                                                                                   \
    V##_vt a0[NVMAX], a1[NVMAX];                                                    \
    for (int v = 0; v < NV; v++) a0[v] = a1[v] = CVX_V0ADD(V##_vt, bias);           \
    for (ptrdiff_t r = 0; r <= KH; r++) {                                           \
        const T *row = base + r * Wp;                                               \
        for (ptrdiff_t q = 0; q < KW; q++) {                                        \
            const T *s = row + CVX_DW_COL(q);                                       \
            V##_vt x[NVMAX];                                                        \
    for (int v = 0; v < NV; v++)                                                    \
                memcpy(&x[v], s + V##_at(v, NV, last), sizeof x[v]);                \
            if (r < KH) {                                                           \
                const V##_vt w0 = CVX_V0ADD(V##_vt, w[r * KW + q]);                 \
                for (int v = 0; v < NV; v++) CVX_VMAC(a0[v], w0, x[v]);             \
            }                                                                       \
            if (r > 0) {                                                            \
                const V##_vt w1 = CVX_V0ADD(V##_vt, w[(r - 1) * KW + q]);           \
                for (int v = 0; v < NV; v++) CVX_VMAC(a1[v], w1, x[v]);             \
            }                                                                       \
        }                                                                           \
    }                                                                               \
            for (int v = 0; v < NV; v++) {                                          \
        memcpy(o + V##_at(v, NV, last), &a0[v], sizeof a0[v]);                      \
        memcpy(o + OW + V##_at(v, NV, last), &a1[v], sizeof a1[v]);                 \
    }                                                                               \
}                                                                                   \
                                                                                    \
/* NV vectors of one output row (R = 1), or of two (R = 2).               */     \
static inline CVX_ALWAYS_INLINE void V##_block(                                     \
    const T *base, ptrdiff_t Wp, const T *w, ptrdiff_t KH, ptrdiff_t KW,            \
    ptrdiff_t dh, ptrdiff_t dw, const ptrdiff_t *qoff, T bias, T *o, ptrdiff_t OW,  \
    ptrdiff_t last, const int NV, const int R)                                      \
{                                                                                   \
    if (R == 2)                                                                     \
        V##_vectors2(base, Wp, w, KH, KW, dw, qoff, bias, o, OW, last, NV);         \
    else                                                                            \
        V##_vectors(base, Wp, w, KH, KW, dh, dw, qoff, bias, o, last, NV);          \
}                                                                                   \
                                                                                    \
/* A kernel of many taps along a row (unit dilation), one row at a time:  */     \
/* 4 blocks of 4 vectors, D = 4*VL outputs apart, 16 accumulators.  Block */     \
/* b's tap q reads the x vectors of block 0's tap q + b*D, so each vector */     \
/* of x is loaded once for every block that uses it (up to 4): about a    */     \
/* load per 2-4 multiply-adds where one block at a time loads one per     */     \
/* multiply-add, each across a cache line.  Every output still sums bias, */     \
/* then its taps in (p, q) order: the same bits.                          */     \
static inline CVX_ALWAYS_INLINE void V##_long(                                      \
    const T *base, ptrdiff_t Wp, const T *w, ptrdiff_t KH, ptrdiff_t KW,            \
    ptrdiff_t dh, T bias, T *o)                                                     \
{                                                                                   \
    enum { VL = VB / sizeof(T), D = 4 * VL };                                       \
    V##_vt acc[4][4];                                                               \
    for (int b = 0; b < 4; b++)                                                     \
        for (int v = 0; v < 4; v++) acc[b][v] = CVX_V0ADD(V##_vt, bias);            \
    for (ptrdiff_t p = 0; p < KH; p++) {                                            \
        const T *row = base + p * dh * Wp;                                          \
        const T *wp = w + p * KW;                                                   \
        for (ptrdiff_t t = 0; t < KW + 3 * D; t++) {                                \
            V##_vt x[4];                                                            \
            for (int v = 0; v < 4; v++) memcpy(&x[v], row + t + v * VL, sizeof x[v]); \
            for (int b = 0; b < 4; b++) {                                           \
                const ptrdiff_t q = t - b * D;                                      \
                if (q >= 0 && q < KW) {                                             \
                    const V##_vt wv = CVX_V0ADD(V##_vt, wp[q]);                     \
                    for (int v = 0; v < 4; v++) CVX_VMAC(acc[b][v], wv, x[v]);      \
                }                                                                   \
            }                                                                       \
        }                                                                           \
    }                                                                               \
    for (int b = 0; b < 4; b++)                                                     \
        for (int v = 0; v < 4; v++)                                                 \
            memcpy(o + b * D + v * VL, &acc[b][v], sizeof acc[b][v]);               \
}                                                                                   \
                                                                                    \
/* Output columns ja..jb of one row (R = 1) or two (R = 2: unit vertical   */     \
/* stride and dilation) from row i, in vectors: jb - ja >= VL.            */     \
static inline CVX_ALWAYS_INLINE void V##_rows(CVX_DW_QARGS(T), ptrdiff_t i, const int R) \
{                                                                                   \
    enum { VL = VB / sizeof(T), JB = VL * NVMAX };                                  \
    T *restrict o = out + i * OW;                                                   \
    const T *base = xpad + i * sh * Wp;                                             \
    ptrdiff_t j = ja;                                                               \
    (void)rows;                                                                     \
    if (R == 1 && NVMAX == 8 && !qoff && dw == 1 && 2 * KW >= 3 * 4 * VL)           \
        for (; j + 16 * VL <= jb; j += 16 * VL)   /* many taps: V##_long */        \
            V##_long(base + j, Wp, w, KH, KW, dh, bias, o + j);                     \
    for (; j + JB <= jb; j += JB)   /* JB outputs in registers over the taps */    \
        V##_block(base + j, Wp, w, KH, KW, dh, dw, qoff, bias, o + j, OW, JB - VL, NVMAX, \
                  R);                                                               \
    if (j < jb) {   /* the rest in vectors, the last ending at jb */               \
        const int nv = (int)((jb - j + VL - 1) / VL);                               \
        const ptrdiff_t last = jb - VL - j;                                         \
        const T *b0 = base + j;                                                     \
        T *o0 = o + j;                                                              \
        TAIL(V, b0, o0, nv, R)                                                      \
    }                                                                               \
    }

#define CVX_DEFINE_DEPTHWISE(NAME, T)                                               \
CVX_DEFINE_DEPTHWISE_VARIANT(NAME##_n, T, CVX_DW_NARROW_VB, CVX_DW_NARROW_NV, CVX_DW_TAIL4) \
CVX_DEFINE_DEPTHWISE_VARIANT(NAME##_w, T, CVX_DW_WIDE_VB, CVX_DW_WIDE_NV, CVX_DW_TAIL8) \
typedef NAME##_n_vt NAME##_vt;                                                      \
                                                                                    \
/* One output row (R = 1) or two (R = 2) from row i: in the wide variant's  */    \
/* vectors where wide and the row is one of them wide, else the narrow's,  */     \
/* or one narrow vector, its lanes past the row dropped, where the row is  */     \
/* narrower than that.                                                      */     \
static inline CVX_ALWAYS_INLINE void NAME##_rows(CVX_DW_QARGS(T), ptrdiff_t i,      \
                                                 const int R, const int wide)       \
{                                                                                   \
    enum { VW = CVX_DW_WIDE_VB / sizeof(T), VN = CVX_DW_NARROW_VB / sizeof(T) };    \
    if (wide && jb - ja >= VW) {                                                    \
        NAME##_w_rows(CVX_DW_QPASS, i, R);                                          \
        return;                                                                     \
    }                                                                               \
    if (jb - ja >= VN) {                                                            \
        NAME##_n_rows(CVX_DW_QPASS, i, R);                                          \
        return;                                                                     \
    }                                                                               \
    T *restrict o = out + i * OW;                                                   \
    const T *base = xpad + i * sh * Wp;                                             \
    /* Narrower than a vector: one vector of outputs summed in a register  */     \
    /* over the taps (tap by tap through memory, each output's sum was one */     \
    /* chain of stores and loads: 3-4x the time), its lanes past jb        */     \
    /* dropped.  They read up to VN - 1 values past the last output's      */     \
    /* window, which the scratch's slack holds (conv_depthwise).           */     \
    for (int r = 0; r < R; r++) {                                                   \
        T tmp[VN];                                                                  \
        NAME##_n_vectors(base + r * sh * Wp + ja, Wp, w, KH, KW, dh, dw, qoff, bias, tmp, \
                         0, 1);                                                     \
        memcpy(o + r * OW + ja, tmp, (size_t)(jb - ja) * sizeof(T));                \
    }                                                                               \
}                                                                                   \
                                                                                    \
/* v4 (its 32 vector registers): rows two at a time where they share input */    \
/* rows, and the wide variant.  AVX2's 16 registers spilled the paired     */     \
/* blocks, which took 2.5-6x the time.                                      */     \
static inline CVX_ALWAYS_INLINE void NAME##_loops(CVX_DW_QARGS(T), const int v4)    \
{                                                                                   \
    ptrdiff_t i = 0;                                                                \
    if (v4 && sh == 1 && dh == 1)                                                   \
        for (; i + 2 <= rows; i += 2)                                               \
            NAME##_rows(CVX_DW_QPASS, i, 2, v4);                                    \
    for (; i < rows; i++)                                                           \
        NAME##_rows(CVX_DW_QPASS, i, 1, v4);                                        \
}                                                                                   \
/* Two entry points: at unit width stride (qoff a literal NULL once inlined:  */    \
/* the reads q*dw apart, as the kernel's loops compile without phases), and   */    \
/* with the phase planes' column offsets.                                     */    \
static inline CVX_ALWAYS_INLINE void NAME##_body(CVX_DW_ARGS(T), const int v4)      \
{                                                                                   \
    NAME##_loops(xpad, Wp, w, KH, KW, sh, dh, dw, NULL, bias, out, OW, rows, ja, jb, \
                 v4);                                                               \
}                                                                                   \
static inline CVX_ALWAYS_INLINE void NAME##_phases_body(CVX_DW_QARGS(T), const int v4) \
{                                                                                   \
    NAME##_loops(CVX_DW_QPASS, v4);                                                 \
}                                                                                   \
CVX_ISA_DISPATCH_BY(NAME, CVX_DW_ARGS(T), CVX_DW_PASS, NAME##_body, 1, 0)           \
CVX_ISA_DISPATCH_BY(NAME##_phases, CVX_DW_QARGS(T), CVX_DW_QPASS, NAME##_phases_body, 1, 0)

CVX_DEFINE_DEPTHWISE(cvx_depthwise_f32, float)
CVX_DEFINE_DEPTHWISE(cvx_depthwise_f64, double)

/* The depthwise weight gradient of one channel of one image:
 *
 *     acc[p*KW + q] += sum_{i < rows, j < OW} xpad[(i*sh + p*dh)*Wp + j + q*dw] * g[i*OW + j]
 *
 * The image is cut into tiles of g (below).  In each tile, for each row of
 * taps p and block of up to 4 taps q (8 on x86-64-v4), the sums run along
 * the tile's rows in vector registers (two vectors of g at a time, one
 * accumulator pair per tap; then one vector; then the last columns, fewer
 * than a vector, as one vector ending at the tile's end, the lanes before
 * them zeroed in g and in x alike), or one column at a time in a tile
 * narrower than a vector; then each tap's lanes are added in order, then
 * its column tail, then that goes into acc.  The order depends on the
 * shapes only (not on the block of taps): the same bits for any threads.
 * Reads stay in xpad (OW - 1 + (KW - 1)*dw < Wp). */
#define CVX_DWW_ARGS(T)                                                             \
    const T *xpad, ptrdiff_t Wp, const T *g, ptrdiff_t OW, ptrdiff_t rows,          \
    ptrdiff_t sh, ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t dh, ptrdiff_t dw, T *acc
#define CVX_DWW_PASS xpad, Wp, g, OW, rows, sh, KH, KW, dh, dw, acc

/* Taps q0 .. q0 + NQ - 1 of tap row p. */
#define CVX_DWW_TAPS(VT, IVT, T, NQ)                                                \
    do {                                                                            \
        enum { VL = (int)(sizeof(VT) / sizeof(T)) };                                \
        VT a0[NQ], a1[NQ];                                                          \
        T tail[NQ];                                                                 \
        for (int k = 0; k < NQ; k++) {                                              \
            a0[k] = CVX_VZERO(VT);                                                  \
            a1[k] = CVX_VZERO(VT);                                                  \
            tail[k] = 0;                                                            \
        }                                                                           \
        /* a row's last OW % VL columns: one vector ending at OW, its lanes */      \
        /* before them zeroed in both operands (0 * 0, never 0 * inf)       */      \
        const ptrdiff_t jt = OW / VL * VL, last = OW - VL;                          \
        IVT keep;                                                                   \
        for (int l = 0; l < VL; l++) CVX_LANE(keep, l) = last + l >= jt ? -1 : 0;   \
        for (ptrdiff_t i = 0; i < rows; i++) {                                      \
            const T *gr = g + i * GS;                                               \
            const T *xr = xpad + (i * sh + p * dh) * Wp + q0 * dw;                  \
            ptrdiff_t j = 0;                                                        \
            for (; j + 2 * VL <= OW; j += 2 * VL) {                                 \
                VT g0, g1;                                                          \
                memcpy(&g0, gr + j, sizeof g0);                                     \
                memcpy(&g1, gr + j + VL, sizeof g1);                                \
        for (int k = 0; k < NQ; k++) {                                              \
                    VT x0, x1;                                                      \
                    memcpy(&x0, xr + k * dw + j, sizeof x0);                        \
                    memcpy(&x1, xr + k * dw + j + VL, sizeof x1);                   \
                    CVX_VMAC(a0[k], x0, g0);                                        \
                    CVX_VMAC(a1[k], x1, g1);                                        \
                }                                                                   \
            }                                                                       \
            if (j + VL <= OW) {                                                     \
                VT g0;                                                              \
                memcpy(&g0, gr + j, sizeof g0);                                     \
        for (int k = 0; k < NQ; k++) {                                              \
                    VT x0;                                                          \
                    memcpy(&x0, xr + k * dw + j, sizeof x0);                        \
                    CVX_VMAC(a0[k], x0, g0);                                        \
                }                                                                   \
                j += VL;                                                            \
            }                                                                       \
            if (j < OW && last >= 0) {                                              \
                VT g0;                                                              \
                memcpy(&g0, gr + last, sizeof g0);                                  \
                CVX_VMASK(VT, IVT, g0, keep);                                       \
        for (int k = 0; k < NQ; k++) {                                              \
                    VT x0;                                                          \
                    memcpy(&x0, xr + k * dw + last, sizeof x0);                     \
                    CVX_VMASK(VT, IVT, x0, keep);                                   \
                    CVX_VMAC(a1[k], x0, g0);                                        \
                }                                                                   \
                j = OW;                                                             \
            }                                                                       \
            for (; j < OW; j++)   /* a row narrower than a vector */                \
                for (int k = 0; k < NQ; k++)                                        \
                    tail[k] = tail[k] + xr[k * dw + j] * gr[j];                     \
        }                                                                           \
        for (int k = 0; k < NQ; k++) {                                              \
            VT v;                                                                   \
            CVX_VADD(v, a0[k], a1[k]);                                              \
            T sum = 0;                                                              \
            for (int l = 0; l < VL; l++) sum += CVX_LANE(v, l);                     \
            acc[p * KW + q0 + k] += sum + tail[k];                                  \
        }                                                                           \
    } while (0)

/* The taps of tap row p, up to NQMAX (4 or 8) at a time.  x86-64-v4 takes
 * 8 (16 accumulators of its 32 registers): a row of 5 to 8 taps is one pass
 * over the rows, not a block of 4 and a short one that loads g again for
 * what is left.  (64-byte vectors, 8 taps at a time, measured no faster
 * there: 0.85-1.48x the time of 32-byte ones, geometric mean 1.08x, on 12
 * depthwise layers and plain filters.) */
#define CVX_DWW_ROW(VT, IVT, T, NQMAX)                                              \
    for (ptrdiff_t q0 = 0; q0 < KW; q0 += NQMAX) {                                  \
        switch (KW - q0 < NQMAX ? KW - q0 : NQMAX) {                                \
        case 1: CVX_DWW_TAPS(VT, IVT, T, 1); break;                                 \
        case 2: CVX_DWW_TAPS(VT, IVT, T, 2); break;                                 \
        case 3: CVX_DWW_TAPS(VT, IVT, T, 3); break;                                 \
        case 4: CVX_DWW_TAPS(VT, IVT, T, 4); break;                                 \
        case 5: if (NQMAX >= 5) CVX_DWW_TAPS(VT, IVT, T, 5); break;                 \
        case 6: if (NQMAX >= 6) CVX_DWW_TAPS(VT, IVT, T, 6); break;                 \
        case 7: if (NQMAX >= 7) CVX_DWW_TAPS(VT, IVT, T, 7); break;                 \
        default: if (NQMAX >= 8) CVX_DWW_TAPS(VT, IVT, T, 8); break;                \
        }                                                                           \
    }

/* Tiles of about this many bytes of g. */
#define CVX_DWW_TILE 16384

#define CVX_DEFINE_DW_WGRAD(NAME, VT, IT, T)                                        \
CVX_VECTOR_TYPE(IT, NAME##_it, sizeof(VT));                                         \
/* One tile: ``rows`` rows of OW columns of g (rows GS apart) and what     */    \
/* they read of xpad.                                                       */    \
static inline CVX_ALWAYS_INLINE void NAME##_tile(CVX_DWW_ARGS(T), ptrdiff_t GS,     \
                                                 const int v4)                      \
{                                                                                   \
    for (ptrdiff_t p = 0; p < KH; p++) {                                            \
        if (v4)                                                                     \
            CVX_DWW_ROW(VT, NAME##_it, T, 8)                                        \
    else                                                                            \
            CVX_DWW_ROW(VT, NAME##_it, T, 4)                                        \
    }                                                                               \
}                                                                                   \
/* The image in tiles of about CVX_DWW_TILE bytes of g (whole rows where   */    \
/* they fit; else columns in multiples of 4 vectors, the last tile of a    */     \
/* row the rest), each tile's sums added into acc in turn: every tap row   */     \
/* of a tile reads what the tile's first tap row left in cache, and the    */     \
/* order of the sums is fixed by the shapes.  (The whole image at once     */     \
/* streamed it through L2 once per 4 taps: tiles take 0.79-0.93x the time */    \
/* on plain filters of 11x11 and 15x15 and of 127 and 255 taps, about the  */     \
/* same on depthwise layers.)                                               */    \
static inline CVX_ALWAYS_INLINE void NAME##_body(CVX_DWW_ARGS(T), const int v4)     \
{                                                                                   \
    enum { VALUES = CVX_DWW_TILE / sizeof(T), STEP = 4 * sizeof(VT) / sizeof(T) };  \
    const ptrdiff_t cb = OW <= VALUES ? OW : VALUES / STEP * STEP;                  \
    const ptrdiff_t rb = cb < OW ? 1 : (VALUES / OW > 1 ? VALUES / OW : 1);         \
    for (ptrdiff_t i0 = 0; i0 < rows; i0 += rb)                                     \
        for (ptrdiff_t j0 = 0; j0 < OW; j0 += cb)                                   \
            NAME##_tile(xpad + i0 * sh * Wp + j0, Wp, g + i0 * OW + j0,             \
                        OW - j0 < cb ? OW - j0 : cb, rows - i0 < rb ? rows - i0 : rb, \
                        sh, KH, KW, dh, dw, acc, OW, v4);                           \
}                                                                                   \
CVX_ISA_DISPATCH_BY(NAME, CVX_DWW_ARGS(T), CVX_DWW_PASS, NAME##_body, 1, 0)

CVX_DEFINE_DW_WGRAD(cvx_dw_wgrad_f32, cvx_depthwise_f32_vt, int32_t, float)
CVX_DEFINE_DW_WGRAD(cvx_dw_wgrad_f64, cvx_depthwise_f64_vt, int64_t, double)

/* The same gradient at unit stride and dilation of a KH x KW kernel (KW at
 * least 3) on rows at least one vector wide, by whole columns of vectors:
 *
 *     vacc[p*KW + q] (lanes summed) += sum_{i < OH, j < OW}
 *                                       xpad[(i + p)*Wp + j + q] * g[i*OW + j]
 *
 * (Wp >= OW + KW - 1).  The output columns go in vectors of VL, the last
 * moved left to end at OW, each over all the rows at once.  The taps go in
 * blocks of PB tap rows by QB tap columns: the QB vectors of row s of xpad
 * at tap columns Q0 .. Q0 + QB - 1 are loaded once and serve every tap row
 * p of the block, as output row s - p's, PB*QB sums in vector registers.
 * At x86-64-v4 a row of taps is cut into blocks of 3 to 7 columns (KW /
 * ceil(KW / 7), as even as they come), and the tap rows go in blocks of 5,
 * 5, 5, 4 and 3 for blocks of 3, 4, 5, 6 and 7 columns, the last block what
 * is left (15 to 25 sums of its 32 registers: a 5x5 kernel in one block,
 * 7x7 in blocks of 3, 3 and 1 tap rows).  Elsewhere the blocks are of 2 to
 * 4 columns (KW / ceil(KW / 4)) by 3 rows, or 2 rows for 4 columns: 6 to 9
 * sums of AVX2's 16 registers.  Each column's sums run down all its rows,
 * the first and last PB - 1 rows of xpad serving only some of the block's
 * tap rows, into the tap's vector of sums in vacc (K vectors of VL, loaded
 * and stored once a block), which the caller keeps over an item's images
 * and adds lane by lane at its end (cvx_dwr_lanes_*); the last column's
 * lanes that the column before it holds are zeroed in x and g alike.  The
 * order of the sums depends on the shapes only.  Where the tap-by-tap
 * kernel above loads about 9 vectors per 8 multiply-adds, this one loads
 * QB + PB per PB*QB (0.4 for 5 by 5), each of row s's QB vectors kept in
 * its register for the PB tap rows (CVX_KEEP_IF: GCC would load it again
 * in each multiply-add).  (Adding each column's lanes into acc, not the
 * item's once, took 1.0-1.35x the time: 28x28 images of a 5x5 kernel have
 * about 2 multiply-adds per lane added.) */
#define CVX_DWR_ARGS(T)                                                             \
    const T *xpad, ptrdiff_t Wp, const T *g, ptrdiff_t OW, ptrdiff_t OH, ptrdiff_t KH, \
    ptrdiff_t KW, T *vacc
#define CVX_DWR_PASS xpad, Wp, g, OW, OH, KH, KW, vacc
#define CVX_DWR_BPASS xpad, Wp, g, OW, OH, vacc, KW, j, keep, MASK, LV
/* The most tap columns a block at level LV, and tap rows a block for QB
 * columns: 15 to 25 sums of x86-64-v4's 32 registers, 6 to 9 of AVX2's 16
 * (the baseline as AVX2: it runs the same blocks in pairs of registers). */
#define CVX_DWR_QB_FOR(LV) ((LV) == 4 ? 7 : 4)
#define CVX_DWR_PB_FOR(QB, LV)                                                      \
    ((LV) == 4 ? ((QB) <= 5 ? 5 : (QB) == 6 ? 4 : 3) : ((QB) <= 3 ? 3 : 2))
/* The largest of those at any level: the sums' array */
#define CVX_DWR_QB_MAX CVX_DWR_QB_FOR(4)
#define CVX_DWR_PB_MAX CVX_DWR_PB_FOR(1, 4)
/* (in V##_taps: the block of tap rows P0 .. P0 + PB - 1 by QB columns from Q0) */
#define CVX_DWR_ROWS(V, QB) V##_rows(CVX_DWR_BPASS, P0, PB, Q0, QB, CVX_DWR_PB_FOR(QB, LV))

#define CVX_DEFINE_DWR_VARIANT(V, VT, IT, T)                                        \
CVX_VECTOR_TYPE(IT, V##_it, sizeof(VT));                                            \
/* Row s of xpad into the sums of the tap rows it serves (CHECK: not every */     \
/* one of P0 .. P0 + PB - 1); MASK: lanes where keep is 0 zeroed in x and  */     \
/* g alike (0 * 0, never 0 * inf).                                          */    \
static inline CVX_ALWAYS_INLINE void V##_row(                                       \
    const T *xpad, ptrdiff_t Wp, const T *g, ptrdiff_t OW, ptrdiff_t OH,            \
    VT a[CVX_DWR_PB_MAX][CVX_DWR_QB_MAX], ptrdiff_t j, V##_it keep, ptrdiff_t s,    \
    ptrdiff_t P0, const int PB, ptrdiff_t Q0, const int QB, const int CHECK,        \
    const int MASK, const int LV)                                                   \
{                                                                                   \
    VT x[CVX_DWR_QB_MAX];                                                           \
    const T *xr = xpad + s * Wp + j + Q0;                                           \
    CVX_UNROLL(8)                                                                   \
    for (int q = 0; q < QB; q++) {                                                  \
        memcpy(&x[q], xr + q, sizeof x[q]);                                         \
        if (MASK)                                                                   \
            CVX_VMASK(VT, V##_it, x[q], keep);                                      \
        CVX_KEEP_IF(x[q], LV >= 3 && PB > 1);   /* one load for the PB rows */      \
    }                                                                               \
    CVX_UNROLL(8)                                                                   \
    for (int b = 0; b < PB; b++) {                                                  \
        const ptrdiff_t i = s - P0 - b;                                             \
        if (CHECK && (i < 0 || i >= OH))                                            \
            continue;                                                               \
        VT gv;                                                                      \
        memcpy(&gv, g + i * OW + j, sizeof gv);                                     \
        if (MASK)                                                                   \
            CVX_VMASK(VT, V##_it, gv, keep);                                        \
        CVX_UNROLL(8)                                                               \
        for (int q = 0; q < QB; q++) CVX_VMAC(a[b][q], x[q], gv);                   \
    }                                                                               \
}                                                                                   \
/* Tap rows P0 .. P0 + PB - 1 by tap columns Q0 .. Q0 + QB - 1 of the      */     \
/* output columns j .. j + VL - 1, into their vectors of sums in vacc.     */     \
static inline CVX_ALWAYS_INLINE void V##_block(                                     \
    const T *xpad, ptrdiff_t Wp, const T *g, ptrdiff_t OW, ptrdiff_t OH, T *vacc,   \
    ptrdiff_t KW, ptrdiff_t j, V##_it keep, const int MASK, const int LV,           \
    ptrdiff_t P0, const int PB, ptrdiff_t Q0, const int QB)                         \
{                                                                                   \
    enum { VL = (int)(sizeof(VT) / sizeof(T)) };                                    \
    VT a[CVX_DWR_PB_MAX][CVX_DWR_QB_MAX];                                           \
    for (int b = 0; b < PB; b++)                                                    \
        for (int q = 0; q < QB; q++)                                                \
            memcpy(&a[b][q], vacc + ((P0 + b) * KW + Q0 + q) * VL, sizeof a[b][q]); \
    /* rows s of xpad: those before P0 + PB - 1 and from P0 + OH serve only */    \
    /* some of the block's tap rows (CHECK)                                 */    \
    const ptrdiff_t end = OH - 1 + P0 + PB;                                         \
    const ptrdiff_t s1 = P0 + PB - 1 < end ? P0 + PB - 1 : end;                     \
    const ptrdiff_t s2 = P0 + OH > s1 ? P0 + OH : s1;                               \
    ptrdiff_t s = P0;                                                               \
    for (; s < s1; s++)                                                             \
        V##_row(xpad, Wp, g, OW, OH, a, j, keep, s, P0, PB, Q0, QB, 1, MASK, LV);   \
    for (; s < s2; s++)                                                             \
        V##_row(xpad, Wp, g, OW, OH, a, j, keep, s, P0, PB, Q0, QB, 0, MASK, LV);   \
    for (; s < end; s++)                                                            \
        V##_row(xpad, Wp, g, OW, OH, a, j, keep, s, P0, PB, Q0, QB, 1, MASK, LV);   \
    for (int b = 0; b < PB; b++)                                                    \
        for (int q = 0; q < QB; q++)                                                \
            memcpy(vacc + ((P0 + b) * KW + Q0 + q) * VL, &a[b][q], sizeof a[b][q]); \
}                                                                                   \
/* A block of QB tap columns (a constant) by PB tap rows (up to PBMAX).   */     \
static inline CVX_ALWAYS_INLINE void V##_rows(                                      \
    const T *xpad, ptrdiff_t Wp, const T *g, ptrdiff_t OW, ptrdiff_t OH, T *vacc,   \
    ptrdiff_t KW, ptrdiff_t j, V##_it keep, const int MASK, const int LV,           \
    ptrdiff_t P0, ptrdiff_t PB, ptrdiff_t Q0, const int QB, const int PBMAX)        \
{                                                                                   \
    switch (PB) {                                                                   \
    case 5: if (PBMAX >= 5) V##_block(CVX_DWR_BPASS, P0, 5, Q0, QB); break;          \
    case 4: if (PBMAX >= 4) V##_block(CVX_DWR_BPASS, P0, 4, Q0, QB); break;          \
    case 3: if (PBMAX >= 3) V##_block(CVX_DWR_BPASS, P0, 3, Q0, QB); break;          \
    case 2: if (PBMAX >= 2) V##_block(CVX_DWR_BPASS, P0, 2, Q0, QB); break;          \
    default: V##_block(CVX_DWR_BPASS, P0, 1, Q0, QB); break;                        \
    }                                                                               \
}                                                                                   \
/* Every block of taps of the output columns j .. j + VL - 1.              */     \
static inline CVX_ALWAYS_INLINE void V##_taps(                                      \
    const T *xpad, ptrdiff_t Wp, const T *g, ptrdiff_t OW, ptrdiff_t OH, T *vacc,   \
    ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t j, V##_it keep, const int MASK,           \
    const int LV)                                                                   \
{                                                                                   \
    const ptrdiff_t nq = (KW + CVX_DWR_QB_FOR(LV) - 1) / CVX_DWR_QB_FOR(LV);        \
    for (ptrdiff_t iq = 0; iq < nq; iq++) {                                         \
        const ptrdiff_t Q0 = iq * KW / nq, QB = (iq + 1) * KW / nq - Q0;            \
        const ptrdiff_t pbmax = CVX_DWR_PB_FOR(QB, LV);                             \
        for (ptrdiff_t P0 = 0; P0 < KH; P0 += pbmax) {                              \
            const ptrdiff_t PB = KH - P0 < pbmax ? KH - P0 : pbmax;                 \
            switch (QB) {                                                           \
            case 2: CVX_DWR_ROWS(V, 2); break;                                      \
            case 3: CVX_DWR_ROWS(V, 3); break;                                      \
            case 4: CVX_DWR_ROWS(V, 4); break;                                      \
            case 5: if (LV == 4) CVX_DWR_ROWS(V, 5); break;                         \
            case 6: if (LV == 4) CVX_DWR_ROWS(V, 6); break;                         \
            default: if (LV == 4) CVX_DWR_ROWS(V, 7); break;                        \
            }                                                                       \
        }                                                                           \
    }                                                                               \
}                                                                                   \
/* Column by column of vectors, all the taps of one before the next: a     */     \
/* column's rows of xpad (VL + KW - 1 values each) stay in L2 for all the  */     \
/* blocks of taps.  The last column, moved left to end at OW, has the      */     \
/* lanes the column before it holds zeroed.                                 */    \
static inline CVX_ALWAYS_INLINE void V##_all(CVX_DWR_ARGS(T), const int LV)         \
{                                                                                   \
    enum { VL = (int)(sizeof(VT) / sizeof(T)) };                                    \
    V##_it keep;                                                                    \
    for (int l = 0; l < VL; l++) CVX_LANE(keep, l) = l >= VL - OW % VL ? -1 : 0;    \
    ptrdiff_t j = 0;                                                                \
    for (; j + VL <= OW; j += VL)                                                   \
        V##_taps(xpad, Wp, g, OW, OH, vacc, KH, KW, j, keep, 0, LV);                \
    if (j < OW)                                                                     \
        V##_taps(xpad, Wp, g, OW, OH, vacc, KH, KW, OW - VL, keep, 1, LV);          \
}                                                                                   \
/* acc[t] += the lanes of vacc's vector t, in order.                       */     \
static inline CVX_ALWAYS_INLINE void V##_lanes(const T *vacc, ptrdiff_t K, T *acc)  \
{                                                                                   \
    enum { VL = (int)(sizeof(VT) / sizeof(T)) };                                    \
    for (ptrdiff_t t = 0; t < K; t++) {                                             \
        T sum = 0;                                                                  \
        for (int l = 0; l < VL; l++) sum += vacc[t * VL + l];                       \
        acc[t] += sum;                                                              \
    }                                                                               \
}

CVX_DEFINE_DWR_VARIANT(cvx_dwr_f32_n, cvx_depthwise_f32_n_vt, int32_t, float)
CVX_DEFINE_DWR_VARIANT(cvx_dwr_f32_w, cvx_depthwise_f32_w_vt, int32_t, float)
CVX_DEFINE_DWR_VARIANT(cvx_dwr_f64_n, cvx_depthwise_f64_n_vt, int64_t, double)
CVX_DEFINE_DWR_VARIANT(cvx_dwr_f64_w, cvx_depthwise_f64_w_vt, int64_t, double)

/* x86-64-v4: 64-byte vectors in blocks of up to 7 tap columns by 5 rows
 * (its 32 registers); elsewhere 32-byte vectors, up to 4 by 3 (AVX2's 16). */
#define CVX_DWR_BODY(NAME, T)                                                       \
static inline CVX_ALWAYS_INLINE void NAME##_body(CVX_DWR_ARGS(T), const int LV)     \
{                                                                                   \
    if (LV == 4)                                                                    \
        NAME##_w_all(CVX_DWR_PASS, LV);                                             \
    else                                                                            \
        NAME##_n_all(CVX_DWR_PASS, LV);                                             \
}                                                                                   \
CVX_ISA_DISPATCH_LEVEL(NAME, CVX_DWR_ARGS(T), CVX_DWR_PASS, NAME##_body)

CVX_DWR_BODY(cvx_dwr_f32, float)
CVX_DWR_BODY(cvx_dwr_f64, double)

/* acc[t] += the lanes of cvx_dwr's vector of sums t, in order, t < K: at
 * the level cvx_dwr ran at, its vectors' width. */
#define CVX_DWR_LANES_ARGS(T) const T *vacc, ptrdiff_t K, T *acc
#define CVX_DWR_LANES_PASS vacc, K, acc
#define CVX_DWR_LANES(NAME, V, T)                                                   \
static inline CVX_ALWAYS_INLINE void NAME##_body(CVX_DWR_LANES_ARGS(T), const int LV) \
{                                                                                   \
    if (LV == 4)                                                                    \
        V##_w_lanes(CVX_DWR_LANES_PASS);                                            \
    else                                                                            \
        V##_n_lanes(CVX_DWR_LANES_PASS);                                            \
}                                                                                   \
CVX_ISA_DISPATCH_LEVEL(NAME, CVX_DWR_LANES_ARGS(T), CVX_DWR_LANES_PASS, NAME##_body)

CVX_DWR_LANES(cvx_dwr_lanes_f32, cvx_dwr_f32, float)
CVX_DWR_LANES(cvx_dwr_lanes_f64, cvx_dwr_f64, double)

/* The narrowest output row cvx_dwr takes: a vector of the level's. */
static inline ptrdiff_t cvx_dwr_min_width(ptrdiff_t itemsize)
{
    return (cvx_isa >= 4 ? CVX_DW_WIDE_VB : CVX_DW_NARROW_VB) / itemsize;
}

#endif
