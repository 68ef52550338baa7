/* convx: the direct-convolution micro-kernel, for unit horizontal stride.
 *
 * Computes, for one image and one group,
 *
 *     out[f, i, j] = bias[f] + sum_k  wt[k, f] * xpad[i*sh*Wp + j + off[k]]
 *
 * for 0 <= f < F, i0 <= i < i1 and ja <= j < jb (a block of the OH x OW
 * output), where k runs over the K kernel taps (c, p, q) and
 * off[k] = c*Hp*Wp + p*dh*Wp + q*dw is where tap k reads,
 * relative to the output position, in the zero-padded image xpad (C, Hp, Wp).
 * This is the forward cross-correlation; the input gradient at stride 1 is
 * the same sum over the padded output gradient with the kernel flipped (the
 * caller builds wt and off for either).
 *
 * No checking is done here; the callers in _core.pyx guarantee:
 *   - every read xpad[i*sh*Wp + j + off[k]] for j < ja + round_up(jb - ja, JB)
 *     lies inside the buffer, JB = 2 vectors = 16 floats or 8 doubles (it has
 *     JB elements of slack after the image: _engine._DIRECT_JB); values read
 *     past the rows and columns the block needs land only in lanes that are
 *     not stored;
 *   - wt is packed by blocks of CVX_FB output channels, (ceil(F / CVX_FB),
 *     K, CVX_FB): wt[b, k, a] is the weight of tap k for channel
 *     b*CVX_FB + a, zero past F.  A block's weights are then read in order,
 *     CVX_FB values per tap, instead of one short run per row of a (K, F)
 *     matrix.
 *
 * Blocking: a block of CVX_FB output channels times 2 vectors of consecutive
 * output columns, for one or two output rows, is accumulated in registers
 * over all K taps, then stored.  The last block of a row at least 2 vectors
 * wide is moved left to end at jb (it overlaps the one before); a block that
 * still sticks out past F or jb is computed into a stack buffer and its valid
 * part copied out.  With one output channel (F = 1) the block is that
 * channel times 8 vectors for one row, 4 for two (rows at least 4 vectors
 * wide): 4 accumulators of 4 would hold zeros.  On x86-64-v4 those vectors
 * are 64 bytes wide where the row is wide enough: one row of a 1-D signal
 * then runs 16 doubles or 32 floats per multiply-add, as its 2-row blocks do
 * on 2-D images.
 *
 * Portability: the vectors are GCC/Clang vector extensions of 32 bytes, or,
 * where there are none or in a portable build (CVX_HAVE_GCC_VECTOR,
 * _runtime.h), structs of as many lanes, added and multiplied lane by lane
 * in plain C loops: the same operations in the same order.  On
 * x86-64 each kernel is compiled for more than one instruction set and picks
 * one at run time by cvx_isa (_runtime.h), so a portable wheel runs the fast
 * one where the CPU has it: the forward kernel for x86-64-v4 (AVX-512's 32
 * registers hold two rows of accumulators), x86-64-v3 (AVX2, FMA) and the
 * baseline; the weight gradient for x86-64-v3 and the baseline.  Elsewhere
 * the compiler maps the vectors to whatever SIMD the target has.  The two
 * element types are instantiated from one body by CVX_DEFINE_DIRECT and
 * CVX_DEFINE_WGRAD (with _gemm.h's, the only macro templates in convx):
 * fused types cannot express SIMD vectors.
 */
#ifndef CONVX_DIRECT_H
#define CONVX_DIRECT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_runtime.h"

#define CVX_FB 4        /* output channels per register block */

/* The one-output-channel block (F = 1), in vectors VT of VL lanes: R rows  */
/* (1 or 2) by V vectors of consecutive columns from j0 (all inside the      */
/* range), R*V <= 8 accumulators: 2 FMAs a cycle of 4 cycles' latency need   */
/* 8 (4 left the FMA units half idle on one-row, 1-D calls).  The same sum   */
/* per output, in the same order, whatever VT: the same bits.                */
#define CVX_DIRECT_BLOCK1(FN, T, VT, VL)                                            \
static inline CVX_ALWAYS_INLINE void FN(                                            \
    const T *xpad, ptrdiff_t row_step, const T *wt, const ptrdiff_t *off,           \
    ptrdiff_t K, const T *bias, T *out, ptrdiff_t OW, ptrdiff_t i, ptrdiff_t j0,    \
    const int R, const int V)                                                       \
{                                                                                   \
    const VT b0 = CVX_VSUB0(VT, bias ? bias[0] : (T)0);   /* a broadcast */         \
    VT acc[2][8] = {{b0, b0, b0, b0, b0, b0, b0, b0},                               \
                    {b0, b0, b0, b0, b0, b0, b0, b0}};                              \
    const T *xj = xpad + i * row_step + j0;                                         \
    for (ptrdiff_t k = 0; k < K; k++) {                                             \
        const VT wb = CVX_VSUB0(VT, wt[k * CVX_FB]);                                \
        const T *p = xj + off[k];    /* (one pointer a tap: constant displacements) */\
        for (int r = 0; r < R; r++, p += row_step)                                  \
            for (int v = 0; v < V; v++)                                             \
                { const VT xv = CVX_VLD(VT, p + v * VL); CVX_VMAC(acc[r][v], wb, xv); } \
    }                                                                               \
    for (int r = 0; r < R; r++)                                                     \
        for (int v = 0; v < V; v++)                                                 \
            CVX_VST(out + (i + r) * OW + j0 + v * VL, acc[r][v]);                   \
}

#define CVX_DEFINE_DIRECT(NAME, T, VT, VL)                                          \
CVX_VECTOR_TYPE(T, VT, 32);                                                         \
                                                                                    \
/* One register block: CVX_FB channels from f0, 2*VL columns from j0, R rows   */  \
/* (1 or 2, a constant once inlined) from i.                                    */  \
static inline CVX_ALWAYS_INLINE void NAME##_block(                                  \
    const T *xpad, ptrdiff_t row_step, const T *wt,                                 \
    const ptrdiff_t *off, ptrdiff_t K, ptrdiff_t F, const T *bias,                  \
    T *out, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t i, ptrdiff_t j0, ptrdiff_t jend,  \
    ptrdiff_t f0, const int R)                                                      \
{                                                                                   \
    enum { JB = 2 * VL };                                                           \
    /* the accumulators start at the channels' bias (0 past F), broadcast;   */     \
    /* initialised, not stored into: GCC 12 reads element and broadcast      */     \
    /* stores into an uninitialised array as reads of it (CVX_FB is 4)       */     \
    const VT b0 = CVX_VSUB0(VT, bias && f0 < F ? bias[f0] : (T)0);                  \
    const VT b1 = CVX_VSUB0(VT, bias && f0 + 1 < F ? bias[f0 + 1] : (T)0);          \
    const VT b2 = CVX_VSUB0(VT, bias && f0 + 2 < F ? bias[f0 + 2] : (T)0);          \
    const VT b3 = CVX_VSUB0(VT, bias && f0 + 3 < F ? bias[f0 + 3] : (T)0);          \
    VT acc[2][CVX_FB][2] = {{{b0, b0}, {b1, b1}, {b2, b2}, {b3, b3}},               \
                            {{b0, b0}, {b1, b1}, {b2, b2}, {b3, b3}}};              \
    const T *xj = xpad + i * row_step + j0;                                         \
    const T *wk = wt + f0 * K;           /* block f0 / CVX_FB, tap 0 */            \
    for (ptrdiff_t k = 0; k < K; k++, wk += CVX_FB) {                               \
        VT x[2][2];                                                                 \
        for (int r = 0; r < R; r++) {                                               \
            x[r][0] = CVX_VLD(VT, xj + r * row_step + off[k]);                      \
            x[r][1] = CVX_VLD(VT, xj + r * row_step + off[k] + VL);                 \
        }                                                                           \
        for (int a = 0; a < CVX_FB; a++) {                                          \
            const VT wb = CVX_VSUB0(VT, wk[a]);   /* a broadcast (x - 0 is x) */    \
            for (int r = 0; r < R; r++) {                                           \
                CVX_VMAC(acc[r][a][0], wb, x[r][0]);                                \
                CVX_VMAC(acc[r][a][1], wb, x[r][1]);                                \
            }                                                                       \
        }                                                                           \
    }                                                                               \
    const int full_f = f0 + CVX_FB <= F, full_j = j0 + JB <= jend;                  \
    const ptrdiff_t nf = full_f ? CVX_FB : F - f0, nj = full_j ? JB : jend - j0;    \
    for (int r = 0; r < R; r++) {                                                   \
        if (full_f && full_j) {                                                     \
            for (int a = 0; a < CVX_FB; a++) {                                      \
                T *o = out + ((f0 + a) * OH + i + r) * OW + j0;                     \
                CVX_VST(o, acc[r][a][0]);                                           \
                CVX_VST(o + VL, acc[r][a][1]);                                      \
            }                                                                       \
        } else {                                                                    \
            T tmp[CVX_FB][JB];                                                      \
            for (int a = 0; a < CVX_FB; a++) {                                      \
                CVX_VST(tmp[a], acc[r][a][0]);                                      \
                CVX_VST(tmp[a] + VL, acc[r][a][1]);                                 \
            }                                                                       \
            for (ptrdiff_t a = 0; a < nf; a++)                                      \
                memcpy(out + ((f0 + a) * OH + i + r) * OW + j0, tmp[a],             \
                       nj * sizeof(T));                                             \
        }                                                                           \
    }                                                                               \
}                                                                                   \
                                                                                    \
/* One output channel (F = 1: a single filter, or the input gradient of a    */  \
/* layer with one input channel): CVX_FB blocks would waste 3 of their 4     */  \
/* rows of accumulators, so the register block is V vectors of consecutive   */  \
/* columns instead, R rows (CVX_DIRECT_BLOCK1): in x86-64-v4's 64-byte       */  \
/* vectors (block1w) where the row is that wide, else in 32-byte ones.       */  \
CVX_VECTOR_TYPE(T, NAME##_wt, 64);                                                  \
CVX_DIRECT_BLOCK1(NAME##_block1, T, VT, VL)                                         \
CVX_DIRECT_BLOCK1(NAME##_block1w, T, NAME##_wt, 2 * VL)                             \
                                                                                    \
/* A block of columns that would stick out past jb starts at jb - 2*VL       */  \
/* instead, when the range is that wide: it recomputes a few columns the     */  \
/* block before it wrote (the same values) rather than going through a       */  \
/* buffer.                                                                    */  \
static inline ptrdiff_t NAME##_last(ptrdiff_t j0, ptrdiff_t ja, ptrdiff_t jb)       \
{                                                                                   \
    return j0 + 2 * VL > jb && jb - ja >= 2 * VL ? jb - 2 * VL : j0;                \
}                                                                                   \
                                                                                    \
/* Rows i .. i + R, one output channel, R*V = 8 accumulators: blocks of     */  \
/* 8/R 64-byte vectors where ``wide`` (x86-64-v4) and the row is that wide,  */  \
/* else of 8/R 32-byte vectors, else of 4 (one row), else the blocks of 2    */  \
/* below 4; the last of a row moved left to end at jb.                       */  \
static inline CVX_ALWAYS_INLINE void NAME##_row1(                                   \
    const T *xpad, ptrdiff_t row_step, const T *wt, const ptrdiff_t *off,           \
    ptrdiff_t K, const T *bias, T *out, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t i,    \
    ptrdiff_t ja, ptrdiff_t jb, const int R, const int wide)                        \
{                                                                                   \
    const ptrdiff_t n = jb - ja;                                                    \
    if (n < 4 * VL) {                                                               \
        for (ptrdiff_t j0 = ja; j0 < jb; j0 += 2 * VL)                              \
            NAME##_block(xpad, row_step, wt, off, K, 1, bias, out, OH, OW, i,       \
                         NAME##_last(j0, ja, jb), jb, 0, R);                        \
        return;                                                                     \
    }                                                                               \
    const int V = 8 / R, w = wide && n >= V * 2 * VL ? 2 * VL : 0;                  \
    const ptrdiff_t bw = w ? V * w : n >= V * VL ? V * VL : 4 * VL;                 \
    for (ptrdiff_t j0 = ja; j0 < jb; j0 += bw) {                                    \
        const ptrdiff_t js = j0 + bw > jb ? jb - bw : j0;                           \
        if (w)                                                                      \
            NAME##_block1w(xpad, row_step, wt, off, K, bias, out, OW, i, js, R, V); \
        else if (bw == V * VL)                                                      \
            NAME##_block1(xpad, row_step, wt, off, K, bias, out, OW, i, js, R, V);  \
        else                                                                        \
            NAME##_block1(xpad, row_step, wt, off, K, bias, out, OW, i, js, R, 4);  \
    }                                                                               \
}                                                                                   \
                                                                                    \
/* Rows i0..i1, columns ja..jb, R output rows at a time (then one at a time). */  \
static inline CVX_ALWAYS_INLINE void NAME##_body(                                   \
    const T *xpad, ptrdiff_t row_step, const T *wt, const ptrdiff_t *off,           \
    ptrdiff_t K, ptrdiff_t F, const T *bias, T *out, ptrdiff_t OH, ptrdiff_t OW,    \
    ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t ja, ptrdiff_t jb, const int R)            \
{                                                                                   \
    ptrdiff_t i = i0;                                                               \
    if (F == 1) {        /* R == 2: x86-64-v4 (the dispatch's constant), wide */  \
        for (; i + R <= i1; i += R)                                                 \
            NAME##_row1(xpad, row_step, wt, off, K, bias, out, OH, OW, i, ja, jb,   \
                        R, R == 2);                                                 \
        for (; i < i1; i++)                                                         \
            NAME##_row1(xpad, row_step, wt, off, K, bias, out, OH, OW, i, ja, jb,   \
                        1, R == 2);                                                 \
        return;                                                                     \
    }                                                                               \
    for (; i + R <= i1; i += R)                                                     \
        for (ptrdiff_t j0 = ja; j0 < jb; j0 += 2 * VL)                              \
            for (ptrdiff_t f0 = 0; f0 < F; f0 += CVX_FB)                            \
                NAME##_block(xpad, row_step, wt, off, K, F, bias, out, OH, OW,      \
                             i, NAME##_last(j0, ja, jb), jb, f0, R);                \
    for (; i < i1; i++)                                                             \
        for (ptrdiff_t j0 = ja; j0 < jb; j0 += 2 * VL)                              \
            for (ptrdiff_t f0 = 0; f0 < F; f0 += CVX_FB)                            \
                NAME##_block(xpad, row_step, wt, off, K, F, bias, out, OH, OW,      \
                             i, NAME##_last(j0, ja, jb), jb, f0, 1);                \
}                                                                                   \
CVX_DISPATCH_DIRECT(NAME, T)

/* On x86-64: x86-64-v4 (AVX-512, 32 vector registers) blocks two output rows
 * at once, 16 accumulators; x86-64-v3 (AVX2, FMA, 16 registers) and the
 * baseline one row, 8 accumulators. */
#define CVX_DIRECT_ARGS(T)                                                          \
    const T *xpad, ptrdiff_t row_step, const T *wt, const ptrdiff_t *off,           \
    ptrdiff_t K, ptrdiff_t F, const T *bias, T *out, ptrdiff_t OH, ptrdiff_t OW,    \
    ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t ja, ptrdiff_t jb
#define CVX_DIRECT_PASS xpad, row_step, wt, off, K, F, bias, out, OH, OW, i0, i1, ja, jb
#define CVX_DISPATCH_DIRECT(NAME, T)                                                \
    CVX_ISA_DISPATCH_BY(NAME, CVX_DIRECT_ARGS(T), CVX_DIRECT_PASS, NAME##_body, 2, 1)

/* The weight gradient, for one image and one group:
 *
 *     dw[f, k] += sum_{i0 <= i < i1, ja <= j < jb} g[f*gs + i*grs + j] * xpad[i*row_step + j + off[k]]
 *
 * (gs = OH*OW and grs = OW for a whole (F, OH, OW) gradient).  The im2col
 * path calls it too, over an explicit block of the column matrix, where it
 * is a plain block of dot products: i runs over images, j over positions.
 *
 * A block of CVX_FB output channels times 2 taps is accumulated in vector
 * registers over the block, then reduced.  Columns past the last full
 * vector are summed in scalars: reading past jb would multiply the padding
 * of g by image values, and 0 * inf is NaN.
 */
#define CVX_WGRAD_ARGS(T)                                                           \
    const T *xpad, ptrdiff_t row_step, const ptrdiff_t *off, ptrdiff_t K,           \
    const T *g, ptrdiff_t gs, ptrdiff_t grs,             /* IN: g, planes gs apart, */\
    ptrdiff_t F,                                         /*  rows grs apart         */\
    ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t ja, ptrdiff_t jb, /* the block to sum over */\
    T *dw                                                /* IN/OUT: (F, K) */
#define CVX_WGRAD_PASS xpad, row_step, off, K, g, gs, grs, F, i0, i1, ja, jb, dw
#define CVX_DEFINE_WGRAD(NAME, T, VT, VL)                                           \
static inline CVX_ALWAYS_INLINE void NAME##_body(CVX_WGRAD_ARGS(T))                 \
{                                                                                   \
    const ptrdiff_t jv = ja + (jb - ja) / VL * VL;                                  \
    for (ptrdiff_t f0 = 0; f0 < F; f0 += CVX_FB) {                                  \
        const ptrdiff_t nf = F - f0 < CVX_FB ? F - f0 : CVX_FB;                     \
        for (ptrdiff_t k0 = 0; k0 < K; k0 += 2) {                                   \
            const ptrdiff_t nk = K - k0 < 2 ? K - k0 : 2;                           \
            VT acc[CVX_FB][2];                                                      \
            T sacc[CVX_FB][2];                                                      \
            for (int a = 0; a < CVX_FB; a++)                                        \
                for (int b = 0; b < 2; b++) {                                       \
                    acc[a][b] = CVX_VZERO(VT);                                      \
                    sacc[a][b] = 0;                                                 \
                }                                                                   \
            /* rows past F or K repeat the last real one; their sums are dropped */ \
            ptrdiff_t fa[CVX_FB], kb[2];                                            \
            for (int a = 0; a < CVX_FB; a++) fa[a] = f0 + (a < nf ? a : nf - 1);    \
            for (int b = 0; b < 2; b++) kb[b] = off[k0 + (b < nk ? b : nk - 1)];    \
            for (ptrdiff_t i = i0; i < i1; i++) {                                   \
                const T *x0p = xpad + i * row_step + kb[0];                         \
                const T *x1p = xpad + i * row_step + kb[1];                         \
                const T *gp[CVX_FB];                                                \
                for (int a = 0; a < CVX_FB; a++) gp[a] = g + fa[a] * gs + i * grs;  \
                for (ptrdiff_t j = ja; j < jv; j += VL) {                           \
                    VT x0 = CVX_VLD(VT, x0p + j), x1 = CVX_VLD(VT, x1p + j);        \
                    for (int a = 0; a < CVX_FB; a++) {                              \
                        VT gv = CVX_VLD(VT, gp[a] + j);                             \
                        CVX_VMAC(acc[a][0], gv, x0);                                \
                        CVX_VMAC(acc[a][1], gv, x1);                                \
                    }                                                               \
                }                                                                   \
                for (ptrdiff_t j = jv; j < jb; j++)                                 \
                    for (int a = 0; a < CVX_FB; a++) {                              \
                        sacc[a][0] += gp[a][j] * x0p[j];                            \
                        sacc[a][1] += gp[a][j] * x1p[j];                            \
                    }                                                               \
            }                                                                       \
            for (ptrdiff_t a = 0; a < nf; a++)                                      \
                for (ptrdiff_t b = 0; b < nk; b++) {                                \
                    T s = sacc[a][b];                                               \
                    for (int l = 0; l < VL; l++) s += CVX_LANE(acc[a][b], l);       \
                    dw[(f0 + a) * K + k0 + b] += s;                                 \
                }                                                                   \
        }                                                                           \
    }                                                                               \
}                                                                                   \
CVX_DISPATCH_WGRAD(NAME, T)

#if CVX_X86_DISPATCH
#define CVX_DISPATCH_WGRAD(NAME, T)                                                 \
__attribute__((target("arch=x86-64-v3"))) static void NAME##_v3(CVX_WGRAD_ARGS(T))  \
{ NAME##_body(CVX_WGRAD_PASS); }                                                    \
static void NAME##_v1(CVX_WGRAD_ARGS(T)) { NAME##_body(CVX_WGRAD_PASS); }           \
static void NAME(CVX_WGRAD_ARGS(T))                                                 \
{                                                                                   \
    if (cvx_isa >= 3)                                                               \
        NAME##_v3(CVX_WGRAD_PASS);                                                  \
    else                                                                            \
        NAME##_v1(CVX_WGRAD_PASS);                                                  \
}
#else
#define CVX_DISPATCH_WGRAD(NAME, T)                                                 \
static void NAME(CVX_WGRAD_ARGS(T)) { NAME##_body(CVX_WGRAD_PASS); }
#endif

/* The weight gradient vectorised along the output channels, for any stride.
 * For one item (image rows i0..i1, columns ja..jb of one group's output):
 *
 *     dwt[k, f] += sum_{i, j} xpad[i*row_step + j*sw + off[k]] * g[f*gs + i*grs + j]
 *
 * for 0 <= k < K and 0 <= f < F, into dwt (K, FP), FP = F rounded up to a
 * whole vector (its columns past F get sums that are dropped).
 *
 * The item's gradient is first transposed into gt, positions by FP channels
 * (zero past F); the image is then read in place, one value per tap and
 * position, broadcast against vectors of channels.  A register block is
 * MR taps by NV = 2 vectors of channels (1 for the last vector), summed over
 * the positions of a block of rows whose gt fits in L1: no im2col, no
 * packing, and no row tails, since the vectors run along the channels.
 * A tap block past K repeats the last tap and drops its sums.
 *
 * MR = 6 taps by 2 vectors: 12 accumulators, of AVX2's 16 registers.
 * x86-64-v4 runs the same blocks (12 taps there, or 8, took 3-10% longer:
 * the taps' offsets no longer fit the general registers).  A chunk of one
 * vector takes MR1 = 12 taps, so that 12 sums, not 6, hide the FMAs'
 * latency: 0.91-0.96x the time on grouped 3x3 layers of 16 float32 filters
 * a group (x86-64-v4), 8 and 16 took about the same.
 *
 * Where a tap block is whole kernel rows of 3 unit-spaced taps (a 3x3 or
 * 1x3 kernel, undilated) at unit stride, NAME_rows3 reads each image value
 * once for the 3 taps and 4 positions that share it, not once per tap and
 * position: 6 broadcasts, not 12, per kernel row and 4 positions.  Measured
 * against NAME_tile (2 threads, x86-64-v4, the same bits): 0.60-0.84x the
 * time in float32 and 0.78-1.0x in float64 on grouped and dense 3x3 layers
 * of 8 to 16 filters a group; with AVX2's 32-byte vectors 0.77-0.84x on
 * chunks of one vector, but 1.02-1.25x on chunks of two (24 accumulators
 * and broadcasts spill 16 registers), which keep NAME_tile there.
 *
 * Every element is summed over the item's positions in order, rows first
 * then columns, whatever the blocking. */
#define CVX_WT_MR 6       /* taps per register block of two vectors */
#define CVX_WT_MR1 12     /* taps per register block of one vector */
#define CVX_WT_L1 (16 * 1024)   /* bytes of gt per block of rows */
#define CVX_WGRADT_ARGS(T)                                                          \
    const T *xpad, ptrdiff_t row_step, ptrdiff_t sw, const ptrdiff_t *off,          \
    ptrdiff_t K, const T *g, ptrdiff_t gs, ptrdiff_t grs, ptrdiff_t F, ptrdiff_t FP, \
    ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t ja, ptrdiff_t jb,                         \
    T *gt,                                       /* scratch: (i1-i0)*(jb-ja)*FP */  \
    T *dwt                                       /* IN/OUT: (K, FP) */
#define CVX_WGRADT_PASS xpad, row_step, sw, off, K, g, gs, grs, F, FP, i0, i1, ja, jb, gt, dwt
/* CVX_TR4(T, IT, S, SS, D, DS): D[j*DS + i] = S[i*SS + j] for i, j < 4,   */
/* 4 vectors of 4 (GCC's vectors; IT the integer of T's size) transposed  */
/* in registers.                                                          */
#define CVX_TR4(T, IT, S, SS, D, DS)                                                \
    do {                                                                            \
        typedef T cvx_t4_ __attribute__((vector_size(4 * sizeof(T))));             \
        typedef IT cvx_i4_ __attribute__((vector_size(4 * sizeof(T))));            \
        cvx_t4_ r_[4], c_[4];                                                       \
        for (int q_ = 0; q_ < 4; q_++) memcpy(&r_[q_], (S) + q_ * (SS), sizeof r_[q_]); \
        const cvx_t4_ t0_ = __builtin_shuffle(r_[0], r_[1], (cvx_i4_){0, 4, 1, 5}); \
        const cvx_t4_ t1_ = __builtin_shuffle(r_[0], r_[1], (cvx_i4_){2, 6, 3, 7}); \
        const cvx_t4_ t2_ = __builtin_shuffle(r_[2], r_[3], (cvx_i4_){0, 4, 1, 5}); \
        const cvx_t4_ t3_ = __builtin_shuffle(r_[2], r_[3], (cvx_i4_){2, 6, 3, 7}); \
        c_[0] = __builtin_shuffle(t0_, t2_, (cvx_i4_){0, 1, 4, 5});                 \
        c_[1] = __builtin_shuffle(t0_, t2_, (cvx_i4_){2, 3, 6, 7});                 \
        c_[2] = __builtin_shuffle(t1_, t3_, (cvx_i4_){0, 1, 4, 5});                 \
        c_[3] = __builtin_shuffle(t1_, t3_, (cvx_i4_){2, 3, 6, 7});                 \
        for (int q_ = 0; q_ < 4; q_++) memcpy((D) + q_ * (DS), &c_[q_], sizeof c_[q_]); \
    } while (0)

/* CVX_TR2: the same for a 2 x 2 block (within a 16-byte vector).         */
#define CVX_TR2(T, IT, S, SS, D, DS)                                                \
    do {                                                                            \
        typedef T cvx_t2_ __attribute__((vector_size(2 * sizeof(T))));             \
        typedef IT cvx_i2_ __attribute__((vector_size(2 * sizeof(T))));            \
        cvx_t2_ r_[2];                                                              \
        for (int q_ = 0; q_ < 2; q_++) memcpy(&r_[q_], (S) + q_ * (SS), sizeof r_[q_]); \
        const cvx_t2_ c0_ = __builtin_shuffle(r_[0], r_[1], (cvx_i2_){0, 2});       \
        const cvx_t2_ c1_ = __builtin_shuffle(r_[0], r_[1], (cvx_i2_){1, 3});       \
        memcpy((D), &c0_, sizeof c0_);                                              \
        memcpy((D) + (DS), &c1_, sizeof c1_);                                       \
    } while (0)

/* NAME_pack: one output row of the item's gradient into gt's layout:     */
/* row[j*wc + f] = s[f*gs + j], channels f < nf of the chunk, zero from nf */
/* to wc.  Value by value (_PACK), whose stores lie wc values apart: perf */
/* put 30% of the 7x7 stride-2 stem's float32 weight gradient (x86-64-v4) */
/* in that loop.  Or (_PACKB, GCC's vectors on x86-64) by B x B blocks    */
/* transposed in registers, each position's B channels one store: 4 x 4   */
/* floats, 2 x 2 doubles (4 x 4 doubles, shuffled across the halves of    */
/* 32-byte vectors, took 1.09-1.13x the value-by-value time on layers of  */
/* 7 and 20 filters).  A copy either way: the same bits.                  */
#define CVX_WT_COPY(ROW, S, GS, COLS, WC, F0, NF)                                   \
    for (ptrdiff_t ch = (F0); ch < (WC); ch++)                                      \
        for (ptrdiff_t pos = 0; pos < (COLS); pos++)                                \
            (ROW)[pos * (WC) + ch] = ch < (NF) ? (S)[ch * (GS) + pos] : 0
#define CVX_DEFINE_WGRADT_PACK(NAME, T, ATTR)                                       \
static inline ATTR CVX_ALWAYS_INLINE void NAME##_pack(                              \
    T *row, const T *s, ptrdiff_t gs, ptrdiff_t cols, ptrdiff_t wc, ptrdiff_t nf)   \
{                                                                                   \
    CVX_WT_COPY(row, s, gs, cols, wc, 0, nf);                                       \
}
#define CVX_DEFINE_WGRADT_PACKB(NAME, T, IT, ATTR, B, TR)                           \
static inline ATTR CVX_ALWAYS_INLINE void NAME##_pack(                              \
    T *row, const T *s, ptrdiff_t gs, ptrdiff_t cols, ptrdiff_t wc, ptrdiff_t nf)   \
{                                                                                   \
    ptrdiff_t f = 0;                                                                \
    for (; f + (B) <= nf; f += (B)) {                                               \
        ptrdiff_t j = 0;                                                            \
        for (; j + (B) <= cols; j += (B))                                           \
            TR(T, IT, s + f * gs + j, gs, row + j * wc + f, wc);                    \
        for (; j < cols; j++)                                                       \
            for (int q = 0; q < (B); q++) row[j * wc + f + q] = s[(f + q) * gs + j]; \
    }                                                                               \
    CVX_WT_COPY(row, s, gs, cols, wc, f, nf);                                       \
}

#define CVX_DEFINE_WGRADT(NAME, T, VT, VL, ATTR)                                    \
static inline ATTR CVX_ALWAYS_INLINE void NAME##_tile(                              \
    const T *xpad, ptrdiff_t row_step, ptrdiff_t sw, const ptrdiff_t *off,          \
    ptrdiff_t nk, const T *gt, ptrdiff_t FP, ptrdiff_t i0, ptrdiff_t i1,            \
    ptrdiff_t ja, ptrdiff_t jb, T *dwt, const int NV, const int MR)                 \
{                                                                                   \
    VT acc[CVX_WT_MR1][2];                                                          \
    ptrdiff_t o[CVX_WT_MR1];                                                        \
    for (int t = 0; t < MR; t++) {                                                  \
        o[t] = off[t < nk ? t : nk - 1];                                            \
        for (int v = 0; v < NV; v++)                                                \
            acc[t][v] = t < nk ? CVX_VLD(VT, dwt + t * FP + v * VL) : CVX_VZERO(VT); \
    }                                                                               \
    const T *gp = gt;                                                               \
    for (ptrdiff_t i = i0; i < i1; i++) {                                           \
        const T *xr = xpad + i * row_step + ja * sw;                                \
        for (ptrdiff_t j = ja; j < jb; j++, gp += NV * VL, xr += sw) {              \
            VT gv[2];                                                               \
            for (int v = 0; v < NV; v++) gv[v] = CVX_VLD(VT, gp + v * VL);          \
            for (int t = 0; t < MR; t++) {                                          \
                const VT xb = CVX_VSUB0(VT, xr[o[t]]);   /* a broadcast */          \
                for (int v = 0; v < NV; v++) CVX_VMAC(acc[t][v], xb, gv[v]);        \
            }                                                                       \
        }                                                                           \
    }                                                                               \
    for (int t = 0; t < MR; t++)                                                    \
        if (t < nk)                                                                 \
            for (int v = 0; v < NV; v++) CVX_VST(dwt + t * FP + v * VL, acc[t][v]); \
}                                                                                   \
                                                                                    \
/* NAME_rows3: NV vectors of channels by MR taps that are MR / 3 kernel    */    \
/* rows of 3 unit-spaced taps, at unit stride: positions in blocks of U = 4, */   \
/* whose 6 image values per kernel row are broadcast once and shared by     */    \
/* the row's taps (tap q at position u reads value u + q).  Each sum takes  */    \
/* the same products in the same order as NAME_tile's: the same bits.       */    \
static inline ATTR CVX_ALWAYS_INLINE void NAME##_rows3(                             \
    const T *xpad, ptrdiff_t row_step, const ptrdiff_t *off, const T *gt,           \
    ptrdiff_t FP, ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t ja, ptrdiff_t jb, T *dwt,   \
    const int NV, const int MR)                                                     \
{                                                                                   \
    enum { KW = 3, U = 4 };                                                         \
    const int R = MR / KW;                                                          \
    VT acc[CVX_WT_MR1 / 3][KW][2];                                                  \
    ptrdiff_t o[CVX_WT_MR1 / 3];                                                    \
    for (int r = 0; r < R; r++) {                                                   \
        o[r] = off[r * KW];                                                         \
        for (int q = 0; q < KW; q++)                                                \
            for (int v = 0; v < NV; v++)                                            \
                acc[r][q][v] = CVX_VLD(VT, dwt + (r * KW + q) * FP + v * VL);       \
    }                                                                               \
    const T *gp = gt;                                                               \
    for (ptrdiff_t i = i0; i < i1; i++) {                                           \
        const T *xr = xpad + i * row_step + ja;                                     \
        ptrdiff_t j = ja;                                                           \
        for (; j + U <= jb; j += U, gp += U * NV * VL, xr += U) {                   \
            VT gv[U][2];                                                            \
            for (int u = 0; u < U; u++)                                             \
                for (int v = 0; v < NV; v++) gv[u][v] = CVX_VLD(VT, gp + (u * NV + v) * VL); \
            for (int r = 0; r < R; r++) {                                           \
                const T *xo = xr + o[r];                                            \
                for (int u = 0; u < U; u++)                                         \
                    for (int q = 0; q < KW; q++) {                                  \
                        const VT xb = CVX_VSUB0(VT, xo[u + q]);                     \
                        for (int v = 0; v < NV; v++) CVX_VMAC(acc[r][q][v], xb, gv[u][v]); \
                    }                                                               \
            }                                                                       \
        }                                                                           \
        for (; j < jb; j++, gp += NV * VL, xr++) {                                  \
            VT gv[2];                                                               \
            for (int v = 0; v < NV; v++) gv[v] = CVX_VLD(VT, gp + v * VL);          \
            for (int r = 0; r < R; r++)                                             \
                for (int q = 0; q < KW; q++) {                                      \
                    const VT xb = CVX_VSUB0(VT, xr[o[r] + q]);                      \
                    for (int v = 0; v < NV; v++) CVX_VMAC(acc[r][q][v], xb, gv[v]); \
                }                                                                   \
        }                                                                           \
    }                                                                               \
    for (int r = 0; r < R; r++)                                                     \
        for (int q = 0; q < KW; q++)                                                \
            for (int v = 0; v < NV; v++)                                            \
                CVX_VST(dwt + (r * KW + q) * FP + v * VL, acc[r][q][v]);            \
}                                                                                   \
                                                                                    \
/* 1 where taps off[0..mr) are kernel rows of 3 unit-spaced taps.          */    \
static inline int NAME##_is_rows3(const ptrdiff_t *off, ptrdiff_t mr)               \
{                                                                                   \
    for (ptrdiff_t t = 0; t < mr; t++)                                              \
        if (off[t] != off[t - t % 3] + t % 3) return 0;                             \
    return 1;                                                                       \
}                                                                                   \
                                                                                    \
static inline ATTR CVX_ALWAYS_INLINE void NAME##_body(CVX_WGRADT_ARGS(T))           \
{                                                                                   \
    const ptrdiff_t cols = jb - ja, P = (i1 - i0) * cols;                           \
    /* gt: chunks of 2 vectors of channels (the last may be 1), each       */       \
    /* positions by its width, so that a chunk's positions lie together;  */       \
    /* written a row at a time, which stays in L1                          */       \
    for (ptrdiff_t f0 = 0; f0 < FP; f0 += 2 * VL) {                                \
        const ptrdiff_t wc = FP - f0 < 2 * VL ? FP - f0 : 2 * VL;                   \
        const ptrdiff_t nf = F - f0 < wc ? F - f0 : wc;                             \
        for (ptrdiff_t i = i0; i < i1; i++)                                         \
            NAME##_pack(gt + f0 * P + (i - i0) * cols * wc, g + f0 * gs + i * grs + ja, \
                        gs, cols, wc, nf);                                          \
    }                                                                               \
    ptrdiff_t rows = CVX_WT_L1 / (ptrdiff_t)(cols * 2 * VL * sizeof(T));            \
    if (rows < 1) rows = 1;                                                         \
    for (ptrdiff_t ib = i0; ib < i1; ib += rows) {                                  \
        const ptrdiff_t ie = ib + rows < i1 ? ib + rows : i1;                       \
        for (ptrdiff_t f0 = 0; f0 < FP; f0 += 2 * VL) {                             \
            const int two = FP - f0 >= 2 * VL;                                      \
            const T *gb = gt + f0 * P + (ib - i0) * cols * (two ? 2 * VL : VL);     \
            const ptrdiff_t mr = two ? CVX_WT_MR : CVX_WT_MR1;                      \
            for (ptrdiff_t k0 = 0; k0 < K; k0 += mr) {                              \
                const ptrdiff_t nk = K - k0 < mr ? K - k0 : mr;                     \
                const int rows3 = sw == 1 && nk == mr && NAME##_is_rows3(off + k0, mr); \
                if (two && rows3 && VL * sizeof(T) == 64)                           \
                    NAME##_rows3(xpad, row_step, off + k0, gb, FP, ib, ie, ja, jb,  \
                                 dwt + k0 * FP + f0, 2, CVX_WT_MR);                 \
                else if (two)                                                       \
                    NAME##_tile(xpad, row_step, sw, off + k0, nk, gb, FP, ib, ie,   \
                                ja, jb, dwt + k0 * FP + f0, 2, CVX_WT_MR);          \
                else if (rows3)                                                     \
                    NAME##_rows3(xpad, row_step, off + k0, gb, FP, ib, ie, ja, jb,  \
                                 dwt + k0 * FP + f0, 1, CVX_WT_MR1);                \
                else                                                                \
                    NAME##_tile(xpad, row_step, sw, off + k0, nk, gb, FP, ib, ie,   \
                                ja, jb, dwt + k0 * FP + f0, 1, CVX_WT_MR1);         \
            }                                                                       \
        }                                                                           \
    }                                                                               \
}


/* The forward pass vectorised along the output channels, for any stride.
 * For one item (output rows i0..i1, columns ja..jb of one image and group):
 *
 *     out[f, i, j] = bias[f] + sum_k wt[k, f] * xpad[i*row_step + j*sw + off[k]]
 *
 * wt is the group's weights packed by chunks of 2 vectors of channels (the
 * last may be 1), each (K, width), zero past F: chunk c starts at
 * wt + c*2*VL*K.  A register block (a tile) is MR consecutive output
 * positions by the chunk's vectors: each tap broadcasts one image value per
 * position against the tap's weight vectors, so the image is read in place
 * (no im2col) at any stride.  An item of whole rows is one run of tiles
 * across its rows (rows 112 wide at MR = 12 took 10 tiles a row before, for
 * 9.3 tiles' outputs); else tiles keep to their row, and positions past jb
 * repeat the last and are dropped (at unit stride a row's last tile moves
 * left instead).  The taps run in blocks whose weights, at most CVX_FT_KB
 * bytes, stay in L1 while NTC tiles (along the run) read them; a tile's
 * sums wait in a buffer between blocks of taps, and go from it, position by
 * position, into the channels' planes.  Each output sums bias, then k = 0,
 * 1, ..., K - 1: the same bits for any blocking and any thread count. */
#define CVX_FT_KB (16 * 1024)    /* bytes of weights per block of taps */
#define CVX_FWDT_ARGS(T)                                                            \
    const T *xpad, ptrdiff_t row_step, ptrdiff_t sw, const ptrdiff_t *off,          \
    ptrdiff_t K, const T *wt, ptrdiff_t F, ptrdiff_t FP, const T *bias,             \
    T *out, ptrdiff_t plane, ptrdiff_t OW,      /* out: (F, ...) planes apart */    \
    ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t ja, ptrdiff_t jb
#define CVX_FWDT_PASS xpad, row_step, sw, off, K, wt, F, FP, bias, out, plane, OW, i0, i1, ja, jb
/* NAME_put: a whole tile's sums (MR positions, p[m*2*VL + f]) into nf    */
/* channels' planes, o[f*plane + m]: a loop of constant length.  _PUT4    */
/* (GCC's vectors; MR a multiple of 4): 4 x 4 blocks transposed in        */
/* registers, each row of 4 positions one store.  perf put 17% of the    */
/* 7x7 stride-2 stem's float32 forward pass (x86-64-v4) in the value-by- */
/* value loop with its 12 compares; this took 0.965x the time there,     */
/* 0.96-1.01x on 6 other layers (geomean 0.991 over 14 passes).          */
/* CVX_FWDT_COPY: channels F0..NF-1 of positions 0..NP-1, value by value  */
/* (for a whole tile's last channels and a short tile's); its counters,   */
/* ch and pos, must not name the caller's (.ci/run's -Wshadow checks).    */
#define CVX_FWDT_COPY(O, PLANE, P, VL, F0, NF, NP)                                  \
    for (ptrdiff_t ch = (F0); ch < (NF); ch++)                                      \
        for (ptrdiff_t pos = 0; pos < (NP); pos++)                                  \
            (O)[ch * (PLANE) + pos] = (P)[pos * 2 * (VL) + ch]
#define CVX_DEFINE_FWDT_PUT(NAME, T, VL, ATTR, MRC)                                 \
static inline ATTR CVX_ALWAYS_INLINE void NAME##_put(T *o, ptrdiff_t plane,         \
                                                     const T *p, ptrdiff_t nf)      \
{                                                                                   \
    CVX_FWDT_COPY(o, plane, p, VL, 0, nf, MRC);                                     \
}
#define CVX_DEFINE_FWDT_PUT4(NAME, T, IT, VL, ATTR, MRC)                            \
static inline ATTR CVX_ALWAYS_INLINE void NAME##_put(T *o, ptrdiff_t plane,         \
                                                     const T *p, ptrdiff_t nf)      \
{                                                                                   \
    _Static_assert(MRC % 4 == 0, "whole blocks of 4 positions");                    \
    ptrdiff_t f = 0;                                                                \
    for (; f + 4 <= nf; f += 4)      /* positions m..m+3 by channels f..f+3 */      \
        for (int m = 0; m < MRC; m += 4)                                            \
            CVX_TR4(T, IT, p + m * 2 * VL + f, 2 * VL, o + f * plane + m, plane);   \
    CVX_FWDT_COPY(o, plane, p, VL, f, nf, MRC);                                     \
}

/* NAME_tile: MR positions (a constant once inlined) by NV vectors, taps
 * k0..k1, from the partial sums in part (MR x 2*VL, by position) or, at
 * k0 = 0, from the bias vectors bv; back into part.  Each output is the same
 * sum in the same order whatever the blocks of taps: bias, then k = 0, 1,
 * ...  Where the positions read (AT, a constant): along one row from xr,
 * sw apart (CVX_FT_ROW; past np they repeat the last), or at unit stride
 * (CVX_FT_UNIT), whose reads are constant displacements from xr, which
 * leaves the general registers free at MR = 12; or position m from xs[m]
 * (CVX_FT_RUN: a tile across rows). */
enum { CVX_FT_ROW, CVX_FT_UNIT, CVX_FT_RUN };
#define CVX_DEFINE_FWDT(NAME, T, VT, VL, ATTR, MRC, NTC)                            \
static inline ATTR CVX_ALWAYS_INLINE void NAME##_tile(                              \
    const T *xr, ptrdiff_t sw, ptrdiff_t np, const T *const *xs,                    \
    const ptrdiff_t *off, ptrdiff_t k0, ptrdiff_t k1, const T *w, const VT *bv,     \
    T *part, const int NV, const int AT)                                            \
{                                                                                   \
    enum { MR = MRC };                                                              \
    VT acc[MRC][2];                                                                 \
    const T *xp[MRC];                                                               \
    for (int m = 0; m < MR; m++) {                                                  \
        xp[m] = AT == CVX_FT_RUN ? xs[m] : xr + (m < np ? m : np - 1) * sw;         \
        for (int v = 0; v < NV; v++)                                                \
            acc[m][v] = k0 ? CVX_VLD(VT, part + m * 2 * VL + v * VL) : bv[v];       \
    }                                                                               \
    w += k0 * NV * VL;                                                              \
    for (ptrdiff_t k = k0; k < k1; k++, w += NV * VL) {                             \
        VT wv[2];                                                                   \
        for (int v = 0; v < NV; v++) wv[v] = CVX_VLD(VT, w + v * VL);               \
        const ptrdiff_t ok = off[k];                                                \
        for (int m = 0; m < MR; m++) {                                              \
            const VT xb = CVX_VSUB0(VT, AT == CVX_FT_UNIT ? xr[ok + m] : xp[m][ok]); \
            for (int v = 0; v < NV; v++) CVX_VMAC(acc[m][v], xb, wv[v]);            \
        }                                                                           \
    }                                                                               \
    for (int m = 0; m < MR; m++)                                                    \
        for (int v = 0; v < NV; v++)                                                \
            CVX_VST(part + m * 2 * VL + v * VL, acc[m][v]);                         \
}                                                                                   \
                                                                                    \
/* NAME_tiles: the NV-vector tiles of one block of taps.                     */     \
static inline ATTR CVX_ALWAYS_INLINE void NAME##_tiles(                             \
    int nt, const T *const *xr, ptrdiff_t sw, const ptrdiff_t *np,                  \
    const T *(*xs)[MRC], const int *at, const ptrdiff_t *off, ptrdiff_t k0,         \
    ptrdiff_t k1, const T *w, const VT *bv, T (*part)[MRC * 2 * VL], const int NV)  \
{                                                                                   \
    for (int t = 0; t < nt; t++) {                                                  \
        if (at[t] == CVX_FT_UNIT)                                                   \
            NAME##_tile(xr[t], 1, MRC, xs[t], off, k0, k1, w, bv, part[t], NV,      \
                        CVX_FT_UNIT);                                               \
        else if (at[t] == CVX_FT_ROW)                                               \
            NAME##_tile(xr[t], sw, np[t], xs[t], off, k0, k1, w, bv, part[t], NV,   \
                        CVX_FT_ROW);                                                \
        else                                                                        \
            NAME##_tile(xr[t], sw, np[t], xs[t], off, k0, k1, w, bv, part[t], NV,   \
                        CVX_FT_RUN);                                                \
    }                                                                               \
}                                                                                   \
                                                                                    \
/* NTC tiles at a time (a constant), each block of taps in turn.  Where the   */    \
/* item is whole rows (ja = 0, jb = OW) its outputs are one run of positions  */    \
/* in each plane, and a tile takes the next MR of them, on across rows: only  */    \
/* the item's last tile is short.  Else a tile keeps to its row.             */     \
static inline ATTR CVX_ALWAYS_INLINE void NAME##_body(CVX_FWDT_ARGS(T))             \
{                                                                                   \
    enum { MR = MRC };                                                              \
    T part[NTC][MRC * 2 * VL];                                                      \
    const T *xs[NTC][MRC];                                                          \
    const T *xr[NTC] = {0};                                                         \
    ptrdiff_t to[NTC] = {0}, np[NTC] = {0};                                         \
    int at[NTC] = {0};                                                              \
    const int flat = ja == 0 && jb == OW;                                           \
    for (ptrdiff_t f0 = 0; f0 < FP; f0 += 2 * VL) {                                 \
        const int two = FP - f0 >= 2 * VL;                                          \
        const ptrdiff_t nf = F - f0 < (two ? 2 : 1) * VL ? F - f0 : (two ? 2 : 1) * VL; \
        const ptrdiff_t kb = CVX_FT_KB / (ptrdiff_t)((two ? 2 : 1) * VL * sizeof(T)); \
        const T *w = wt + f0 * K;                                                   \
        VT bv[2] = {CVX_VZERO(VT), CVX_VZERO(VT)};    /* the chunk's bias, 0 past its filters */ \
        if (bias)                                                                   \
            for (int l = 0; l < 2 * VL; l++)                                        \
                if (l < nf) CVX_LANE(bv[l / VL], l % VL) = bias[f0 + l];            \
        for (ptrdiff_t i = i0, j = ja; i < i1;) {                                   \
            /* up to NTC tiles; a short tile repeats its last position;    */       \
            /* at unit stride a row's short last tile moves left instead,  */       \
            /* when the row is that long (it recomputes the same values)   */       \
            int nt = 0;                                                             \
            for (; nt < NTC && i < i1; nt++) {                                      \
                ptrdiff_t tj = j, n = jb - j < MR ? jb - j : MR;                    \
                if (flat && n < MR) {      /* on into the next rows */              \
                    n = (i1 - i) * OW - j < MR ? (i1 - i) * OW - j : MR;            \
                } else if (sw == 1 && n < MR && jb - ja >= MR) {                    \
                    tj = jb - MR;                                                   \
                    n = MR;                                                         \
                }                                                                   \
                np[nt] = n;                                                         \
                to[nt] = i * OW + tj;                                               \
                xr[nt] = xpad + i * row_step + tj * sw;                             \
                if (tj + n <= jb) {                                                 \
                    at[nt] = sw == 1 && n == MR ? CVX_FT_UNIT : CVX_FT_ROW;         \
                } else {                                                            \
                    at[nt] = CVX_FT_RUN;                                            \
                    for (ptrdiff_t m = 0, mi = i, mj = tj; m < MR; m++) {           \
                        xs[nt][m] = xpad + mi * row_step + mj * sw;                 \
                        if (m + 1 < n && ++mj == OW) {                              \
                            mj = 0;                                                 \
                            mi++;                                                   \
                        }                                                           \
                    }                                                               \
                }                                                                   \
                for (j = tj + n; j >= jb && i < i1; j -= jb - ja)                   \
                    i++;                                                            \
            }                                                                       \
            for (ptrdiff_t k0 = 0; k0 < K; k0 += kb) {                              \
                const ptrdiff_t k1 = K - k0 < kb ? K : k0 + kb;                     \
                if (two)                                                            \
                    NAME##_tiles(nt, xr, sw, np, xs, at, off, k0, k1, w, bv, part, 2); \
                else                                                                \
                    NAME##_tiles(nt, xr, sw, np, xs, at, off, k0, k1, w, bv, part, 1); \
            }                                                                       \
            for (int t = 0; t < nt; t++) {                                          \
                T *o = out + f0 * plane + to[t];                                    \
                if (np[t] == MR)                                                    \
                    NAME##_put(o, plane, part[t], nf);                              \
                else                                                                \
                    CVX_FWDT_COPY(o, plane, part[t], VL, 0, nf, np[t]);             \
            }                                                                       \
        }                                                                           \
    }                                                                               \
}

CVX_DEFINE_DIRECT(cvx_direct_f32, float, cvx_vf32, 8)
CVX_DEFINE_DIRECT(cvx_direct_f64, double, cvx_vf64, 4)

CVX_DEFINE_WGRAD(cvx_wgrad_f32, float, cvx_vf32, 8)
CVX_DEFINE_WGRAD(cvx_wgrad_f64, double, cvx_vf64, 4)

/* The channels kernels (forward and weight gradient): vectors of 32 bytes,
 * or, at x86-64-v4 where the caller asks for them (wide: where
 * cvx_channels_wide()), of 64 bytes, so chunks of 2 vectors are 32 floats
 * or 16 doubles, and the forward kernel's tiles are 12 positions (24
 * accumulators of its 32 registers), four of them per block of taps.  The
 * caller pads the filters to whole vectors and packs the forward kernel's
 * weights in chunks of two, of the width it asks for. */
#if CVX_X86_DISPATCH
CVX_DEFINE_WGRADT_PACKB(cvx_wgradt_f32, float, int32_t, , 4, CVX_TR4)
CVX_DEFINE_WGRADT_PACKB(cvx_wgradt_f64, double, int64_t, , 2, CVX_TR2)
#else
CVX_DEFINE_WGRADT_PACK(cvx_wgradt_f32, float, )
CVX_DEFINE_WGRADT_PACK(cvx_wgradt_f64, double, )
#endif
CVX_DEFINE_WGRADT(cvx_wgradt_f32, float, cvx_vf32, 8, )
CVX_DEFINE_WGRADT(cvx_wgradt_f64, double, cvx_vf64, 4, )
CVX_DEFINE_FWDT_PUT(cvx_fwdt_f32, float, 8, , 6)
CVX_DEFINE_FWDT_PUT(cvx_fwdt_f64, double, 4, , 6)
CVX_DEFINE_FWDT(cvx_fwdt_f32, float, cvx_vf32, 8, , 6, 1)
CVX_DEFINE_FWDT(cvx_fwdt_f64, double, cvx_vf64, 4, , 6, 1)
#if CVX_X86_DISPATCH
typedef float cvx_wf32 __attribute__((vector_size(64)));
typedef double cvx_wf64 __attribute__((vector_size(64)));
CVX_DEFINE_WGRADT_PACKB(cvx_wgradt4_f32, float, int32_t, CVX_V4, 4, CVX_TR4)
CVX_DEFINE_WGRADT_PACKB(cvx_wgradt4_f64, double, int64_t, CVX_V4, 2, CVX_TR2)
CVX_DEFINE_WGRADT(cvx_wgradt4_f32, float, cvx_wf32, 16, CVX_V4)
CVX_DEFINE_WGRADT(cvx_wgradt4_f64, double, cvx_wf64, 8, CVX_V4)
CVX_DEFINE_FWDT_PUT4(cvx_fwdt4_f32, float, int32_t, 16, CVX_V4, 12)
CVX_DEFINE_FWDT_PUT4(cvx_fwdt4_f64, double, int64_t, 8, CVX_V4, 12)
CVX_DEFINE_FWDT(cvx_fwdt4_f32, float, cvx_wf32, 16, CVX_V4, 12, 4)
CVX_DEFINE_FWDT(cvx_fwdt4_f64, double, cvx_wf64, 8, CVX_V4, 12, 4)
/* NAME(ARGS, wide): WIDE's body (64-byte vectors) at x86-64-v4 when the
 * caller asks for it (and packed for it), else NAME's own (32-byte). */
#define CVX_DISPATCH_WIDE(NAME, WIDE, ARGS, PASS)                                   \
CVX_V4 static void NAME##_v4(ARGS) { WIDE##_body(PASS); }                           \
CVX_V3 static void NAME##_v3(ARGS) { NAME##_body(PASS); }                           \
static void NAME##_v1(ARGS) { NAME##_body(PASS); }                                  \
static void NAME(ARGS, int wide)                                                    \
{                                                                                   \
    if (cvx_isa >= 4 && wide)                                                       \
        NAME##_v4(PASS);                                                            \
    else if (cvx_isa >= 3)                                                          \
        NAME##_v3(PASS);                                                            \
    else                                                                            \
        NAME##_v1(PASS);                                                            \
}
static int cvx_channels_wide(void) { return cvx_isa >= 4; }
#else
#define CVX_DISPATCH_WIDE(NAME, WIDE, ARGS, PASS)                                   \
static void NAME(ARGS, int wide) { (void)wide; NAME##_body(PASS); }
static int cvx_channels_wide(void) { return 0; }
#endif
CVX_DISPATCH_WIDE(cvx_wgradt_f32, cvx_wgradt4_f32, CVX_WGRADT_ARGS(float), CVX_WGRADT_PASS)
CVX_DISPATCH_WIDE(cvx_wgradt_f64, cvx_wgradt4_f64, CVX_WGRADT_ARGS(double), CVX_WGRADT_PASS)
CVX_DISPATCH_WIDE(cvx_fwdt_f32, cvx_fwdt4_f32, CVX_FWDT_ARGS(float), CVX_FWDT_PASS)
CVX_DISPATCH_WIDE(cvx_fwdt_f64, cvx_fwdt4_f64, CVX_FWDT_ARGS(double), CVX_FWDT_PASS)

/* 1 where the engine takes the direct kernels: everywhere but an x86-64 CPU
 * without AVX2 and FMA under GCC's run-time dispatch (cvx_isa < 3), where the
 * im2col path is faster.  Without that dispatch (clang, a portable build,
 * other targets) there is no CPU to tell apart: the kernels run at the
 * compiler's baseline, vector extensions or plain C loops, and the engine
 * makes the same choices as on an x86-64-v3 CPU. */
static int cvx_direct_fast(void)
{
#if CVX_X86_DISPATCH
    return cvx_isa >= 3;
#else
    return 1;
#endif
}

#endif
