/* convx: the FFT algorithm's products of spectra (the channel mixing).
 *
 * Spectra are complex values stored as interleaved (real, imaginary) pairs.
 *
 *   cvx_mix:       y = sum over c < C of x[c] * w[c]            (B bins)
 *   cvx_mix_conj:  acc += sum over n < N, t < T of conj(g[n, t]) * x[n, t]
 *
 * where x[c] is at x + c*xcs, w[c] at w + c*wcs, g[n, t] at g + n*gns + t*gts
 * and x[n, t] at x + n*xns + t*xts (in values, two per bin).  The bins are
 * taken in blocks of CVX_MIX_BLOCK, whose sums stay in a local array (in L1)
 * while the channels, images and tiles are added in order: each bin is
 * summed in the same order whatever the block or the thread.  No checking
 * is done here; _core.pyx passes the shapes.  On x86-64 the bodies are
 * compiled for x86-64-v4, -v3 and the baseline and picked at run time by
 * cvx_isa (CVX_ISA_DISPATCH, _runtime.h).
 */
#ifndef CONVX_FFT_H
#define CONVX_FFT_H

#include <stddef.h>

#include "_runtime.h"

#define CVX_MIX_BLOCK 128

#define CVX_MIX_ARGS(T) \
    const T *x, ptrdiff_t xcs, const T *w, ptrdiff_t wcs, ptrdiff_t C, T *y, ptrdiff_t B
#define CVX_MIX_PASS x, xcs, w, wcs, C, y, B
#define CVX_MIXC_ARGS(T)                                                            \
    const T *g, ptrdiff_t gns, ptrdiff_t gts, const T *x, ptrdiff_t xns, ptrdiff_t xts, \
    ptrdiff_t N, ptrdiff_t NT, T *acc, ptrdiff_t B
#define CVX_MIXC_PASS g, gns, gts, x, xns, xts, N, NT, acc, B

#define CVX_DEFINE_MIX(NAME, T)                                                     \
static inline CVX_ALWAYS_INLINE void NAME##_body(CVX_MIX_ARGS(T))                   \
{                                                                                   \
    T a[2 * CVX_MIX_BLOCK];                                                         \
    for (ptrdiff_t b0 = 0; b0 < B; b0 += CVX_MIX_BLOCK) {                           \
        const ptrdiff_t n = 2 * (B - b0 < CVX_MIX_BLOCK ? B - b0 : CVX_MIX_BLOCK);  \
        for (ptrdiff_t c = 0; c < C; c++) {                                         \
            const T *restrict xs = x + c * xcs + 2 * b0;                            \
            const T *restrict ws = w + c * wcs + 2 * b0;                            \
            if (c == 0) {                                                           \
                for (ptrdiff_t i = 0; i < n; i += 2) {                              \
                    a[i] = xs[i] * ws[i] - xs[i + 1] * ws[i + 1];                   \
                    a[i + 1] = xs[i] * ws[i + 1] + xs[i + 1] * ws[i];               \
                }                                                                   \
            } else {                                                                \
                for (ptrdiff_t i = 0; i < n; i += 2) {                              \
                    a[i] += xs[i] * ws[i] - xs[i + 1] * ws[i + 1];                  \
                    a[i + 1] += xs[i] * ws[i + 1] + xs[i + 1] * ws[i];              \
                }                                                                   \
            }                                                                       \
        }                                                                           \
        T *restrict ys = y + 2 * b0;                                                \
        for (ptrdiff_t i = 0; i < n; i++)                                           \
            ys[i] = a[i];                                                           \
    }                                                                               \
}                                                                                   \
static inline CVX_ALWAYS_INLINE void NAME##_conj_body(CVX_MIXC_ARGS(T))             \
{                                                                                   \
    T a[2 * CVX_MIX_BLOCK];                                                         \
    for (ptrdiff_t b0 = 0; b0 < B; b0 += CVX_MIX_BLOCK) {                           \
        const ptrdiff_t n = 2 * (B - b0 < CVX_MIX_BLOCK ? B - b0 : CVX_MIX_BLOCK);  \
        T *restrict as = acc + 2 * b0;                                              \
        for (ptrdiff_t i = 0; i < n; i++)                                           \
            a[i] = as[i];                                                           \
        for (ptrdiff_t m = 0; m < N; m++)                                           \
            for (ptrdiff_t t = 0; t < NT; t++) {                                    \
                const T *restrict gs = g + m * gns + t * gts + 2 * b0;              \
                const T *restrict xs = x + m * xns + t * xts + 2 * b0;              \
                for (ptrdiff_t i = 0; i < n; i += 2) {                              \
                    a[i] += gs[i] * xs[i] + gs[i + 1] * xs[i + 1];                  \
                    a[i + 1] += gs[i] * xs[i + 1] - gs[i + 1] * xs[i];              \
                }                                                                   \
            }                                                                       \
        for (ptrdiff_t i = 0; i < n; i++)                                           \
            as[i] = a[i];                                                           \
    }                                                                               \
}                                                                                   \
CVX_ISA_DISPATCH(NAME, CVX_MIX_ARGS(T), CVX_MIX_PASS, NAME##_body)                  \
CVX_ISA_DISPATCH(NAME##_conj, CVX_MIXC_ARGS(T), CVX_MIXC_PASS, NAME##_conj_body)

CVX_DEFINE_MIX(cvx_mix_f32, float)
CVX_DEFINE_MIX(cvx_mix_f64, double)

#endif
