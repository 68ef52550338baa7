/* convx: the process-level state the kernels consult.  No arithmetic here.
 *
 *   - the instruction-set level the SIMD kernels run at (cvx_isa), chosen
 *     once from the CPU and lowered only by the tests;
 *   - the thread count (cvx_get_threads), which convx.set_num_threads and
 *     threadpoolctl set through the exported convx_*_num_threads symbols;
 *   - fork: a child made by fork() after libgomp started a team cannot use
 *     libgomp's thread pool (its threads do not exist in the child, and the
 *     next parallel region waits for them forever).  A pthread_atfork
 *     handler marks the child, and convx runs one thread there;
 *   - thread creation: libgomp ends the process when pthread_create fails,
 *     so before a team larger than any this OS thread has started, convx
 *     creates and joins that many threads itself (cvx_team_size), and runs
 *     fewer threads if it cannot;
 *   - interrupts: while the main thread runs a long call, a SIGINT handler
 *     chained in front of Python's sets a flag the kernels poll between
 *     pieces of work (cvx_interrupt_begin / _end); Python's own handler
 *     still runs, so the KeyboardInterrupt is raised when the call returns.
 *
 * Everything here is read by the kernels without the GIL and written with
 * the GIL held (or from a signal handler, or in a forked child before any
 * other thread exists).  Plain ints suffice for the settings; the stop flag
 * is read and written atomically.
 */
#ifndef CONVX_RUNTIME_H
#define CONVX_RUNTIME_H

#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#define CVX_EXPORT __declspec(dllexport)
#else
#define CVX_EXPORT __attribute__((visibility("default")))
#include <pthread.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__)
#define CVX_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define CVX_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define CVX_TLS __thread
#else
#define CVX_LOAD(p) (*(volatile const int *)(p))
#define CVX_STORE(p, v) (*(volatile int *)(p) = (v))
#define CVX_TLS __declspec(thread)
#endif

/* A kernel stops early when *stop becomes nonzero.  Calls that cannot be
 * interrupted poll cvx_never, which stays 0. */
static int cvx_never = 0;
static int cvx_interrupted = 0;
#define CVX_STOPPED(stop) CVX_LOAD(stop)

/* ---------------------------------------------------------------------- */
/* Vectors.  CVX_HAVE_GCC_VECTOR: the kernels' vectors are GCC's vector    */
/* extensions (GCC and clang), and on x86-64 GCC picks the instruction set  */
/* at run time (CVX_X86_DISPATCH).  Elsewhere (MSVC), or built with         */
/* CVX_PORTABLE=1 (setup.py: CONVX_PORTABLE=1), a vector is a struct of     */
/* lanes and its arithmetic plain C loops over them (the compiler may       */
/* vectorise them): each lane gets the same operations in the same order,   */
/* so the same sums as the vector code at the baseline level.  The kernels  */
/* spell their vector arithmetic with these macros:                         */
/*   CVX_VECTOR_TYPE(T, VT, BYTES)  typedef VT: BYTES bytes of T            */
/*   CVX_LANE(v, l)                 lane l of v (an lvalue)                 */
/*   CVX_VZERO(VT)                  a vector of zeros                       */
/*   CVX_VSUB0(VT, s), CVX_V0ADD(VT, s)  s broadcast, as s - 0 and 0 + s    */
/*   CVX_VLD(VT, p), CVX_VST(p, v)  unaligned load and store                */
/*   CVX_VMAC(acc, a, b)            acc += a * b                            */
/*   CVX_VADD(d, a, b)              d = a + b                               */
/*   CVX_VMASK(VT, IVT, x, m)       x's lanes where m's (IVT) are 0 set to 0 */
/* ---------------------------------------------------------------------- */
#if defined(__GNUC__) && !(defined(CVX_PORTABLE) && CVX_PORTABLE)
#define CVX_HAVE_GCC_VECTOR 1
#else
#define CVX_HAVE_GCC_VECTOR 0
#endif

/* (MSVC: none; its __forceinline beside `static inline` is warning C4141) */
#if defined(__GNUC__)
#define CVX_ALWAYS_INLINE __attribute__((always_inline))
#define CVX_NOINLINE __attribute__((noinline))
#else
#define CVX_ALWAYS_INLINE
#define CVX_NOINLINE
#endif
/* Hints to fetch the cache line at p for writing or for reading (no effect
 * on results, none on an address outside memory; nothing where the compiler
 * has no __builtin_prefetch). */
#if defined(__GNUC__)
#define CVX_PREFETCH_W(p) __builtin_prefetch((p), 1, 3)
#define CVX_PREFETCH_R(p) __builtin_prefetch((p), 0, 3)
#else
#define CVX_PREFETCH_W(p) ((void)(p))
#define CVX_PREFETCH_R(p) ((void)(p))
#endif
#if defined(_MSC_VER) && !defined(__clang__) && !defined(restrict)
#define restrict __restrict
#endif

/* Unroll the loop that follows n times (the rows kernels' loops over a
 * band's source rows and tap columns, _rows.h and _depthwise.h: their
 * indices then select registers, not memory).  Not in the sanitizer build
 * (setup.py's CONVX_DEBUG=1 defines CVX_NO_UNROLL): the same sums and the
 * same reads, in loops, compiled in a sixth of the time. */
#if defined(__GNUC__) && !defined(CVX_NO_UNROLL)
#define CVX_UNROLL_(n) _Pragma(#n)
#define CVX_UNROLL(n) CVX_UNROLL_(GCC unroll n)
#else
#define CVX_UNROLL(n)
#endif

/* A loaded vector x kept in a register for all its uses where COND (a
 * constant): GCC otherwise may load it again in each multiply-add that reads
 * it (a memory operand), and where a vector serves several sums that
 * multiplies the loads.  COND must hold only where a register holds x: 64
 * bytes at x86-64-v4, 32 at -v3. */
#if CVX_HAVE_GCC_VECTOR && defined(__x86_64__)
#define CVX_KEEP_IF(x, COND)                                                        \
    do {                                                                            \
        if (COND)                                                                   \
            __asm__("" : "+v"(x));                                                  \
    } while (0)
#else
#define CVX_KEEP_IF(x, COND) ((void)(COND))
#endif

#if CVX_HAVE_GCC_VECTOR
#define CVX_VECTOR_TYPE(T, VT, BYTES) typedef T VT __attribute__((vector_size(BYTES)))
#define CVX_LANE(v, l) ((v)[l])
#define CVX_VZERO(VT) ((VT){0})
#define CVX_VSUB0(VT, s) ((s) - (VT){0})
#define CVX_V0ADD(VT, s) ((VT){0} + (s))
/* Macros, not functions: on the x86-64 baseline a function that takes or
 * returns a 32-byte vector has an ABI that differs from AVX code's, and GCC
 * warns of it (-Wpsabi), even for a function always inlined. */
#define CVX_VLD(VT, p) __extension__ ({ VT cvx_v_; memcpy(&cvx_v_, (p), sizeof cvx_v_); cvx_v_; })
#define CVX_VST(p, v) __extension__ ({ __typeof__(v) cvx_v_ = (v); memcpy((p), &cvx_v_, sizeof cvx_v_); })
#define CVX_VMAC(acc, a, b) ((acc) += (a) * (b))
#define CVX_VADD(d, a, b) ((d) = (a) + (b))
#define CVX_VMASK(VT, IVT, x, m) ((x) = (VT)((IVT)(x) & (m)))
#else
#define CVX_NLANES(x) ((int)(sizeof(x) / sizeof((x).lane[0])))
#define CVX_VECTOR_TYPE(T, VT, BYTES)                                               \
typedef struct { T lane[(BYTES) / sizeof(T)]; } VT;                                 \
static inline VT VT##_sub0(T s)                                                     \
{ VT r; for (int l = 0; l < CVX_NLANES(r); l++) r.lane[l] = s - (T)0; return r; }   \
static inline VT VT##_0add(T s)                                                     \
{ VT r; for (int l = 0; l < CVX_NLANES(r); l++) r.lane[l] = (T)0 + s; return r; }   \
static inline VT VT##_load(const T *p) { VT r; memcpy(&r, p, sizeof r); return r; }
#define CVX_LANE(x, l) ((x).lane[l])
#define CVX_VZERO(VT) ((VT){{0}})
#define CVX_VSUB0(VT, s) VT##_sub0(s)
#define CVX_V0ADD(VT, s) VT##_0add(s)
#define CVX_VLD(VT, p) VT##_load(p)
#define CVX_VST(p, x) memcpy((p), &(x), sizeof(x))
#define CVX_VMAC(acc, a, b)                                                         \
    do {                                                                            \
        for (int cvx_l_ = 0; cvx_l_ < CVX_NLANES(acc); cvx_l_++)                    \
            (acc).lane[cvx_l_] += (a).lane[cvx_l_] * (b).lane[cvx_l_];              \
    } while (0)
#define CVX_VADD(d, a, b)                                                           \
    do {                                                                            \
        for (int cvx_l_ = 0; cvx_l_ < CVX_NLANES(d); cvx_l_++)                      \
            (d).lane[cvx_l_] = (a).lane[cvx_l_] + (b).lane[cvx_l_];                 \
    } while (0)
#define CVX_VMASK(VT, IVT, x, m)                                                    \
    do {                                                                            \
        for (int cvx_l_ = 0; cvx_l_ < CVX_NLANES(x); cvx_l_++)                      \
            if (!(m).lane[cvx_l_])                                                  \
                (x).lane[cvx_l_] = 0;                                               \
    } while (0)
#endif

/* n bytes copied (cvx_copy) or zeroed (cvx_zero), n a multiple of 4: the
 * runs below 128 bytes inline, as at most two fixed-size moves that may
 * overlap; longer ones by memcpy / memset.  The padding of a small image
 * copies a row of a few values and zeroes one or two on each side of it, and
 * a call to the C library for each (with its dispatch) cost more than the
 * copy: 36% of a depthwise 3x3 layer's time on 12x12 images. */
#define CVX_SHORT_RUNS(OP2, OPN)                                                    \
    if (n >= 128) { OPN; return; }                                                  \
    if (n >= 64) { OP2(64); return; }                                               \
    if (n >= 32) { OP2(32); return; }                                               \
    if (n >= 16) { OP2(16); return; }                                               \
    if (n >= 8) { OP2(8); return; }                                                 \
    if (n >= 4) OP2(4);
static inline void cvx_copy(void *dst, const void *src, size_t n)
{
    char *d = (char *)dst;
    const char *s = (const char *)src;
#define CVX_COPY2(k) do { memcpy(d, s, k); memcpy(d + n - (k), s + n - (k), k); } while (0)
    CVX_SHORT_RUNS(CVX_COPY2, memcpy(d, s, n))
#undef CVX_COPY2
}
static inline void cvx_zero(void *dst, size_t n)
{
    char *d = (char *)dst;
#define CVX_ZERO2(k) do { memset(d, 0, k); memset(d + n - (k), 0, k); } while (0)
    CVX_SHORT_RUNS(CVX_ZERO2, memset(d, 0, n))
#undef CVX_ZERO2
}

/* ---------------------------------------------------------------------- */
/* Instruction-set level: 4 = x86-64-v4 (AVX-512), 3 = x86-64-v3 (AVX2 and  */
/* FMA), 1 = the compiler's baseline (and every non-x86 target, where the   */
/* compiler's own SIMD is the baseline).                                     */
/* ---------------------------------------------------------------------- */

#if defined(__x86_64__) && CVX_HAVE_GCC_VECTOR && !defined(__clang__) && !defined(CONVX_NO_CLONES)
#define CVX_X86_DISPATCH 1
#else
#define CVX_X86_DISPATCH 0
#endif

static int cvx_isa = 1;

#if CVX_X86_DISPATCH
/* A function compiled for x86-64-v4 or -v3 (see CVX_ISA_DISPATCH). */
#define CVX_V4 __attribute__((target("arch=x86-64-v4")))
#define CVX_V3 __attribute__((target("arch=x86-64-v3")))
#endif

/* A kernel compiled for each level and picked at run time:
 * CVX_ISA_DISPATCH(NAME, ARGS, PASS, BODY) defines NAME(ARGS), which calls
 * the always-inline BODY(PASS) compiled for x86-64-v4, -v3 or the baseline
 * by cvx_isa (the baseline alone where there is no dispatch).  ARGS is the
 * parameter list, PASS the same names as arguments.
 * CVX_ISA_DISPATCH_BY(NAME, ARGS, PASS, BODY, V4, V3) is the same with one
 * more argument, a constant per level: BODY(PASS, V4) on x86-64-v4 (its 32
 * vector registers hold larger blocks), BODY(PASS, V3) on -v3 and the
 * baseline.  CVX_ISA_DISPATCH_LEVEL(NAME, ARGS, PASS, BODY) gives BODY the
 * level itself: 4, 3, or 1 (the baseline, and where there is no dispatch),
 * for a body whose register constraints differ between -v3 and the
 * baseline (CVX_KEEP_IF). */
#define CVX_UNPAREN(...) __VA_ARGS__
#define CVX_ISA_DISPATCH(NAME, ARGS, PASS, BODY)                                    \
    CVX_ISA_CLONES_(NAME, (ARGS), (PASS), BODY, (), (), ())
#define CVX_ISA_DISPATCH_BY(NAME, ARGS, PASS, BODY, V4, V3)                         \
    CVX_ISA_CLONES_(NAME, (ARGS), (PASS), BODY, (, V4), (, V3), (, V3))
#define CVX_ISA_DISPATCH_LEVEL(NAME, ARGS, PASS, BODY)                              \
    CVX_ISA_CLONES_(NAME, (ARGS), (PASS), BODY, (, 4), (, 3), (, 1))
#if CVX_X86_DISPATCH
#define CVX_ISA_CLONES_(NAME, ARGS, PASS, BODY, X4, X3, X1)                         \
CVX_V4 static void NAME##_v4(CVX_UNPAREN ARGS)                                     \
{ BODY(CVX_UNPAREN PASS CVX_UNPAREN X4); }                                          \
CVX_V3 static void NAME##_v3(CVX_UNPAREN ARGS)                                     \
{ BODY(CVX_UNPAREN PASS CVX_UNPAREN X3); }                                          \
static void NAME##_v1(CVX_UNPAREN ARGS) { BODY(CVX_UNPAREN PASS CVX_UNPAREN X1); }  \
static void NAME(CVX_UNPAREN ARGS)                                                  \
{                                                                                   \
    if (cvx_isa >= 4)                                                               \
        NAME##_v4(CVX_UNPAREN PASS);                                                \
    else if (cvx_isa >= 3)                                                          \
        NAME##_v3(CVX_UNPAREN PASS);                                                \
    else                                                                            \
        NAME##_v1(CVX_UNPAREN PASS);                                                \
}
#else
#define CVX_ISA_CLONES_(NAME, ARGS, PASS, BODY, X4, X3, X1)                         \
static void NAME(CVX_UNPAREN ARGS) { BODY(CVX_UNPAREN PASS CVX_UNPAREN X1); }
#endif

static int cvx_isa_detect(void)
{
#if CVX_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4"))
        return 4;
    if (__builtin_cpu_supports("x86-64-v3"))
        return 3;
#endif
    return 1;
}

/* The CPU's vendor (cpuid leaf 0: "GenuineIntel", "AuthenticAMD") and
 * family (leaf 1: the base family, plus the extended family where the base
 * is 15), for the engine's choice of cost constants (_engine._tuning):
 * kernels that run at one instruction-set level run at different relative
 * speeds on different cores.  An empty vendor and family 0 where there is
 * no cpuid (not x86-64, or a compiler without <cpuid.h>). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define CVX_HAVE_CPUID 1
#else
#define CVX_HAVE_CPUID 0
#endif

static int cvx_cpu_id(char vendor[13])
{
    memset(vendor, 0, 13);
#if CVX_HAVE_CPUID
    unsigned int a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d))
        return 0;
    memcpy(vendor, &b, 4);
    memcpy(vendor + 4, &d, 4);
    memcpy(vendor + 8, &c, 4);
    if (a < 1 || !__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    const int base = (a >> 8) & 0xf;
    return base == 0xf ? base + (int)((a >> 20) & 0xff) : base;
#else
    return 0;
#endif
}

/* ---------------------------------------------------------------------- */
/* Threads                                                                 */
/* ---------------------------------------------------------------------- */

static int cvx_user_threads = 0;      /* convx.set_num_threads / threadpoolctl; 0: default */
static int cvx_default_threads = 1;   /* OMP_NUM_THREADS or the CPUs, clamped (convx._threads) */
static int cvx_max_threads = 1;       /* the CPUs this process may use */
static int cvx_forked = 0;            /* set in a child of fork() */

/* The OpenMP threads that ran items in the last parallel call, one bit per
 * thread number (a diagnostic for the tests: convx._core.threads_seen). */
static unsigned long long cvx_seen = 1;

static inline void cvx_saw(int tid)
{
#if defined(__GNUC__)
    __atomic_fetch_or(&cvx_seen, 1ULL << (tid & 63), __ATOMIC_RELAXED);
#else
    cvx_seen |= 1ULL << (tid & 63);
#endif
}

/* ---------------------------------------------------------------------- */
/* A team's items and its barrier                                          */
/* ---------------------------------------------------------------------- */

/* Between calls convx's threads sleep (OMP_WAIT_POLICY=passive, convx's
 * default: docs/reliability.md, "Idle threads").  libgomp then sleeps at
 * every wait inside a parallel region too: a thread that reaches the
 * barrier closing a worksharing loop, or the region, before the others goes
 * to sleep there, and the last one wakes it.  In a virtual machine a
 * sleeping CPU is a halted guest CPU the host must schedule again: an empty
 * region of 2 threads took 60 us on average (2.8 us at best), one with two
 * barriers inside 114 us (Intel Xeon guest, 2 CPUs, passive; 2-5 us with
 * the threads spinning).
 *
 * So the kernels share out their items with cvx_claim (one at a time, as
 * schedule(dynamic)) or cvx_share (equal runs, as schedule(static)), and
 * wait for each other with cvx_team_wait, which spins first: for up to
 * CVX_SPIN_NS, about what a sleep and a wake cost there, pausing and
 * yielding the CPU every CVX_SPIN_YIELD pauses (a thread that waits for one
 * the scheduler has put aside must not hold a CPU it needs); then, on
 * Linux, it sleeps on the barrier's word (futex).  Most waits inside a call
 * are shorter: an item, or the time the last thread took to wake.  A long
 * one spun, the 1x1 stride-2 input gradient's last image of 3 ms (8 images
 * on 2 threads), made the call take 1.28x its time (perf put more of it in
 * the kernel's cross-CPU calls while the thread spun).  Each region ends with
 * cvx_team_wait, so that its threads reach libgomp's own closing barrier
 * together and none sleeps in it.  The threads still sleep between calls.
 *
 * Both count the threads the region has (omp_get_num_threads), not those
 * it asked for: a region started inside another one may have fewer. */
#if defined(__GNUC__)
#define CVX_LINE __attribute__((aligned(64)))
#elif defined(_MSC_VER)
#define CVX_LINE __declspec(align(64))
#else
#define CVX_LINE
#endif
typedef struct {
    CVX_LINE ptrdiff_t next;   /* the next item to claim */
    CVX_LINE int arrived;      /* threads at the barrier */
    int phase;                 /* barriers passed: the word sleepers wait on */
    int sleepers;              /* threads asleep on it */
    CVX_LINE char end;         /* nothing else on their cache lines */
} cvx_team;

#define CVX_SPIN_YIELD 64
#define CVX_SPIN_NS 100000

/* The threads of the region this thread runs in (1 outside any). */
static inline int cvx_team_threads(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

static inline cvx_team cvx_team_new(void)
{
    cvx_team t;
    memset(&t, 0, sizeof t);
    return t;
}

#if defined(__GNUC__)
#include <sched.h>
#if defined(__linux__)
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#endif
static inline void cvx_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline ptrdiff_t cvx_claim(cvx_team *t)
{
    return __atomic_fetch_add(&t->next, 1, __ATOMIC_RELAXED);
}

#if defined(__linux__)
static inline long long cvx_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
#endif

static inline void cvx_team_wait(cvx_team *t)
{
#ifdef _OPENMP
    const int n = cvx_team_threads();
    if (n <= 1)
        return;
    const int phase = __atomic_load_n(&t->phase, __ATOMIC_SEQ_CST);
    if (__atomic_add_fetch(&t->arrived, 1, __ATOMIC_ACQ_REL) == n) {
        __atomic_store_n(&t->arrived, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&t->phase, phase + 1, __ATOMIC_SEQ_CST);
#if defined(__linux__)
        if (__atomic_load_n(&t->sleepers, __ATOMIC_SEQ_CST))
            syscall(SYS_futex, &t->phase, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#endif
        return;
    }
#if defined(__linux__)
    const long long start = cvx_now_ns();
#endif
    for (unsigned spins = 1; __atomic_load_n(&t->phase, __ATOMIC_ACQUIRE) == phase; spins++) {
        cvx_pause();
        if (spins % CVX_SPIN_YIELD == 0) {
#if defined(__linux__)
            if (cvx_now_ns() - start > CVX_SPIN_NS) {   /* sleep until the last one comes */
                __atomic_add_fetch(&t->sleepers, 1, __ATOMIC_SEQ_CST);
                while (__atomic_load_n(&t->phase, __ATOMIC_SEQ_CST) == phase)
                    syscall(SYS_futex, &t->phase, FUTEX_WAIT_PRIVATE, phase, NULL, NULL, 0);
                __atomic_sub_fetch(&t->sleepers, 1, __ATOMIC_SEQ_CST);
                return;
            }
#endif
            sched_yield();
        }
    }
#else
    (void)t;
#endif
}
#else   /* MSVC: its OpenMP 2.0 barrier, and an interlocked add */
#include <intrin.h>
static inline ptrdiff_t cvx_claim(cvx_team *t)
{
    return (ptrdiff_t)_InterlockedExchangeAdd64((volatile __int64 *)&t->next, 1);
}

static inline void cvx_team_wait(cvx_team *t)
{
    (void)t;
#ifdef _OPENMP
#pragma omp barrier
#endif
}
#endif

/* Where thread t's run of n items starts when the region's threads share
 * them as schedule(static) does: equal runs in thread order, the first
 * n % threads one longer.  Thread t takes [cvx_share(n, t),
 * cvx_share(n, t + 1)). */
static inline ptrdiff_t cvx_share(ptrdiff_t n, ptrdiff_t t)
{
    const ptrdiff_t nt = cvx_team_threads(), q = n / nt, r = n % nt;
    return t * q + (t < r ? t : r);
}

static int cvx_get_threads(void)
{
    if (cvx_forked)
        return 1;
    return cvx_user_threads > 0 ? cvx_user_threads : cvx_default_threads;
}

/* For threadpoolctl (convx._threads registers a controller that finds these
 * symbols in convx._core): the thread count convx uses, and setting it, as
 * convx.set_num_threads does, clamped to the CPUs the process may use. */
CVX_EXPORT int convx_get_num_threads(void) { return cvx_get_threads(); }

CVX_EXPORT void convx_set_num_threads(int n)
{
    if (n < 1)
        n = 1;
    if (n > cvx_max_threads)
        n = cvx_max_threads;
    cvx_user_threads = n;
}

#if !defined(_WIN32)
static size_t cvx_stack_size = 0;     /* OMP_STACKSIZE / GOMP_STACKSIZE in bytes; 0: default */
static CVX_TLS int cvx_team_ok = 1;   /* the largest team this OS thread may start */

static void *cvx_probe_body(void *arg) { return arg; }

/* The number of threads, at most `want`, that a parallel region started by
 * this OS thread can have.  libgomp keeps a pool of threads per OS thread
 * that starts regions and only creates threads when a region needs more
 * than the pool holds; so the first time this thread asks for more than it
 * had, convx creates (and joins) that many threads with the stack size
 * libgomp uses.  glibc keeps the stacks of joined threads for reuse, so
 * libgomp's own pthread_create then finds them. */
static int cvx_team_size(int want)
{
    if (want <= cvx_team_ok)
        return want;
    pthread_t ids[256];
    pthread_attr_t attr;
    int made = 0, use_attr = pthread_attr_init(&attr) == 0;
    if (want - 1 > 256)
        want = 257;
    if (use_attr && cvx_stack_size)
        pthread_attr_setstacksize(&attr, cvx_stack_size);
    while (made < want - 1 &&
           pthread_create(&ids[made], use_attr ? &attr : NULL, cvx_probe_body, NULL) == 0)
        made++;
    for (int i = 0; i < made; i++)
        pthread_join(ids[i], NULL);
    if (use_attr)
        pthread_attr_destroy(&attr);
    if (made + 1 > cvx_team_ok)
        cvx_team_ok = made + 1;
    return made + 1 < want ? made + 1 : want;
}
#else
static size_t cvx_stack_size = 0;
static int cvx_team_size(int want) { return want; }
#endif

/* ---------------------------------------------------------------------- */
/* SIGINT during a long call from the main thread                          */
/* ---------------------------------------------------------------------- */

/* The calls that asked for the handler and have not yet put it back: a
 * long call can run inside another's, from a Python signal handler that
 * runs between the outer call's kernel and its interrupt_end.  The handler
 * is chained once, by the outermost, and put back by it. */
static int cvx_sigint_installed = 0;

#if !defined(_WIN32)
static struct sigaction cvx_sigint_prev;

static void cvx_on_sigint(int sig, siginfo_t *info, void *context)
{
    CVX_STORE(&cvx_interrupted, 1);
    /* then whatever handled SIGINT before: Python's C handler, which marks
     * the signal for the interpreter (and writes its wakeup fd) */
    if (cvx_sigint_prev.sa_flags & SA_SIGINFO)
        cvx_sigint_prev.sa_sigaction(sig, info, context);
    else if (cvx_sigint_prev.sa_handler != SIG_DFL && cvx_sigint_prev.sa_handler != SIG_IGN)
        cvx_sigint_prev.sa_handler(sig);
}

static int cvx_is_ours(const struct sigaction *a)
{
    return (a->sa_flags & SA_SIGINFO) && a->sa_sigaction == cvx_on_sigint;
}

/* Chain cvx_on_sigint in front of the current SIGINT handler; 0 when SIGINT
 * is ignored or left at its default (then nothing is installed, and there is
 * nothing to stop for).  Inside a call that chained it already, it counts
 * that call, and chains nothing twice (which would have made the handler
 * its own predecessor: every SIGINT after, a loop). */
static int cvx_interrupt_begin(void)
{
    struct sigaction act, now;
    CVX_STORE(&cvx_interrupted, 0);
    if (sigaction(SIGINT, NULL, &now) != 0)
        return 0;
    if (cvx_is_ours(&now)) {
        if (cvx_sigint_installed == 0)   /* cannot happen: ours with no call */
            return 0;
        cvx_sigint_installed++;
        return 1;
    }
    if (!(now.sa_flags & SA_SIGINFO) &&
        (now.sa_handler == SIG_DFL || now.sa_handler == SIG_IGN))
        return 0;
    cvx_sigint_prev = now;
    act = now;
    act.sa_sigaction = cvx_on_sigint;
    act.sa_flags = (now.sa_flags | SA_SIGINFO) & ~SA_RESETHAND;
    if (sigaction(SIGINT, &act, NULL) != 0)
        return 0;
    cvx_sigint_installed = 1;
    return 1;
}

/* The end of a call that interrupt_begin counted: the outermost puts the
 * handler it found back, unless SIGINT's handler has been set since (by
 * Python code that ran inside the call: a signal handler's), which it
 * leaves in place. */
static void cvx_interrupt_end(void)
{
    struct sigaction now;
    if (cvx_sigint_installed == 0 || --cvx_sigint_installed > 0)
        return;
    if (sigaction(SIGINT, NULL, &now) == 0 && cvx_is_ours(&now))
        sigaction(SIGINT, &cvx_sigint_prev, NULL);
}

static void cvx_atfork_child(void)
{
    /* only the forking thread exists here: no libgomp team, no other call */
    cvx_forked = 1;
    cvx_team_ok = 1;
    if (cvx_sigint_installed > 0) {   /* the child is in no call: put it back */
        cvx_sigint_installed = 1;
        cvx_interrupt_end();
    }
    CVX_STORE(&cvx_interrupted, 0);
}

static void cvx_runtime_init(void)
{
    cvx_isa = cvx_isa_detect();
    pthread_atfork(NULL, NULL, cvx_atfork_child);
#ifdef _OPENMP
    /* Start the OpenMP runtime now, while convx/__init__.py holds its wait
     * policy in the environment: libgomp reads the environment as it loads,
     * but LLVM's libomp (macOS wheels, clang builds) only at its first call,
     * which would come after the variable is gone (its threads would then
     * spin for 200 ms after every parallel region). */
    (void)omp_get_max_threads();
#endif
}
#else
typedef void (*cvx_sighandler)(int);
static cvx_sighandler cvx_sigint_prev_handler = NULL;

static void cvx_on_sigint(int sig)
{
    CVX_STORE(&cvx_interrupted, 1);
    if (cvx_sigint_prev_handler && cvx_sigint_prev_handler != SIG_DFL &&
        cvx_sigint_prev_handler != SIG_IGN)
        cvx_sigint_prev_handler(sig);
}

static int cvx_interrupt_begin(void)
{
    CVX_STORE(&cvx_interrupted, 0);
    cvx_sighandler prev = signal(SIGINT, cvx_on_sigint);
    if (prev == SIG_ERR)
        return 0;
    if (prev == cvx_on_sigint) {   /* inside a call that chained it (as above) */
        if (cvx_sigint_installed == 0)
            return 0;
        cvx_sigint_installed++;
        return 1;
    }
    if (prev == SIG_DFL || prev == SIG_IGN) {
        signal(SIGINT, prev);
        return 0;
    }
    cvx_sigint_prev_handler = prev;
    cvx_sigint_installed = 1;
    return 1;
}

static void cvx_interrupt_end(void)
{
    if (cvx_sigint_installed == 0 || --cvx_sigint_installed > 0)
        return;
    cvx_sighandler now = signal(SIGINT, cvx_sigint_prev_handler);
    if (now != cvx_on_sigint && now != SIG_ERR)   /* set since: leave it */
        signal(SIGINT, now);
}

static void cvx_runtime_init(void)
{
    cvx_isa = cvx_isa_detect();
#ifdef _OPENMP
    (void)omp_get_max_threads();   /* as above: the runtime reads its environment now */
#endif
}
#endif

#endif
