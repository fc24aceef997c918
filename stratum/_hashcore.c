/*
 * stratum._hashcore: the C double-SHA256 core of the share path.
 *
 * Same API and byte orders as the hashlib reference in stratum/_hashcore_py.py (read its
 * docstring first); the tests run every vector through both and compare error types and messages.
 *
 * Layout of this file:
 *   1. SHA-256 kernels: portable C, SHA-NI (x86-64) and ARMv8 crypto extensions, each as a
 *      "compress one block" on big-endian bytes, on host-order message words, and on a
 *      precomputed W+K schedule (for constant blocks), plus 2-way interleaved variants.  The
 *      SHA-NI and ARMv8 kernels are compiled with per-function target attributes, so the module
 *      builds with plain flags everywhere and the kernel is chosen at run time (CPUID / HWCAP).
 *   2. Bitcoin-shaped helpers built on a kernel table: sha256d of arbitrary data, of an 80-byte
 *      header (second block is 16 bytes + constant padding), of a 64-byte merkle node (second
 *      block is entirely constant: its W+K schedule is precomputed), and the 32-byte second hash
 *      (fixed padding, fed as words straight from the first hash's state).  A share check keeps
 *      intermediate hashes as host-order words and only serialises the final header hash.
 *   3. Python bindings: argument parsing with the reference's exact messages, batch calls that
 *      parse everything with the GIL held, then hash with the GIL released.
 *
 * No module state is read from the environment: tests switch kernels with _set_backend().
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define HC_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

#if defined(__aarch64__) && defined(__linux__)
#define HC_ARM 1
#include <arm_neon.h>
#include <sys/auxv.h>
#ifndef HWCAP_SHA2
#define HWCAP_SHA2 (1 << 6)
#endif
#if defined(__clang__)
#define HC_ARM_TARGET __attribute__((target("crypto")))
#else
#define HC_ARM_TARGET __attribute__((target("+crypto")))
#endif
#endif

#define HC_ALIGN16 __attribute__((aligned(16)))

/* ------------------------------------------------------------------------------------------ */
/* 1. SHA-256 kernels                                                                          */
/* ------------------------------------------------------------------------------------------ */

static const uint32_t IV[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static const uint32_t K256[64] HC_ALIGN16 = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* W+K of the second block of a 64-byte message (0x80, zeros, bit length 512): a constant. */
static uint32_t WK_PAD64[64] HC_ALIGN16;

static inline uint32_t load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t bswap32(uint32_t v) { return __builtin_bswap32(v); }

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define CH(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))
#define BSIG0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BSIG1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SSIG0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))

/* Message schedule of one block given as 16 host-order words, with K added. */
static void schedule_wk(uint32_t wk[64], const uint32_t w16[16])
{
    uint32_t w[64];
    memcpy(w, w16, 64);
    for (int i = 16; i < 64; i++)
        w[i] = SSIG1(w[i - 2]) + w[i - 7] + SSIG0(w[i - 15]) + w[i - 16];
    for (int i = 0; i < 64; i++)
        wk[i] = w[i] + K256[i];
}

/* --- portable C ---------------------------------------------------------------------------- */

#define PR(a, b, c, d, e, f, g, h, i)                                  \
    do {                                                               \
        uint32_t t1_ = (h) + BSIG1(e) + CH(e, f, g) + wk[i];           \
        (d) += t1_;                                                    \
        (h) = t1_ + BSIG0(a) + MAJ(a, b, c);                           \
    } while (0)

static void portable_wk(uint32_t st[8], const uint32_t wk[64])
{
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];
    for (int i = 0; i < 64; i += 8) {
        PR(a, b, c, d, e, f, g, h, i + 0);
        PR(h, a, b, c, d, e, f, g, i + 1);
        PR(g, h, a, b, c, d, e, f, i + 2);
        PR(f, g, h, a, b, c, d, e, i + 3);
        PR(e, f, g, h, a, b, c, d, i + 4);
        PR(d, e, f, g, h, a, b, c, i + 5);
        PR(c, d, e, f, g, h, a, b, i + 6);
        PR(b, c, d, e, f, g, h, a, i + 7);
    }
    st[0] += a; st[1] += b; st[2] += c; st[3] += d;
    st[4] += e; st[5] += f; st[6] += g; st[7] += h;
}

static void portable_words(uint32_t st[8], const uint32_t w16[16])
{
    uint32_t wk[64];
    schedule_wk(wk, w16);
    portable_wk(st, wk);
}

static void portable_bytes(uint32_t st[8], const uint8_t *p, size_t nblocks)
{
    uint32_t w[16];
    for (; nblocks; nblocks--, p += 64) {
        for (int i = 0; i < 16; i++)
            w[i] = load_be32(p + 4 * i);
        portable_words(st, w);
    }
}

/* A kernel compresses one block into each of n <= HC_LANES independent states ("lanes").
 * Lanes run interleaved where the hardware gains from it: a single SHA-NI chain waits on the
 * latency of sha256rnds2, so 2..4 independent chains fill the unit. */
#define HC_LANES 4
#ifndef HC_GROUP
#define HC_GROUP HC_LANES
#endif

typedef struct {
    const char *name;
    /* w[l]: the block as 16 host-order words */
    void (*words)(size_t n, uint32_t (*st)[8], const uint32_t (*w)[16]);
    /* p[l]: nblocks consecutive 64-byte blocks */
    void (*bytes)(size_t n, uint32_t (*st)[8], const uint8_t *const *p, size_t nblocks);
    /* one constant block for all lanes, as its precomputed W+K schedule */
    void (*wk)(size_t n, uint32_t (*st)[8], const uint32_t *wk);
} hc_kernel;

static void portable_words_n(size_t n, uint32_t (*st)[8], const uint32_t (*w)[16])
{
    for (size_t l = 0; l < n; l++)
        portable_words(st[l], w[l]);
}

static void portable_bytes_n(size_t n, uint32_t (*st)[8], const uint8_t *const *p, size_t nblocks)
{
    for (size_t l = 0; l < n; l++)
        portable_bytes(st[l], p[l], nblocks);
}

static void portable_wk_n(size_t n, uint32_t (*st)[8], const uint32_t *wk)
{
    for (size_t l = 0; l < n; l++)
        portable_wk(st[l], wk);
}

static const hc_kernel KERNEL_PORTABLE = {"portable-c", portable_words_n, portable_bytes_n,
                                          portable_wk_n};

#define HC_INLINE static inline __attribute__((always_inline))

/* --- SHA-NI (x86-64) ----------------------------------------------------------------------- */
#ifdef HC_X86
#define SHANI_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* state[8] (a..h) <-> the ABEF / CDGH register pair the sha256rnds2 instruction works on. */
SHANI_TARGET HC_INLINE void shani_state_in(const uint32_t *st, __m128i *S0, __m128i *S1)
{
    __m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)st), 0xB1);
    __m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(st + 4)), 0x1B);
    *S0 = _mm_alignr_epi8(t, s1, 8);
    *S1 = _mm_blend_epi16(s1, t, 0xF0);
}

SHANI_TARGET HC_INLINE void shani_state_out(uint32_t *st, __m128i S0, __m128i S1)
{
    __m128i t = _mm_shuffle_epi32(S0, 0x1B);
    S1 = _mm_shuffle_epi32(S1, 0xB1);
    _mm_storeu_si128((__m128i *)st, _mm_blend_epi16(t, S1, 0xF0));
    _mm_storeu_si128((__m128i *)(st + 4), _mm_alignr_epi8(S1, t, 8));
}

/* Four rounds with the message words (already + K) in wk. */
#define SHANI_4R(S0, S1, WK)                                                        \
    do {                                                                            \
        __m128i m_ = (WK);                                                          \
        S1 = _mm_sha256rnds2_epu32(S1, S0, m_);                                     \
        m_ = _mm_shuffle_epi32(m_, 0x0E);                                           \
        S0 = _mm_sha256rnds2_epu32(S0, S1, m_);                                     \
    } while (0)

#define SHANI_K(i) _mm_load_si128((const __m128i *)&K256[4 * (i)])
/* X0 <- the next four schedule words from the previous sixteen (X0..X3, oldest first). */
#define SHANI_SCHED(X0, X1, X2, X3) \
    X0 = _mm_sha256msg2_epu32(      \
        _mm_add_epi32(_mm_sha256msg1_epu32(X0, X1), _mm_alignr_epi8(X3, X2, 4)), X3)

/* One block in each of L lanes; M[l] holds lane l's message as host-order words. */
SHANI_TARGET HC_INLINE void shani_rounds(const int L, __m128i *S0, __m128i *S1, __m128i (*M)[4])
{
    __m128i a0[HC_LANES], c0[HC_LANES];
    for (int l = 0; l < L; l++) {
        a0[l] = S0[l];
        c0[l] = S1[l];
    }
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++) {
        const int j = r & 3;
#pragma GCC unroll 4
        for (int l = 0; l < L; l++) {
            if (r >= 4)
                SHANI_SCHED(M[l][j], M[l][(j + 1) & 3], M[l][(j + 2) & 3], M[l][(j + 3) & 3]);
            SHANI_4R(S0[l], S1[l], _mm_add_epi32(M[l][j], SHANI_K(r)));
        }
    }
    for (int l = 0; l < L; l++) {
        S0[l] = _mm_add_epi32(S0[l], a0[l]);
        S1[l] = _mm_add_epi32(S1[l], c0[l]);
    }
}

SHANI_TARGET HC_INLINE void shani_words_l(const int L, uint32_t (*st)[8], const uint32_t (*w)[16])
{
    __m128i S0[HC_LANES], S1[HC_LANES], M[HC_LANES][4];
    for (int l = 0; l < L; l++) {
        shani_state_in(st[l], &S0[l], &S1[l]);
        for (int i = 0; i < 4; i++)
            M[l][i] = _mm_loadu_si128((const __m128i *)(w[l] + 4 * i));
    }
    shani_rounds(L, S0, S1, M);
    for (int l = 0; l < L; l++)
        shani_state_out(st[l], S0[l], S1[l]);
}

SHANI_TARGET HC_INLINE void shani_bytes_l(const int L, uint32_t (*st)[8], const uint8_t *const *p,
                                          size_t nblocks)
{
    const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i S0[HC_LANES], S1[HC_LANES], M[HC_LANES][4];
    for (int l = 0; l < L; l++)
        shani_state_in(st[l], &S0[l], &S1[l]);
    for (size_t b = 0; b < nblocks; b++) {
        for (int l = 0; l < L; l++)
            for (int i = 0; i < 4; i++)
                M[l][i] = _mm_shuffle_epi8(
                    _mm_loadu_si128((const __m128i *)(p[l] + 64 * b + 16 * i)), mask);
        shani_rounds(L, S0, S1, M);
    }
    for (int l = 0; l < L; l++)
        shani_state_out(st[l], S0[l], S1[l]);
}

SHANI_TARGET HC_INLINE void shani_wk_l(const int L, uint32_t (*st)[8], const uint32_t *wk)
{
    __m128i S0[HC_LANES], S1[HC_LANES], a0[HC_LANES], c0[HC_LANES];
    for (int l = 0; l < L; l++) {
        shani_state_in(st[l], &S0[l], &S1[l]);
        a0[l] = S0[l];
        c0[l] = S1[l];
    }
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++) {
        __m128i k = _mm_load_si128((const __m128i *)(wk + 4 * r));
#pragma GCC unroll 4
        for (int l = 0; l < L; l++)
            SHANI_4R(S0[l], S1[l], k);
    }
    for (int l = 0; l < L; l++)
        shani_state_out(st[l], _mm_add_epi32(S0[l], a0[l]), _mm_add_epi32(S1[l], c0[l]));
}

SHANI_TARGET static void shani_words(size_t n, uint32_t (*st)[8], const uint32_t (*w)[16])
{
    switch (n) {
    case 4: shani_words_l(4, st, w); break;
    case 3: shani_words_l(3, st, w); break;
    case 2: shani_words_l(2, st, w); break;
    default: shani_words_l(1, st, w); break;
    }
}

SHANI_TARGET static void shani_bytes(size_t n, uint32_t (*st)[8], const uint8_t *const *p,
                                     size_t nblocks)
{
    switch (n) {
    case 4: shani_bytes_l(4, st, p, nblocks); break;
    case 3: shani_bytes_l(3, st, p, nblocks); break;
    case 2: shani_bytes_l(2, st, p, nblocks); break;
    default: shani_bytes_l(1, st, p, nblocks); break;
    }
}

SHANI_TARGET static void shani_wk(size_t n, uint32_t (*st)[8], const uint32_t *wk)
{
    switch (n) {
    case 4: shani_wk_l(4, st, wk); break;
    case 3: shani_wk_l(3, st, wk); break;
    case 2: shani_wk_l(2, st, wk); break;
    default: shani_wk_l(1, st, wk); break;
    }
}

static const hc_kernel KERNEL_SHANI = {"sha-ni", shani_words, shani_bytes, shani_wk};

static int cpu_has_shani(void)
{
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        return 0;
    int sse41 = (ecx >> 19) & 1, ssse3 = (ecx >> 9) & 1;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    return sse41 && ssse3 && ((ebx >> 29) & 1);
}
#endif /* HC_X86 */

/* --- ARMv8 crypto extensions --------------------------------------------------------------- */
#ifdef HC_ARM
#define ARM_4R(S0, S1, WK)                          \
    do {                                            \
        uint32x4_t wk_ = (WK), s0_ = S0;            \
        S0 = vsha256hq_u32(S0, S1, wk_);            \
        S1 = vsha256h2q_u32(S1, s0_, wk_);          \
    } while (0)
#define ARM_SCHED(X0, X1, X2, X3) X0 = vsha256su1q_u32(vsha256su0q_u32(X0, X1), X2, X3)

HC_ARM_TARGET static void arm_block(uint32_t st[8], uint32x4_t M0, uint32x4_t M1, uint32x4_t M2,
                                    uint32x4_t M3)
{
    uint32x4_t S0 = vld1q_u32(st), S1 = vld1q_u32(st + 4);
    uint32x4_t a0 = S0, c0 = S1;
    uint32x4_t M[4] = {M0, M1, M2, M3};
    for (int r = 0; r < 16; r++) {
        int j = r & 3;
        if (r >= 4)
            ARM_SCHED(M[j], M[(j + 1) & 3], M[(j + 2) & 3], M[(j + 3) & 3]);
        ARM_4R(S0, S1, vaddq_u32(M[j], vld1q_u32(K256 + 4 * r)));
    }
    vst1q_u32(st, vaddq_u32(S0, a0));
    vst1q_u32(st + 4, vaddq_u32(S1, c0));
}

#define ARM_LOADB(p) vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(p)))

HC_ARM_TARGET static void arm_words(size_t n, uint32_t (*st)[8], const uint32_t (*w)[16])
{
    for (size_t l = 0; l < n; l++)
        arm_block(st[l], vld1q_u32(w[l]), vld1q_u32(w[l] + 4), vld1q_u32(w[l] + 8),
                  vld1q_u32(w[l] + 12));
}

HC_ARM_TARGET static void arm_bytes(size_t n, uint32_t (*st)[8], const uint8_t *const *p,
                                    size_t nblocks)
{
    for (size_t l = 0; l < n; l++)
        for (size_t b = 0; b < nblocks; b++) {
            const uint8_t *q = p[l] + 64 * b;
            arm_block(st[l], ARM_LOADB(q), ARM_LOADB(q + 16), ARM_LOADB(q + 32), ARM_LOADB(q + 48));
        }
}

HC_ARM_TARGET static void arm_wk(size_t n, uint32_t (*st)[8], const uint32_t *wk)
{
    for (size_t l = 0; l < n; l++) {
        uint32x4_t S0 = vld1q_u32(st[l]), S1 = vld1q_u32(st[l] + 4);
        uint32x4_t a0 = S0, c0 = S1;
        for (int r = 0; r < 16; r++)
            ARM_4R(S0, S1, vld1q_u32(wk + 4 * r));
        vst1q_u32(st[l], vaddq_u32(S0, a0));
        vst1q_u32(st[l] + 4, vaddq_u32(S1, c0));
    }
}

static const hc_kernel KERNEL_ARM = {"armv8-ce", arm_words, arm_bytes, arm_wk};

static int cpu_has_armce(void) { return (getauxval(AT_HWCAP) & HWCAP_SHA2) != 0; }
#endif /* HC_ARM */

/* The kernels this CPU supports, best first (portable C, always there, last); returns how many. */
#define HC_MAX_KERNELS 3
static int available_kernels(const hc_kernel *out[HC_MAX_KERNELS])
{
    int n = 0;
#ifdef HC_X86
    if (cpu_has_shani())
        out[n++] = &KERNEL_SHANI;
#endif
#ifdef HC_ARM
    if (cpu_has_armce())
        out[n++] = &KERNEL_ARM;
#endif
    out[n++] = &KERNEL_PORTABLE;
    return n;
}

static const hc_kernel *best_kernel(void)
{
    const hc_kernel *avail[HC_MAX_KERNELS];
    available_kernels(avail);
    return avail[0];
}

/* Selected with the GIL held (module init, _set_backend); every call reads it once, with the
 * GIL held, before it releases the GIL. */
static const hc_kernel *g_kernel = &KERNEL_PORTABLE;

/* ------------------------------------------------------------------------------------------ */
/* 2. Bitcoin-shaped double SHA-256, on n <= HC_LANES independent lanes                        */
/* ------------------------------------------------------------------------------------------ */

static inline void set_iv(size_t n, uint32_t (*st)[8])
{
    for (size_t l = 0; l < n; l++)
        memcpy(st[l], IV, 32);
}

/* st holds each lane's first-hash final state; replace it with the second hash's (a 32-byte
 * message fed as words straight from the state: no serialisation, fixed padding). */
static void second_hash(const hc_kernel *k, size_t n, uint32_t (*st)[8])
{
    uint32_t w[HC_LANES][16];
    for (size_t l = 0; l < n; l++) {
        memcpy(w[l], st[l], 32);
        w[l][8] = 0x80000000u;
        memset(&w[l][9], 0, 6 * sizeof(uint32_t));
        w[l][15] = 256;
    }
    set_iv(n, st);
    k->words(n, st, (const uint32_t (*)[16])w);
}

static inline void state_to_bytes(const uint32_t st[8], uint8_t out[32])
{
    for (int i = 0; i < 8; i++)
        store_be32(out + 4 * i, st[i]);
}

/* Bytes needed to hold the padded tail of a message of `len` bytes after `skip` (a multiple of
 * 64) bytes were already compressed. */
static inline size_t padded_size(size_t len, size_t skip) { return ((len - skip + 8) / 64 + 1) * 64; }

/* Copy the parts of a message, from byte `skip` on, into dst and pad it; return the block count.
 * dst must hold padded_size(total, skip) bytes. */
static size_t pad_parts(uint8_t *dst, const uint8_t *const *parts, const size_t *lens, int nparts,
                        size_t skip)
{
    size_t total = 0, o = 0;
    for (int i = 0; i < nparts; i++) {
        size_t l = lens[i];
        const uint8_t *p = parts[i];
        total += l;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        memcpy(dst + o, p + skip, l - skip);
        o += l - skip;
        skip = 0;
    }
    size_t nbytes = padded_size(o, 0);
    dst[o] = 0x80;
    memset(dst + o + 1, 0, nbytes - o - 1);
    uint64_t bits = (uint64_t)total * 8;
    for (int i = 0; i < 8; i++)
        dst[nbytes - 1 - i] = (uint8_t)(bits >> (8 * i));
    return nbytes / 64;
}

/* First SHA-256 of arbitrary data, one lane: the whole blocks in place, then the padded tail
 * (under 64 bytes, so at most two blocks). */
static void sha256_data(const hc_kernel *k, const uint8_t *p, size_t n, uint32_t st[8])
{
    uint8_t tail[128];
    size_t full = n / 64;
    memcpy(st, IV, 32);
    if (full)
        k->bytes(1, (uint32_t (*)[8])st, &p, full);
    size_t nblocks = pad_parts(tail, &p, &n, 1, full * 64);
    const uint8_t *t = tail;
    k->bytes(1, (uint32_t (*)[8])st, &t, nblocks);
}

/* sha256d of 80-byte block headers: one full block, then 16 bytes + constant padding. */
static void sha256d_80(const hc_kernel *k, size_t n, const uint8_t *const *h, uint32_t (*st)[8])
{
    uint32_t w[HC_LANES][16];
    set_iv(n, st);
    k->bytes(n, st, h, 1);
    for (size_t l = 0; l < n; l++) {
        for (int i = 0; i < 4; i++)
            w[l][i] = load_be32(h[l] + 64 + 4 * i);
        w[l][4] = 0x80000000u;
        memset(&w[l][5], 0, 10 * sizeof(uint32_t));
        w[l][15] = 640;
    }
    k->words(n, st, (const uint32_t (*)[16])w);
    second_hash(k, n, st);
}

static void sha256d_any(const hc_kernel *k, const uint8_t *p, size_t n, uint8_t out[32])
{
    uint32_t st[1][8];
    if (n == 80) {
        sha256d_80(k, 1, &p, st);
    } else if (n == 64) {
        memcpy(st[0], IV, 32);
        k->bytes(1, st, &p, 1);
        k->wk(1, st, WK_PAD64);
        second_hash(k, 1, st);
    } else {
        sha256_data(k, p, n, st[0]);
        second_hash(k, 1, st);
    }
    state_to_bytes(st[0], out);
}

/* One merkle step per lane: r <- sha256d(r || b), r as host-order words (a digest's big-endian
 * words). The second block of the 64-byte message is constant: its schedule is precomputed. */
static void merkle_step(const hc_kernel *k, size_t n, uint32_t (*r)[8], const uint8_t *const *b)
{
    uint32_t w[HC_LANES][16];
    for (size_t l = 0; l < n; l++) {
        memcpy(w[l], r[l], 32);
        for (int i = 0; i < 8; i++)
            w[l][8 + i] = load_be32(b[l] + 4 * i);
    }
    set_iv(n, r);
    k->words(n, r, (const uint32_t (*)[16])w);
    k->wk(n, r, WK_PAD64);
    second_hash(k, n, r);
}

typedef struct {
    uint32_t version, ntime, nbits, nonce;
    uint32_t prev[8]; /* big-endian words of the 32 prevhash header bytes */
} header_fields;

/* Block hash per lane from header fields and the merkle root as words. */
static void header_hash_words(const hc_kernel *k, size_t n, const header_fields *const *f,
                              const uint32_t (*root)[8], uint32_t (*st)[8])
{
    uint32_t w1[HC_LANES][16], w2[HC_LANES][16];
    for (size_t l = 0; l < n; l++) {
        w1[l][0] = bswap32(f[l]->version);
        memcpy(&w1[l][1], f[l]->prev, 32);
        memcpy(&w1[l][9], root[l], 28);
        w2[l][0] = root[l][7];
        w2[l][1] = bswap32(f[l]->ntime);
        w2[l][2] = bswap32(f[l]->nbits);
        w2[l][3] = bswap32(f[l]->nonce);
        w2[l][4] = 0x80000000u;
        memset(&w2[l][5], 0, 10 * sizeof(uint32_t));
        w2[l][15] = 640;
    }
    set_iv(n, st);
    k->words(n, st, (const uint32_t (*)[16])w1);
    k->words(n, st, (const uint32_t (*)[16])w2);
    second_hash(k, n, st);
}

/* Compare two 256-bit little-endian integers. */
static inline int le256_cmp(const uint8_t *a, const uint8_t *b)
{
    for (int i = 31; i >= 0; i--)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return 0;
}

/* A parsed share: everything needed to check it without touching Python objects. */
typedef struct {
    const uint8_t *cb[4]; /* coinb1, extranonce1, extranonce2, coinb2 */
    size_t cblen[4];
    const uint8_t **branch; /* `depth` pointers to 32-byte hashes */
    size_t depth;
    const uint8_t *share_target, *network_target;
    header_fields hdr; /* version already rolled */
} share_in;

typedef struct {
    uint8_t hash[32];
    int meets_share, meets_network;
} share_out;

/* Midstate of coinb1's whole 64-byte blocks, kept across the shares of a batch (they usually
 * come from one job, so coinb1 repeats). A pure function of coinb1's bytes: the key is compared
 * by content. */
typedef struct {
    const uint8_t *key;
    size_t keylen;
    size_t skip; /* bytes covered by st */
    uint32_t st[8];
} prefix_cache;

static void coinbase_start(const hc_kernel *k, prefix_cache *pc, const share_in *s, uint32_t st[8],
                           size_t *skip)
{
    size_t blocks = s->cblen[0] / 64;
    if (blocks == 0) {
        memcpy(st, IV, 32);
        *skip = 0;
        return;
    }
    if (!(pc->key && pc->keylen == s->cblen[0] &&
          (pc->key == s->cb[0] || memcmp(pc->key, s->cb[0], s->cblen[0]) == 0))) {
        memcpy(pc->st, IV, 32);
        k->bytes(1, (uint32_t (*)[8])pc->st, &s->cb[0], blocks);
        pc->key = s->cb[0];
        pc->keylen = s->cblen[0];
        pc->skip = blocks * 64;
    }
    memcpy(st, pc->st, 32);
    *skip = pc->skip;
}

static size_t coinbase_len(const share_in *s)
{
    return s->cblen[0] + s->cblen[1] + s->cblen[2] + s->cblen[3];
}

/* Check n <= HC_LANES shares in lockstep. They must have the same branch depth and the same
 * number of coinbase blocks left after their start states (check_many groups them so).
 * Lane l pads its coinbase at scratch + l * scratch_size (at least padded_size(its length, 0)). */
static void check_group(const hc_kernel *k, size_t n, const share_in *s,
                        const uint32_t (*start)[8], const size_t *skip, uint8_t *scratch,
                        size_t scratch_size, share_out *o)
{
    uint32_t st[HC_LANES][8], h[HC_LANES][8];
    const uint8_t *p[HC_LANES];
    const header_fields *f[HC_LANES];
    size_t nb = 0;
    for (size_t l = 0; l < n; l++) {
        memcpy(st[l], start[l], 32);
        uint8_t *buf = scratch + l * scratch_size;
        nb = pad_parts(buf, s[l].cb, s[l].cblen, 4, skip[l]);
        p[l] = buf;
        f[l] = &s[l].hdr;
    }
    k->bytes(n, st, p, nb);
    second_hash(k, n, st);
    for (size_t i = 0; i < s[0].depth; i++) {
        for (size_t l = 0; l < n; l++)
            p[l] = s[l].branch[i];
        merkle_step(k, n, st, p);
    }
    header_hash_words(k, n, f, (const uint32_t (*)[8])st, h);
    for (size_t l = 0; l < n; l++) {
        state_to_bytes(h[l], o[l].hash);
        o[l].meets_share = le256_cmp(o[l].hash, s[l].share_target) <= 0;
        o[l].meets_network = le256_cmp(o[l].hash, s[l].network_target) <= 0;
    }
}

/* Check n shares, in groups of up to HC_LANES consecutive shares of the same shape.
 * scratch holds min(n, HC_LANES) buffers of scratch_size >= padded_size(longest coinbase, 0)
 * bytes. */
static void check_many(const hc_kernel *k, const share_in *s, size_t n, uint8_t *scratch,
                       size_t scratch_size, share_out *o)
{
    prefix_cache pc = {0};
    uint32_t start[HC_LANES][8];
    size_t skip[HC_LANES];
    size_t i = 0;
    while (i < n) {
        coinbase_start(k, &pc, &s[i], start[0], &skip[0]);
        size_t tail = padded_size(coinbase_len(&s[i]), skip[0]);
        size_t g = 1;
        while (g < HC_GROUP && i + g < n && s[i + g].depth == s[i].depth) {
            coinbase_start(k, &pc, &s[i + g], start[g], &skip[g]);
            if (padded_size(coinbase_len(&s[i + g]), skip[g]) != tail)
                break;
            g++;
        }
        check_group(k, g, &s[i], (const uint32_t (*)[8])start, skip, scratch, scratch_size, &o[i]);
        i += g;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* 3. Python bindings                                                                          */
/* ------------------------------------------------------------------------------------------ */

static PyObject *g_sequence_abc; /* collections.abc.Sequence */

/* Work above which a call releases the GIL (releasing it costs about as much as a few hashes). */
#define NOGIL_MIN_ITEMS 16
#define NOGIL_MIN_SHARES 4
#define NOGIL_MIN_BYTES 8192

/* A bytes-like argument, valid and unchanging while the GIL is released. A bytes object is
 * borrowed (own == NULL): immutable, and the caller keeps it alive by holding the object it came
 * from (the call's arguments, or a private tuple snapshot of a list). A bytearray or memoryview is
 * copied into a new bytes object, as bytes(value) does in the reference (own != NULL). */
typedef struct {
    PyObject *own;
    const uint8_t *p;
    size_t n;
} barg;

static PyObject *type_name(PyObject *v) { return PyType_GetName(Py_TYPE(v)); }

static int raise_type(const char *name, Py_ssize_t idx, const char *expected, PyObject *v)
{
    PyObject *tn = type_name(v);
    if (!tn)
        return -1;
    if (idx >= 0)
        PyErr_Format(PyExc_TypeError, "%s[%zd] must be %s, not %U", name, idx, expected, tn);
    else
        PyErr_Format(PyExc_TypeError, "%s must be %s, not %U", name, expected, tn);
    Py_DECREF(tn);
    return -1;
}

static int get_bytes(PyObject *v, const char *name, Py_ssize_t idx, Py_ssize_t size, barg *out)
{
    PyObject *b, *own = NULL;
    if (PyBytes_Check(v))
        b = v;
    else if (PyByteArray_Check(v) || PyMemoryView_Check(v))
        b = own = PyBytes_FromObject(v);
    else
        return raise_type(name, idx, "bytes", v);
    if (!b)
        return -1;
    Py_ssize_t n = PyBytes_GET_SIZE(b);
    if (size >= 0 && n != size) {
        Py_XDECREF(own);
        if (idx >= 0)
            PyErr_Format(PyExc_ValueError, "%s[%zd] must be %zd bytes, got %zd", name, idx, size, n);
        else
            PyErr_Format(PyExc_ValueError, "%s must be %zd bytes, got %zd", name, size, n);
        return -1;
    }
    out->own = own;
    out->p = (const uint8_t *)PyBytes_AS_STRING(b);
    out->n = (size_t)n;
    return 0;
}

static inline void barg_release(barg *b) { Py_CLEAR(b->own); }

static int get_u32(PyObject *v, const char *name, uint32_t *out)
{
    if (v == NULL) { /* an omitted optional argument: its default, 0 */
        *out = 0;
        return 0;
    }
    if (!PyLong_Check(v) || PyBool_Check(v))
        return raise_type(name, -1, "int", v);
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (overflow || x < 0 || x > 0xFFFFFFFFLL) {
        PyErr_Format(PyExc_ValueError, "%s must be a uint32 (0..4294967295), got %S", name, v);
        return -1;
    }
    *out = (uint32_t)x;
    return 0;
}

/* isinstance(v, Sequence) and not bytes/bytearray/str, like the reference. */
static int is_sequence(PyObject *v)
{
    if (PyList_Check(v) || PyTuple_Check(v))
        return 1;
    if (PyBytes_Check(v) || PyByteArray_Check(v) || PyUnicode_Check(v))
        return 0;
    return PyObject_IsInstance(v, g_sequence_abc);
}

/* A private tuple snapshot of a sequence argument (nothing can mutate it while it is held), or
 * the reference's TypeError "<name> must be <expected>, not <type>" for a non-sequence. */
static PyObject *sequence_snapshot(PyObject *v, const char *name, const char *expected)
{
    int ok = is_sequence(v);
    if (ok < 0)
        return NULL;
    if (!ok) {
        raise_type(name, -1, expected, v);
        return NULL;
    }
    return PySequence_Tuple(v);
}

/* Growable array of bargs owned by one call. */
typedef struct {
    barg *v;
    size_t n, cap;
} bvec;

static int bvec_push(bvec *b, barg a)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 32;
        barg *nv = PyMem_Realloc(b->v, cap * sizeof(barg));
        if (!nv) {
            Py_XDECREF(a.own);
            PyErr_NoMemory();
            return -1;
        }
        b->v = nv;
        b->cap = cap;
    }
    b->v[b->n++] = a;
    return 0;
}

static void bvec_clear(bvec *b)
{
    for (size_t i = 0; i < b->n; i++)
        barg_release(&b->v[i]);
    PyMem_Free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

/* Parse a merkle branch into vec; its entries are vec->v[*off .. *off + *depth). The tuple
 * snapshot the entries are borrowed from is kept alive in vec too (an entry with p == NULL). */
static int parse_branch(PyObject *branch, bvec *vec, size_t *off, size_t *depth)
{
    PyObject *snap = sequence_snapshot(branch, "branch", "a sequence of 32-byte bytes");
    if (!snap)
        return -1;
    barg hold = {snap, NULL, 0};
    if (bvec_push(vec, hold) < 0)
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(snap);
    *off = vec->n;
    for (Py_ssize_t i = 0; i < n; i++) {
        barg a;
        if (get_bytes(PyTuple_GET_ITEM(snap, i), "branch", i, 32, &a) < 0 || bvec_push(vec, a) < 0)
            return -1;
    }
    *depth = (size_t)n;
    return 0;
}

/* Minimal vectorcall argument binding (positional + keyword), with Python's messages. */
static int bind_args(const char *fname, const char *const *names, Py_ssize_t nreq, Py_ssize_t nmax,
                     PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **out)
{
    for (Py_ssize_t i = 0; i < nmax; i++)
        out[i] = NULL;
    if (nargs > nmax) {
        if (nreq == nmax)
            PyErr_Format(PyExc_TypeError, "%s() takes %zd positional arguments but %zd were given",
                         fname, nmax, nargs);
        else
            PyErr_Format(PyExc_TypeError,
                         "%s() takes from %zd to %zd positional arguments but %zd were given",
                         fname, nreq, nmax, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        out[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, j);
        Py_ssize_t slot = -1;
        for (Py_ssize_t i = 0; i < nmax; i++) {
            if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) {
                slot = i;
                break;
            }
        }
        if (slot < 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, key);
            return -1;
        }
        if (out[slot]) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         names[slot]);
            return -1;
        }
        out[slot] = args[nargs + j];
    }
    for (Py_ssize_t i = 0; i < nreq; i++) {
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    }
    return 0;
}

static PyObject *new_hash(const uint8_t h[32]) { return PyBytes_FromStringAndSize((const char *)h, 32); }

/* --- sha256d, sha256d_many --------------------------------------------------------------- */

static PyObject *py_sha256d(PyObject *self, PyObject *data)
{
    (void)self;
    barg b;
    if (get_bytes(data, "data", -1, -1, &b) < 0)
        return NULL;
    const hc_kernel *k = g_kernel;
    uint8_t out[32];
    if (b.n >= NOGIL_MIN_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        sha256d_any(k, b.p, b.n, out);
        Py_END_ALLOW_THREADS
    } else {
        sha256d_any(k, b.p, b.n, out);
    }
    barg_release(&b);
    return new_hash(out);
}

static void hash_many(const hc_kernel *k, const barg *in, size_t n, uint8_t **out)
{
    size_t i = 0;
    while (i < n) {
        /* Runs of 80-byte headers go through the lanes together. */
        size_t g = 0;
        const uint8_t *h[HC_LANES];
        while (g < HC_LANES && i + g < n && in[i + g].n == 80) {
            h[g] = in[i + g].p;
            g++;
        }
        if (g) {
            uint32_t st[HC_LANES][8];
            sha256d_80(k, g, h, st);
            for (size_t l = 0; l < g; l++)
                state_to_bytes(st[l], out[i + l]);
            i += g;
        } else {
            sha256d_any(k, in[i].p, in[i].n, out[i]);
            i += 1;
        }
    }
}

/* sha256d_many also works in chunks (see check_shares): bounded memory, GIL released per chunk. */
#define HASH_CHUNK 2048

static PyObject *py_sha256d_many(PyObject *self, PyObject *items)
{
    (void)self;
    PyObject *fast = sequence_snapshot(items, "items", "a sequence of bytes");
    if (!fast)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(fast);
    size_t cap = n < HASH_CHUNK ? (size_t)n + 1 : HASH_CHUNK;
    PyObject *result = PyList_New(n);
    barg *in = PyMem_Malloc(cap * sizeof(barg));
    uint8_t **outp = PyMem_Malloc(cap * sizeof(uint8_t *));
    Py_ssize_t parsed = 0; /* entries of `in` holding references */
    const hc_kernel *k = g_kernel;
    if (!result || !in || !outp) {
        if (result)
            PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t base = 0; base < n; base += HASH_CHUNK) {
        Py_ssize_t m = n - base < HASH_CHUNK ? n - base : HASH_CHUNK;
        size_t total = 0;
        for (; parsed < m; parsed++) {
            if (get_bytes(PyTuple_GET_ITEM(fast, base + parsed), "items", base + parsed, -1,
                          &in[parsed]) < 0)
                goto fail;
            total += in[parsed].n;
        }
        for (Py_ssize_t i = 0; i < m; i++) {
            PyObject *h = PyBytes_FromStringAndSize(NULL, 32);
            if (!h)
                goto fail;
            outp[i] = (uint8_t *)PyBytes_AS_STRING(h); /* fresh and private until returned */
            PyList_SET_ITEM(result, base + i, h);
        }
        if (m > NOGIL_MIN_ITEMS || total >= NOGIL_MIN_BYTES) {
            Py_BEGIN_ALLOW_THREADS
            hash_many(k, in, (size_t)m, outp);
            Py_END_ALLOW_THREADS
        } else {
            hash_many(k, in, (size_t)m, outp);
        }
        for (Py_ssize_t i = 0; i < parsed; i++)
            barg_release(&in[i]);
        parsed = 0;
    }
    goto done;
fail:
    Py_CLEAR(result);
done:
    for (Py_ssize_t i = 0; i < parsed; i++)
        barg_release(&in[i]);
    PyMem_Free(in);
    PyMem_Free(outp);
    Py_DECREF(fast);
    return result;
}

/* --- merkle_root, header_hash ------------------------------------------------------------ */

static const char *const MERKLE_ARGS[] = {"coinbase", "branch"};

static PyObject *py_merkle_root(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    (void)self;
    PyObject *a[2];
    if (bind_args("merkle_root", MERKLE_ARGS, 2, 2, args, nargs, kwnames, a) < 0)
        return NULL;
    barg cb;
    bvec vec = {0};
    size_t off = 0, depth = 0;
    if (get_bytes(a[0], "coinbase", -1, -1, &cb) < 0)
        return NULL;
    if (parse_branch(a[1], &vec, &off, &depth) < 0) {
        barg_release(&cb);
        bvec_clear(&vec);
        return NULL;
    }
    const hc_kernel *k = g_kernel;
    uint32_t r[1][8];
    sha256_data(k, cb.p, cb.n, r[0]);
    second_hash(k, 1, r);
    for (size_t i = 0; i < depth; i++) {
        const uint8_t *b = vec.v[off + i].p;
        merkle_step(k, 1, r, &b);
    }
    uint8_t out[32];
    state_to_bytes(r[0], out);
    barg_release(&cb);
    bvec_clear(&vec);
    return new_hash(out);
}

static const char *const HEADER_ARGS[] = {"version", "prevhash", "merkle_root",
                                          "ntime",   "nbits",    "nonce"};

static PyObject *py_header_hash(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    (void)self;
    PyObject *a[6];
    if (bind_args("header_hash", HEADER_ARGS, 6, 6, args, nargs, kwnames, a) < 0)
        return NULL;
    header_fields f;
    barg prev, root;
    if (get_u32(a[0], "version", &f.version) < 0)
        return NULL;
    if (get_bytes(a[1], "prevhash", -1, 32, &prev) < 0)
        return NULL;
    if (get_bytes(a[2], "merkle_root", -1, 32, &root) < 0) {
        barg_release(&prev);
        return NULL;
    }
    PyObject *result = NULL;
    if (get_u32(a[3], "ntime", &f.ntime) < 0 || get_u32(a[4], "nbits", &f.nbits) < 0 ||
        get_u32(a[5], "nonce", &f.nonce) < 0)
        goto done;
    uint32_t rw[1][8], st[1][8];
    for (int i = 0; i < 8; i++) {
        f.prev[i] = load_be32(prev.p + 4 * i);
        rw[0][i] = load_be32(root.p + 4 * i);
    }
    const header_fields *fp = &f;
    header_hash_words(g_kernel, 1, &fp, (const uint32_t (*)[8])rw, st);
    uint8_t out[32];
    state_to_bytes(st[0], out);
    result = new_hash(out);
done:
    barg_release(&prev);
    barg_release(&root);
    return result;
}

/* --- check_share, check_shares ----------------------------------------------------------- */

static const char *const SHARE_ARGS[] = {
    "coinb1", "extranonce1", "extranonce2", "coinb2", "branch", "version", "prevhash",
    "ntime",  "nbits",       "nonce",       "share_target", "network_target", "version_bits",
    "version_mask",
};

/* A share's Python-side parse: the bargs it owns (branch entries live in the shared bvec). */
typedef struct {
    barg b[7]; /* coinb1, extranonce1, extranonce2, coinb2, prevhash, share_target, network_target */
    size_t boff, depth;
    header_fields hdr;
    PyObject *hold; /* check_shares: the item's tuple snapshot the bargs borrow from */
} share_parse;

static size_t parsed_coinbase_len(const share_parse *p)
{
    return p->b[0].n + p->b[1].n + p->b[2].n + p->b[3].n;
}

static void share_parse_release(share_parse *p)
{
    for (int i = 0; i < 7; i++)
        barg_release(&p->b[i]);
    Py_CLEAR(p->hold);
}

/* Validate a[0..13] (a[12], a[13] may be NULL: default 0) in the reference's order.
 * `reuse` (or NULL): an already parsed share whose branch object is a[4]; its entries are shared. */
static int parse_share(PyObject *const *a, bvec *vec, share_parse *p, const share_parse *reuse)
{
    memset(p, 0, sizeof(*p));
    static const char *const cb_names[4] = {"coinb1", "extranonce1", "extranonce2", "coinb2"};
    for (int i = 0; i < 4; i++)
        if (get_bytes(a[i], cb_names[i], -1, -1, &p->b[i]) < 0)
            goto fail;
    if (reuse) {
        p->boff = reuse->boff;
        p->depth = reuse->depth;
    } else if (parse_branch(a[4], vec, &p->boff, &p->depth) < 0) {
        goto fail;
    }
    uint32_t version, mask, bits;
    if (get_u32(a[5], "version", &version) < 0 || get_u32(a[13], "version_mask", &mask) < 0 ||
        get_u32(a[12], "version_bits", &bits) < 0)
        goto fail;
    p->hdr.version = (version & ~mask) | (bits & mask);
    if (get_bytes(a[6], "prevhash", -1, 32, &p->b[4]) < 0)
        goto fail;
    if (get_u32(a[7], "ntime", &p->hdr.ntime) < 0 || get_u32(a[8], "nbits", &p->hdr.nbits) < 0 ||
        get_u32(a[9], "nonce", &p->hdr.nonce) < 0)
        goto fail;
    if (get_bytes(a[10], "share_target", -1, 32, &p->b[5]) < 0 ||
        get_bytes(a[11], "network_target", -1, 32, &p->b[6]) < 0)
        goto fail;
    for (int i = 0; i < 8; i++)
        p->hdr.prev[i] = load_be32(p->b[4].p + 4 * i);
    return 0;
fail:
    share_parse_release(p);
    return -1;
}

/* Fill the GIL-free view of a parsed share. `ptrs` receives the branch pointers. */
static void share_view(const share_parse *p, const bvec *vec, const uint8_t **ptrs, share_in *s)
{
    for (int i = 0; i < 4; i++) {
        s->cb[i] = p->b[i].p;
        s->cblen[i] = p->b[i].n;
    }
    for (size_t i = 0; i < p->depth; i++)
        ptrs[i] = vec->v[p->boff + i].p;
    s->branch = ptrs;
    s->depth = p->depth;
    s->share_target = p->b[5].p;
    s->network_target = p->b[6].p;
    s->hdr = p->hdr;
}

/* (hash, meets_share_target, meets_network_target). It holds only bytes and bools, so it can
 * never be part of a reference cycle: untrack it, sparing the GC from scanning big batches. */
static PyObject *share_result(const share_out *o)
{
    PyObject *h = new_hash(o->hash);
    if (!h)
        return NULL;
    PyObject *t = PyTuple_New(3);
    if (!t) {
        Py_DECREF(h);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, h);
    PyTuple_SET_ITEM(t, 1, Py_NewRef(o->meets_share ? Py_True : Py_False));
    PyTuple_SET_ITEM(t, 2, Py_NewRef(o->meets_network ? Py_True : Py_False));
    PyObject_GC_UnTrack(t);
    return t;
}

static PyObject *py_check_share(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    (void)self;
    PyObject *a[14];
    if (bind_args("check_share", SHARE_ARGS, 12, 14, args, nargs, kwnames, a) < 0)
        return NULL;
    bvec vec = {0};
    share_parse p;
    if (parse_share(a, &vec, &p, NULL) < 0) {
        bvec_clear(&vec);
        return NULL;
    }
    PyObject *result = NULL;
    const uint8_t *stack_ptrs[32];
    const uint8_t **ptrs = p.depth <= 32 ? stack_ptrs : PyMem_Malloc(p.depth * sizeof(uint8_t *));
    share_in s;
    size_t need = padded_size(parsed_coinbase_len(&p), 0);
    uint8_t stack_scratch[1024];
    uint8_t *scratch = need <= sizeof(stack_scratch) ? stack_scratch : PyMem_Malloc(need);
    if (!ptrs || !scratch) {
        PyErr_NoMemory();
        goto done;
    }
    share_view(&p, &vec, ptrs, &s);
    share_out o;
    check_many(g_kernel, &s, 1, scratch, need, &o);
    result = share_result(&o);
done:
    if (ptrs && ptrs != stack_ptrs)
        PyMem_Free(ptrs);
    if (scratch && scratch != stack_scratch)
        PyMem_Free(scratch);
    share_parse_release(&p);
    bvec_clear(&vec);
    return result;
}

/* An argument error (TypeError or ValueError) is re-raised with "items[i]: " in front of its
 * message, same type, as the reference does; any other exception passes through unchanged. */
static void prefix_item_error(Py_ssize_t i)
{
    if (!PyErr_ExceptionMatches(PyExc_TypeError) && !PyErr_ExceptionMatches(PyExc_ValueError))
        return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *msg = value ? PyObject_Str(value) : NULL;
    if (msg) {
        PyErr_Format(type, "items[%zd]: %U", i, msg);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    } else {
        PyErr_Restore(type, value, tb);
    }
    Py_XDECREF(msg);
}

/* check_shares works through the batch in chunks: parse a chunk (GIL held), hash it (GIL
 * released), turn it into results, release it. Memory stays small and cache-resident whatever
 * the batch size, and other threads get the GIL between chunks. */
#define SHARES_CHUNK 256

static PyObject *py_check_shares(PyObject *self, PyObject *items)
{
    (void)self;
    PyObject *fast = sequence_snapshot(items, "items", "a sequence of tuples");
    if (!fast)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(fast);
    PyObject *result = PyList_New(n);
    bvec vec = {0};
    /* One chunk's parses, views and results: about 100 KiB at SHARES_CHUNK, so on the heap (a
     * thread's stack may be 128 KiB or less), sized to the batch when it is shorter. */
    size_t cap = n < SHARES_CHUNK ? (size_t)n + 1 : SHARES_CHUNK;
    share_parse *ps = PyMem_Malloc(cap * sizeof(share_parse));
    share_in *ins = PyMem_Malloc(cap * sizeof(share_in));
    share_out *outs = PyMem_Malloc(cap * sizeof(share_out));
    Py_ssize_t parsed = 0; /* entries of ps holding references */
    const uint8_t **ptrs = NULL;
    size_t ptrs_cap = 0;
    uint8_t *scratch = NULL;
    size_t scratch_size = 0;
    PyObject *prev_branch = NULL;
    const hc_kernel *k = g_kernel;
    if (!result || !ps || !ins || !outs) {
        if (result)
            PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t base = 0; base < n; base += SHARES_CHUNK) {
        Py_ssize_t m = n - base < SHARES_CHUNK ? n - base : SHARES_CHUNK;
        size_t max_cb = 0, nptrs = 0;
        Py_CLEAR(prev_branch);
        for (; parsed < m; parsed++) {
            Py_ssize_t idx = base + parsed;
            PyObject *item = PyTuple_GET_ITEM(fast, idx);
            Py_ssize_t len = (PyTuple_Check(item) || PyList_Check(item)) ? Py_SIZE(item) : -1;
            if (len != 12 && len != 14) {
                PyErr_Format(PyExc_TypeError,
                             "items[%zd] must be a tuple of 12 or 14 check_share arguments", idx);
                goto fail;
            }
            PyObject *args = PySequence_Tuple(item); /* a list item is snapshotted too */
            if (!args)
                goto fail;
            PyObject *a[14] = {0};
            for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(args) && j < 14; j++)
                a[j] = PyTuple_GET_ITEM(args, j);
            /* The same list/tuple object as the previous share's branch: share its parse. */
            const share_parse *reuse = (parsed > 0 && a[4] == prev_branch &&
                                        (PyList_CheckExact(a[4]) || PyTuple_CheckExact(a[4])))
                                           ? &ps[parsed - 1]
                                           : NULL;
            int rc = parse_share(a, &vec, &ps[parsed], reuse);
            Py_XSETREF(prev_branch, Py_NewRef(a[4])); /* held: its identity stays meaningful */
            if (rc < 0) {
                Py_DECREF(args);
                prefix_item_error(idx);
                goto fail;
            }
            ps[parsed].hold = args;
            size_t cbl = parsed_coinbase_len(&ps[parsed]);
            if (cbl > max_cb)
                max_cb = cbl;
            nptrs += ps[parsed].depth;
        }
        if (nptrs + 1 > ptrs_cap) {
            PyMem_Free(ptrs);
            ptrs_cap = nptrs + 1;
            ptrs = PyMem_Malloc(ptrs_cap * sizeof(uint8_t *));
        }
        if (padded_size(max_cb, 0) > scratch_size) {
            PyMem_Free(scratch);
            scratch_size = padded_size(max_cb, 0);
            scratch = PyMem_Malloc(HC_LANES * scratch_size);
        }
        if (!ptrs || !scratch) {
            PyErr_NoMemory();
            goto fail;
        }
        for (Py_ssize_t i = 0, o = 0; i < m; o += ps[i].depth, i++)
            share_view(&ps[i], &vec, ptrs + o, &ins[i]);
        if (m >= NOGIL_MIN_SHARES) {
            Py_BEGIN_ALLOW_THREADS
            check_many(k, ins, (size_t)m, scratch, scratch_size, outs);
            Py_END_ALLOW_THREADS
        } else {
            check_many(k, ins, (size_t)m, scratch, scratch_size, outs);
        }
        for (Py_ssize_t i = 0; i < m; i++) {
            PyObject *t = share_result(&outs[i]);
            if (!t)
                goto fail;
            PyList_SET_ITEM(result, base + i, t);
        }
        for (Py_ssize_t i = 0; i < parsed; i++)
            share_parse_release(&ps[i]);
        parsed = 0;
        bvec_clear(&vec);
    }
    goto done;
fail:
    Py_CLEAR(result);
done:
    Py_XDECREF(prev_branch);
    for (Py_ssize_t i = 0; i < parsed; i++)
        share_parse_release(&ps[i]);
    bvec_clear(&vec);
    PyMem_Free(ps);
    PyMem_Free(ins);
    PyMem_Free(outs);
    PyMem_Free(ptrs);
    PyMem_Free(scratch);
    Py_DECREF(fast);
    return result;
}

/* --- backend selection ------------------------------------------------------------------- */

static PyObject *py_backend(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyUnicode_FromString(g_kernel->name);
}

static PyObject *py_backends(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    const hc_kernel *avail[HC_MAX_KERNELS];
    int n = available_kernels(avail);
    PyObject *names = PyTuple_New(n);
    if (!names)
        return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *s = PyUnicode_FromString(avail[i]->name);
        if (!s) {
            Py_DECREF(names);
            return NULL;
        }
        PyTuple_SET_ITEM(names, i, s);
    }
    return names;
}

static PyObject *py_set_backend(PyObject *self, PyObject *arg)
{
    (void)self;
    if (!PyUnicode_Check(arg)) {
        raise_type("backend", -1, "str", arg);
        return NULL;
    }
    const hc_kernel *avail[HC_MAX_KERNELS], *k = NULL;
    int n = available_kernels(avail);
    if (PyUnicode_CompareWithASCIIString(arg, "auto") == 0)
        k = avail[0];
    else if (PyUnicode_CompareWithASCIIString(arg, "portable") == 0)
        k = &KERNEL_PORTABLE;
    for (int i = 0; i < n && !k; i++)
        if (PyUnicode_CompareWithASCIIString(arg, avail[i]->name) == 0)
            k = avail[i];
    if (!k) {
        PyErr_Format(PyExc_ValueError,
                     "backend must be 'auto', 'portable' or a kernel this CPU supports "
                     "(see _backends()), got %R",
                     arg);
        return NULL;
    }
    g_kernel = k;
    return PyUnicode_FromString(k->name);
}

static PyMethodDef methods[] = {
    {"sha256d", py_sha256d, METH_O, "sha256d(data) -> 32-byte double SHA-256 (internal order)."},
    {"sha256d_many", py_sha256d_many, METH_O,
     "sha256d_many(items) -> list of sha256d(item); hashes with the GIL released."},
    {"merkle_root", (PyCFunction)(void (*)(void))py_merkle_root, METH_FASTCALL | METH_KEYWORDS,
     "merkle_root(coinbase, branch) -> txid of coinbase folded with each branch hash."},
    {"header_hash", (PyCFunction)(void (*)(void))py_header_hash, METH_FASTCALL | METH_KEYWORDS,
     "header_hash(version, prevhash, merkle_root, ntime, nbits, nonce) -> block hash."},
    {"check_share", (PyCFunction)(void (*)(void))py_check_share, METH_FASTCALL | METH_KEYWORDS,
     "check_share(coinb1, extranonce1, extranonce2, coinb2, branch, version, prevhash, ntime, "
     "nbits, nonce, share_target, network_target, version_bits=0, version_mask=0) -> "
     "(hash, meets_share_target, meets_network_target)."},
    {"check_shares", py_check_shares, METH_O,
     "check_shares(items) -> [check_share(*item) for item in items]; hashes with the GIL "
     "released."},
    {"backend", py_backend, METH_NOARGS,
     "backend() -> 'sha-ni', 'armv8-ce' or 'portable-c': the SHA-256 kernel in use."},
    {"_backends", py_backends, METH_NOARGS, "_backends() -> kernels this CPU supports, best first."},
    {"_set_backend", py_set_backend, METH_O,
     "_set_backend('auto' | 'portable' | a name from _backends()) -> the kernel now in use. "
     "For tests and benchmarks."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "stratum._hashcore",
    "C double-SHA256 core (SHA-NI / ARMv8 CE / portable C); API of stratum._hashcore_py.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__hashcore(void)
{
    uint32_t pad[16] = {0x80000000u, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 512};
    schedule_wk(WK_PAD64, pad);
    g_kernel = best_kernel();
    if (!g_sequence_abc) {
        PyObject *abc = PyImport_ImportModule("collections.abc");
        if (!abc)
            return NULL;
        g_sequence_abc = PyObject_GetAttrString(abc, "Sequence");
        Py_DECREF(abc);
        if (!g_sequence_abc)
            return NULL;
    }
    return PyModule_Create(&module);
}
