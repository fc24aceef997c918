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

/* 2-way variants for kernels without an interleaved implementation. */
typedef struct {
    const char *name;
    void (*words)(uint32_t st[8], const uint32_t w[16]);
    void (*bytes)(uint32_t st[8], const uint8_t *p, size_t nblocks);
    void (*wk)(uint32_t st[8], const uint32_t wk[64]);
    void (*words2)(uint32_t sa[8], uint32_t sb[8], const uint32_t wa[16], const uint32_t wb[16]);
    void (*bytes2)(uint32_t sa[8], uint32_t sb[8], const uint8_t *pa, const uint8_t *pb,
                   size_t nblocks);
    void (*wk2)(uint32_t sa[8], uint32_t sb[8], const uint32_t wk[64]);
} hc_kernel;

static void portable_words2(uint32_t sa[8], uint32_t sb[8], const uint32_t wa[16],
                            const uint32_t wb[16])
{
    portable_words(sa, wa);
    portable_words(sb, wb);
}

static void portable_bytes2(uint32_t sa[8], uint32_t sb[8], const uint8_t *pa, const uint8_t *pb,
                            size_t nblocks)
{
    portable_bytes(sa, pa, nblocks);
    portable_bytes(sb, pb, nblocks);
}

static void portable_wk2(uint32_t sa[8], uint32_t sb[8], const uint32_t wk[64])
{
    portable_wk(sa, wk);
    portable_wk(sb, wk);
}

static const hc_kernel KERNEL_PORTABLE = {
    "portable-c", portable_words, portable_bytes, portable_wk,
    portable_words2, portable_bytes2, portable_wk2,
};

/* --- SHA-NI (x86-64) ----------------------------------------------------------------------- */
#ifdef HC_X86
#define SHANI_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* state[8] (a..h) <-> the ABEF / CDGH register pair the sha256rnds2 instruction works on. */
#define SHANI_STATE_IN(st, S0, S1)                                                  \
    do {                                                                            \
        __m128i t_ = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(st)), 0xB1); \
        S1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)((st) + 4)), 0x1B);   \
        S0 = _mm_alignr_epi8(t_, S1, 8);                                            \
        S1 = _mm_blend_epi16(S1, t_, 0xF0);                                         \
    } while (0)

#define SHANI_STATE_OUT(st, S0, S1)                                                 \
    do {                                                                            \
        __m128i t_ = _mm_shuffle_epi32(S0, 0x1B);                                   \
        S1 = _mm_shuffle_epi32(S1, 0xB1);                                           \
        _mm_storeu_si128((__m128i *)(st), _mm_blend_epi16(t_, S1, 0xF0));           \
        _mm_storeu_si128((__m128i *)((st) + 4), _mm_alignr_epi8(S1, t_, 8));        \
    } while (0)

/* Four rounds with the message words (already + K) in WK. */
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

/* One block, message already in M0..M3 (host-order words). */
#define SHANI_BLOCK(S0, S1, M0, M1, M2, M3)                                         \
    do {                                                                            \
        __m128i a0_ = S0, c0_ = S1;                                                 \
        SHANI_4R(S0, S1, _mm_add_epi32(M0, SHANI_K(0)));                            \
        SHANI_4R(S0, S1, _mm_add_epi32(M1, SHANI_K(1)));                            \
        SHANI_4R(S0, S1, _mm_add_epi32(M2, SHANI_K(2)));                            \
        SHANI_4R(S0, S1, _mm_add_epi32(M3, SHANI_K(3)));                            \
        for (int r_ = 4; r_ < 16; r_ += 4) {                                        \
            SHANI_SCHED(M0, M1, M2, M3);                                            \
            SHANI_4R(S0, S1, _mm_add_epi32(M0, SHANI_K(r_)));                       \
            SHANI_SCHED(M1, M2, M3, M0);                                            \
            SHANI_4R(S0, S1, _mm_add_epi32(M1, SHANI_K(r_ + 1)));                   \
            SHANI_SCHED(M2, M3, M0, M1);                                            \
            SHANI_4R(S0, S1, _mm_add_epi32(M2, SHANI_K(r_ + 2)));                   \
            SHANI_SCHED(M3, M0, M1, M2);                                            \
            SHANI_4R(S0, S1, _mm_add_epi32(M3, SHANI_K(r_ + 3)));                   \
        }                                                                           \
        S0 = _mm_add_epi32(S0, a0_);                                                \
        S1 = _mm_add_epi32(S1, c0_);                                                \
    } while (0)

#define SHANI_BLOCK_WK(S0, S1, wk)                                                  \
    do {                                                                            \
        __m128i a0_ = S0, c0_ = S1;                                                 \
        for (int r_ = 0; r_ < 16; r_++)                                             \
            SHANI_4R(S0, S1, _mm_load_si128((const __m128i *)((wk) + 4 * r_)));     \
        S0 = _mm_add_epi32(S0, a0_);                                                \
        S1 = _mm_add_epi32(S1, c0_);                                                \
    } while (0)

#define SHANI_LOADW(w, i) _mm_loadu_si128((const __m128i *)((w) + 4 * (i)))
#define SHANI_LOADB(p, i, mask) _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((p) + 16 * (i))), mask)
#define SHANI_BSWAP_MASK _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL)

SHANI_TARGET static void shani_words(uint32_t st[8], const uint32_t w[16])
{
    __m128i S0, S1;
    SHANI_STATE_IN(st, S0, S1);
    __m128i M0 = SHANI_LOADW(w, 0), M1 = SHANI_LOADW(w, 1), M2 = SHANI_LOADW(w, 2),
            M3 = SHANI_LOADW(w, 3);
    SHANI_BLOCK(S0, S1, M0, M1, M2, M3);
    SHANI_STATE_OUT(st, S0, S1);
}

SHANI_TARGET static void shani_bytes(uint32_t st[8], const uint8_t *p, size_t nblocks)
{
    const __m128i mask = SHANI_BSWAP_MASK;
    __m128i S0, S1;
    SHANI_STATE_IN(st, S0, S1);
    for (; nblocks; nblocks--, p += 64) {
        __m128i M0 = SHANI_LOADB(p, 0, mask), M1 = SHANI_LOADB(p, 1, mask),
                M2 = SHANI_LOADB(p, 2, mask), M3 = SHANI_LOADB(p, 3, mask);
        SHANI_BLOCK(S0, S1, M0, M1, M2, M3);
    }
    SHANI_STATE_OUT(st, S0, S1);
}

SHANI_TARGET static void shani_wk(uint32_t st[8], const uint32_t wk[64])
{
    __m128i S0, S1;
    SHANI_STATE_IN(st, S0, S1);
    SHANI_BLOCK_WK(S0, S1, wk);
    SHANI_STATE_OUT(st, S0, S1);
}

/* 2-way interleaved: two independent dependency chains keep the SHA unit busy while one of them
 * waits on sha256rnds2 latency. */
SHANI_TARGET static void shani_words2(uint32_t sa[8], uint32_t sb[8], const uint32_t wa[16],
                                      const uint32_t wb[16])
{
    __m128i A0, A1, B0, B1;
    SHANI_STATE_IN(sa, A0, A1);
    SHANI_STATE_IN(sb, B0, B1);
    __m128i a0 = A0, a1 = A1, b0 = B0, b1 = B1;
    __m128i MA[4] = {SHANI_LOADW(wa, 0), SHANI_LOADW(wa, 1), SHANI_LOADW(wa, 2),
                     SHANI_LOADW(wa, 3)};
    __m128i MB[4] = {SHANI_LOADW(wb, 0), SHANI_LOADW(wb, 1), SHANI_LOADW(wb, 2),
                     SHANI_LOADW(wb, 3)};
    for (int r = 0; r < 16; r++) {
        int j = r & 3;
        if (r >= 4) {
            SHANI_SCHED(MA[j], MA[(j + 1) & 3], MA[(j + 2) & 3], MA[(j + 3) & 3]);
            SHANI_SCHED(MB[j], MB[(j + 1) & 3], MB[(j + 2) & 3], MB[(j + 3) & 3]);
        }
        SHANI_4R(A0, A1, _mm_add_epi32(MA[j], SHANI_K(r)));
        SHANI_4R(B0, B1, _mm_add_epi32(MB[j], SHANI_K(r)));
    }
    A0 = _mm_add_epi32(A0, a0);
    A1 = _mm_add_epi32(A1, a1);
    B0 = _mm_add_epi32(B0, b0);
    B1 = _mm_add_epi32(B1, b1);
    SHANI_STATE_OUT(sa, A0, A1);
    SHANI_STATE_OUT(sb, B0, B1);
}

SHANI_TARGET static void shani_bytes2(uint32_t sa[8], uint32_t sb[8], const uint8_t *pa,
                                      const uint8_t *pb, size_t nblocks)
{
    const __m128i mask = SHANI_BSWAP_MASK;
    __m128i A0, A1, B0, B1;
    SHANI_STATE_IN(sa, A0, A1);
    SHANI_STATE_IN(sb, B0, B1);
    for (; nblocks; nblocks--, pa += 64, pb += 64) {
        __m128i a0 = A0, a1 = A1, b0 = B0, b1 = B1;
        __m128i MA[4] = {SHANI_LOADB(pa, 0, mask), SHANI_LOADB(pa, 1, mask),
                         SHANI_LOADB(pa, 2, mask), SHANI_LOADB(pa, 3, mask)};
        __m128i MB[4] = {SHANI_LOADB(pb, 0, mask), SHANI_LOADB(pb, 1, mask),
                         SHANI_LOADB(pb, 2, mask), SHANI_LOADB(pb, 3, mask)};
        for (int r = 0; r < 16; r++) {
            int j = r & 3;
            if (r >= 4) {
                SHANI_SCHED(MA[j], MA[(j + 1) & 3], MA[(j + 2) & 3], MA[(j + 3) & 3]);
                SHANI_SCHED(MB[j], MB[(j + 1) & 3], MB[(j + 2) & 3], MB[(j + 3) & 3]);
            }
            SHANI_4R(A0, A1, _mm_add_epi32(MA[j], SHANI_K(r)));
            SHANI_4R(B0, B1, _mm_add_epi32(MB[j], SHANI_K(r)));
        }
        A0 = _mm_add_epi32(A0, a0);
        A1 = _mm_add_epi32(A1, a1);
        B0 = _mm_add_epi32(B0, b0);
        B1 = _mm_add_epi32(B1, b1);
    }
    SHANI_STATE_OUT(sa, A0, A1);
    SHANI_STATE_OUT(sb, B0, B1);
}

SHANI_TARGET static void shani_wk2(uint32_t sa[8], uint32_t sb[8], const uint32_t wk[64])
{
    __m128i A0, A1, B0, B1;
    SHANI_STATE_IN(sa, A0, A1);
    SHANI_STATE_IN(sb, B0, B1);
    __m128i a0 = A0, a1 = A1, b0 = B0, b1 = B1;
    for (int r = 0; r < 16; r++) {
        __m128i k = _mm_load_si128((const __m128i *)(wk + 4 * r));
        SHANI_4R(A0, A1, k);
        SHANI_4R(B0, B1, k);
    }
    A0 = _mm_add_epi32(A0, a0);
    A1 = _mm_add_epi32(A1, a1);
    B0 = _mm_add_epi32(B0, b0);
    B1 = _mm_add_epi32(B1, b1);
    SHANI_STATE_OUT(sa, A0, A1);
    SHANI_STATE_OUT(sb, B0, B1);
}

static const hc_kernel KERNEL_SHANI = {
    "sha-ni", shani_words, shani_bytes, shani_wk, shani_words2, shani_bytes2, shani_wk2,
};

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

HC_ARM_TARGET static void arm_words(uint32_t st[8], const uint32_t w[16])
{
    arm_block(st, vld1q_u32(w), vld1q_u32(w + 4), vld1q_u32(w + 8), vld1q_u32(w + 12));
}

#define ARM_LOADB(p) vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(p)))
HC_ARM_TARGET static void arm_bytes(uint32_t st[8], const uint8_t *p, size_t nblocks)
{
    for (; nblocks; nblocks--, p += 64)
        arm_block(st, ARM_LOADB(p), ARM_LOADB(p + 16), ARM_LOADB(p + 32), ARM_LOADB(p + 48));
}

HC_ARM_TARGET static void arm_wk(uint32_t st[8], const uint32_t wk[64])
{
    uint32x4_t S0 = vld1q_u32(st), S1 = vld1q_u32(st + 4);
    uint32x4_t a0 = S0, c0 = S1;
    for (int r = 0; r < 16; r++)
        ARM_4R(S0, S1, vld1q_u32(wk + 4 * r));
    vst1q_u32(st, vaddq_u32(S0, a0));
    vst1q_u32(st + 4, vaddq_u32(S1, c0));
}

static void arm_words2(uint32_t sa[8], uint32_t sb[8], const uint32_t wa[16], const uint32_t wb[16])
{
    arm_words(sa, wa);
    arm_words(sb, wb);
}

static void arm_bytes2(uint32_t sa[8], uint32_t sb[8], const uint8_t *pa, const uint8_t *pb,
                       size_t nblocks)
{
    arm_bytes(sa, pa, nblocks);
    arm_bytes(sb, pb, nblocks);
}

static void arm_wk2(uint32_t sa[8], uint32_t sb[8], const uint32_t wk[64])
{
    arm_wk(sa, wk);
    arm_wk(sb, wk);
}

static const hc_kernel KERNEL_ARM = {
    "armv8-ce", arm_words, arm_bytes, arm_wk, arm_words2, arm_bytes2, arm_wk2,
};

static int cpu_has_armce(void) { return (getauxval(AT_HWCAP) & HWCAP_SHA2) != 0; }
#endif /* HC_ARM */

/* The fastest kernel this CPU supports. */
static const hc_kernel *best_kernel(void)
{
#ifdef HC_X86
    if (cpu_has_shani())
        return &KERNEL_SHANI;
#endif
#ifdef HC_ARM
    if (cpu_has_armce())
        return &KERNEL_ARM;
#endif
    return &KERNEL_PORTABLE;
}

/* Selected with the GIL held (module init, _set_backend); every call reads it once, with the
 * GIL held, before it releases the GIL. */
static const hc_kernel *g_kernel = &KERNEL_PORTABLE;

/* ------------------------------------------------------------------------------------------ */
/* 2. Bitcoin-shaped double SHA-256                                                            */
/* ------------------------------------------------------------------------------------------ */

/* st holds the first hash's final state; replace it with the second hash's (32-byte message,
 * fed as words straight from the state: no serialisation, fixed padding). */
static inline void second_hash(const hc_kernel *k, uint32_t st[8])
{
    uint32_t w[16] = {st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7],
                      0x80000000u, 0, 0, 0, 0, 0, 0, 256};
    memcpy(st, IV, 32);
    k->words(st, w);
}

static inline void second_hash2(const hc_kernel *k, uint32_t sa[8], uint32_t sb[8])
{
    uint32_t wa[16] = {sa[0], sa[1], sa[2], sa[3], sa[4], sa[5], sa[6], sa[7],
                       0x80000000u, 0, 0, 0, 0, 0, 0, 256};
    uint32_t wb[16] = {sb[0], sb[1], sb[2], sb[3], sb[4], sb[5], sb[6], sb[7],
                       0x80000000u, 0, 0, 0, 0, 0, 0, 256};
    memcpy(sa, IV, 32);
    memcpy(sb, IV, 32);
    k->words2(sa, sb, wa, wb);
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
    size_t nbytes = ((o + 8) / 64 + 1) * 64;
    dst[o] = 0x80;
    memset(dst + o + 1, 0, nbytes - o - 1);
    uint64_t bits = (uint64_t)total * 8;
    for (int i = 0; i < 8; i++)
        dst[nbytes - 1 - i] = (uint8_t)(bits >> (8 * i));
    return nbytes / 64;
}

/* First SHA-256 of arbitrary data. */
static void sha256_data(const hc_kernel *k, const uint8_t *p, size_t n, uint32_t st[8])
{
    uint8_t tail[128];
    size_t full = n / 64;
    memcpy(st, IV, 32);
    if (full)
        k->bytes(st, p, full);
    const uint8_t *rest = p + full * 64;
    size_t rlen = n - full * 64;
    size_t nb = pad_parts(tail, &rest, &rlen, 1, 0);
    /* pad_parts writes the bit length of rlen: fix it to the whole message's. */
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++)
        tail[nb * 64 - 1 - i] = (uint8_t)(bits >> (8 * i));
    k->bytes(st, tail, nb);
}

/* sha256d of an 80-byte block header: one full block, then 16 bytes + constant padding. */
static inline void header_first_words(const uint8_t *h, uint32_t w[16])
{
    w[0] = load_be32(h + 64);
    w[1] = load_be32(h + 68);
    w[2] = load_be32(h + 72);
    w[3] = load_be32(h + 76);
    w[4] = 0x80000000u;
    memset(w + 5, 0, 10 * sizeof(uint32_t));
    w[15] = 640;
}

static void sha256d_80(const hc_kernel *k, const uint8_t *h, uint32_t st[8])
{
    uint32_t w[16];
    memcpy(st, IV, 32);
    k->bytes(st, h, 1);
    header_first_words(h, w);
    k->words(st, w);
    second_hash(k, st);
}

static void sha256d_80x2(const hc_kernel *k, const uint8_t *ha, const uint8_t *hb, uint32_t sa[8],
                         uint32_t sb[8])
{
    uint32_t wa[16], wb[16];
    memcpy(sa, IV, 32);
    memcpy(sb, IV, 32);
    k->bytes2(sa, sb, ha, hb, 1);
    header_first_words(ha, wa);
    header_first_words(hb, wb);
    k->words2(sa, sb, wa, wb);
    second_hash2(k, sa, sb);
}

static void sha256d_any(const hc_kernel *k, const uint8_t *p, size_t n, uint8_t out[32])
{
    uint32_t st[8];
    if (n == 80) {
        sha256d_80(k, p, st);
    } else if (n == 64) {
        memcpy(st, IV, 32);
        k->bytes(st, p, 1);
        k->wk(st, WK_PAD64);
        second_hash(k, st);
    } else {
        sha256_data(k, p, n, st);
        second_hash(k, st);
    }
    state_to_bytes(st, out);
}

/* One merkle step: r <- sha256d(r || b), r as host-order words (a digest's big-endian words). */
static inline void merkle_words(uint32_t w[16], const uint32_t r[8], const uint8_t *b)
{
    memcpy(w, r, 32);
    for (int i = 0; i < 8; i++)
        w[8 + i] = load_be32(b + 4 * i);
}

static void merkle_step(const hc_kernel *k, uint32_t r[8], const uint8_t *b)
{
    uint32_t w[16];
    merkle_words(w, r, b);
    memcpy(r, IV, 32);
    k->words(r, w);
    k->wk(r, WK_PAD64);
    second_hash(k, r);
}

static void merkle_step2(const hc_kernel *k, uint32_t ra[8], uint32_t rb[8], const uint8_t *ba,
                         const uint8_t *bb)
{
    uint32_t wa[16], wb[16];
    merkle_words(wa, ra, ba);
    merkle_words(wb, rb, bb);
    memcpy(ra, IV, 32);
    memcpy(rb, IV, 32);
    k->words2(ra, rb, wa, wb);
    k->wk2(ra, rb, WK_PAD64);
    second_hash2(k, ra, rb);
}

/* The header as two message blocks of words; the merkle root given as words. */
typedef struct {
    uint32_t version, ntime, nbits, nonce;
    uint32_t prev[8]; /* big-endian words of the 32 prevhash header bytes */
} header_fields;

static inline void header_blocks(const header_fields *f, const uint32_t root[8], uint32_t w1[16],
                                 uint32_t w2[16])
{
    w1[0] = bswap32(f->version);
    memcpy(w1 + 1, f->prev, 32);
    memcpy(w1 + 9, root, 28);
    w2[0] = root[7];
    w2[1] = bswap32(f->ntime);
    w2[2] = bswap32(f->nbits);
    w2[3] = bswap32(f->nonce);
    w2[4] = 0x80000000u;
    memset(w2 + 5, 0, 10 * sizeof(uint32_t));
    w2[15] = 640;
}

static void header_hash_words(const hc_kernel *k, const header_fields *f, const uint32_t root[8],
                              uint32_t st[8])
{
    uint32_t w1[16], w2[16];
    header_blocks(f, root, w1, w2);
    memcpy(st, IV, 32);
    k->words(st, w1);
    k->words(st, w2);
    second_hash(k, st);
}

static void header_hash_words2(const hc_kernel *k, const header_fields *fa, const header_fields *fb,
                               const uint32_t ra[8], const uint32_t rb[8], uint32_t sa[8],
                               uint32_t sb[8])
{
    uint32_t a1[16], a2[16], b1[16], b2[16];
    header_blocks(fa, ra, a1, a2);
    header_blocks(fb, rb, b1, b2);
    memcpy(sa, IV, 32);
    memcpy(sb, IV, 32);
    k->words2(sa, sb, a1, b1);
    k->words2(sa, sb, a2, b2);
    second_hash2(k, sa, sb);
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
        k->bytes(pc->st, s->cb[0], blocks);
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

static void finish_share(const share_in *s, const uint32_t st[8], share_out *o)
{
    state_to_bytes(st, o->hash);
    o->meets_share = le256_cmp(o->hash, s->share_target) <= 0;
    o->meets_network = le256_cmp(o->hash, s->network_target) <= 0;
}

/* scratch must hold padded_size(coinbase_len(s), 0) bytes. */
static void check_one(const hc_kernel *k, prefix_cache *pc, const share_in *s, uint8_t *scratch,
                      share_out *o)
{
    uint32_t st[8];
    size_t skip;
    coinbase_start(k, pc, s, st, &skip);
    size_t nb = pad_parts(scratch, s->cb, s->cblen, 4, skip);
    k->bytes(st, scratch, nb);
    second_hash(k, st);
    for (size_t i = 0; i < s->depth; i++)
        merkle_step(k, st, s->branch[i]);
    uint32_t h[8];
    header_hash_words(k, &s->hdr, st, h);
    finish_share(s, h, o);
}

/* Two shares in lockstep; returns 0 (did nothing) unless their shapes match. */
static int check_two(const hc_kernel *k, prefix_cache *pc, const share_in *a, const share_in *b,
                     uint8_t *scratch_a, uint8_t *scratch_b, share_out *oa, share_out *ob)
{
    if (a->depth != b->depth)
        return 0;
    uint32_t sa[8], sb[8];
    size_t skip_a, skip_b;
    coinbase_start(k, pc, a, sa, &skip_a);
    coinbase_start(k, pc, b, sb, &skip_b);
    size_t la = coinbase_len(a) - skip_a, lb = coinbase_len(b) - skip_b;
    if ((la + 8) / 64 != (lb + 8) / 64)
        return 0;
    size_t nb = pad_parts(scratch_a, a->cb, a->cblen, 4, skip_a);
    pad_parts(scratch_b, b->cb, b->cblen, 4, skip_b);
    k->bytes2(sa, sb, scratch_a, scratch_b, nb);
    second_hash2(k, sa, sb);
    for (size_t i = 0; i < a->depth; i++)
        merkle_step2(k, sa, sb, a->branch[i], b->branch[i]);
    uint32_t ha[8], hb[8];
    header_hash_words2(k, &a->hdr, &b->hdr, sa, sb, ha, hb);
    finish_share(a, ha, oa);
    finish_share(b, hb, ob);
    return 1;
}

static void check_many(const hc_kernel *k, const share_in *s, size_t n, uint8_t *scratch_a,
                       uint8_t *scratch_b, share_out *o)
{
    prefix_cache pc = {0};
    size_t i = 0;
    while (i < n) {
        if (i + 1 < n && check_two(k, &pc, &s[i], &s[i + 1], scratch_a, scratch_b, &o[i], &o[i + 1])) {
            i += 2;
        } else {
            check_one(k, &pc, &s[i], scratch_a, &o[i]);
            i += 1;
        }
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

/* A bytes-like argument: a strong reference to a bytes object (bytearray and memoryview are
 * copied, as bytes(value) does in the reference), so the data stays valid and unchanged while
 * the GIL is released. */
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
    PyObject *b;
    if (PyBytes_Check(v))
        b = Py_NewRef(v);
    else if (PyByteArray_Check(v) || PyMemoryView_Check(v))
        b = PyBytes_FromObject(v);
    else
        return raise_type(name, idx, "bytes", v);
    if (!b)
        return -1;
    Py_ssize_t n = PyBytes_GET_SIZE(b);
    if (size >= 0 && n != size) {
        Py_DECREF(b);
        if (idx >= 0)
            PyErr_Format(PyExc_ValueError, "%s[%zd] must be %zd bytes, got %zd", name, idx, size, n);
        else
            PyErr_Format(PyExc_ValueError, "%s must be %zd bytes, got %zd", name, size, n);
        return -1;
    }
    out->own = b;
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
            Py_DECREF(a.own);
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

/* Parse a merkle branch into vec; its entries are vec->v[*off .. *off + *depth). */
static int parse_branch(PyObject *branch, bvec *vec, size_t *off, size_t *depth)
{
    int ok = is_sequence(branch);
    if (ok < 0)
        return -1;
    if (!ok)
        return raise_type("branch", -1, "a sequence of 32-byte bytes", branch);
    PyObject *fast = PySequence_Tuple(branch); /* a private snapshot: nothing can mutate it */
    if (!fast)
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(fast);
    PyObject **items = &PyTuple_GET_ITEM(fast, 0);
    *off = vec->n;
    for (Py_ssize_t i = 0; i < n; i++) {
        barg a;
        if (get_bytes(items[i], "branch", i, 32, &a) < 0 || bvec_push(vec, a) < 0) {
            Py_DECREF(fast);
            return -1;
        }
    }
    *depth = (size_t)n;
    Py_DECREF(fast);
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
        if (i + 1 < n && in[i].n == 80 && in[i + 1].n == 80) {
            uint32_t sa[8], sb[8];
            sha256d_80x2(k, in[i].p, in[i + 1].p, sa, sb);
            state_to_bytes(sa, out[i]);
            state_to_bytes(sb, out[i + 1]);
            i += 2;
        } else {
            sha256d_any(k, in[i].p, in[i].n, out[i]);
            i += 1;
        }
    }
}

static PyObject *py_sha256d_many(PyObject *self, PyObject *items)
{
    (void)self;
    int ok = is_sequence(items);
    if (ok < 0)
        return NULL;
    if (!ok) {
        raise_type("items", -1, "a sequence of bytes", items);
        return NULL;
    }
    PyObject *fast = PySequence_Tuple(items); /* a private snapshot: nothing can mutate it */
    if (!fast)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(fast);
    PyObject **objs = &PyTuple_GET_ITEM(fast, 0);
    PyObject *result = NULL;
    barg *in = PyMem_Calloc((size_t)n + 1, sizeof(barg));
    uint8_t **outp = PyMem_Malloc(((size_t)n + 1) * sizeof(uint8_t *));
    Py_ssize_t parsed = 0;
    size_t total = 0;
    if (!in || !outp) {
        PyErr_NoMemory();
        goto done;
    }
    for (; parsed < n; parsed++) {
        if (get_bytes(objs[parsed], "items", parsed, -1, &in[parsed]) < 0)
            goto done;
        total += in[parsed].n;
    }
    result = PyList_New(n);
    if (!result)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *h = PyBytes_FromStringAndSize(NULL, 32);
        if (!h) {
            Py_CLEAR(result);
            goto done;
        }
        outp[i] = (uint8_t *)PyBytes_AS_STRING(h); /* fresh and private until returned */
        PyList_SET_ITEM(result, i, h);
    }
    const hc_kernel *k = g_kernel;
    if (n > NOGIL_MIN_ITEMS || total >= NOGIL_MIN_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        hash_many(k, in, (size_t)n, outp);
        Py_END_ALLOW_THREADS
    } else {
        hash_many(k, in, (size_t)n, outp);
    }
done:
    if (in)
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
    uint32_t r[8];
    sha256_data(k, cb.p, cb.n, r);
    second_hash(k, r);
    for (size_t i = 0; i < depth; i++)
        merkle_step(k, r, vec.v[off + i].p);
    uint8_t out[32];
    state_to_bytes(r, out);
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
    uint32_t rw[8], st[8];
    for (int i = 0; i < 8; i++) {
        f.prev[i] = load_be32(prev.p + 4 * i);
        rw[i] = load_be32(root.p + 4 * i);
    }
    header_hash_words(g_kernel, &f, rw, st);
    uint8_t out[32];
    state_to_bytes(st, out);
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
} share_parse;

static void share_parse_release(share_parse *p)
{
    for (int i = 0; i < 7; i++)
        barg_release(&p->b[i]);
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

static PyObject *share_result(const share_out *o)
{
    return Py_BuildValue("(y#OO)", (const char *)o->hash, (Py_ssize_t)32,
                         o->meets_share ? Py_True : Py_False, o->meets_network ? Py_True : Py_False);
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
    size_t cblen = p.b[0].n + p.b[1].n + p.b[2].n + p.b[3].n;
    size_t need = padded_size(cblen, 0);
    uint8_t stack_scratch[1024];
    uint8_t *scratch = need <= sizeof(stack_scratch) ? stack_scratch : PyMem_Malloc(need);
    if (!ptrs || !scratch) {
        PyErr_NoMemory();
        goto done;
    }
    share_view(&p, &vec, ptrs, &s);
    share_out o;
    prefix_cache pc = {0};
    check_one(g_kernel, &pc, &s, scratch, &o);
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

/* Re-raise the current exception with "items[i]: " in front of its message, same type. */
static void prefix_item_error(Py_ssize_t i)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *msg = value ? PyObject_Str(value) : NULL;
    if (msg && PyType_IsSubtype((PyTypeObject *)type, (PyTypeObject *)PyExc_Exception)) {
        PyErr_Format(type, "items[%zd]: %U", i, msg);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    } else {
        PyErr_Restore(type, value, tb);
    }
    Py_XDECREF(msg);
}

static PyObject *py_check_shares(PyObject *self, PyObject *items)
{
    (void)self;
    int ok = is_sequence(items);
    if (ok < 0)
        return NULL;
    if (!ok) {
        raise_type("items", -1, "a sequence of tuples", items);
        return NULL;
    }
    PyObject *fast = PySequence_Tuple(items); /* a private snapshot: nothing can mutate it */
    if (!fast)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(fast);
    PyObject **objs = &PyTuple_GET_ITEM(fast, 0);
    PyObject *result = NULL;
    bvec vec = {0};
    Py_ssize_t parsed = 0;
    size_t max_cb = 0;
    share_parse *ps = PyMem_Calloc((size_t)n + 1, sizeof(share_parse));
    share_in *ins = PyMem_Calloc((size_t)n + 1, sizeof(share_in));
    share_out *outs = PyMem_Calloc((size_t)n + 1, sizeof(share_out));
    const uint8_t **ptrs = NULL;
    uint8_t *scratch = NULL;
    PyObject *prev_branch = NULL;
    if (!ps || !ins || !outs) {
        PyErr_NoMemory();
        goto done;
    }
    for (; parsed < n; parsed++) {
        PyObject *item = objs[parsed];
        Py_ssize_t len = (PyTuple_Check(item) || PyList_Check(item)) ? Py_SIZE(item) : -1;
        if (len != 12 && len != 14) {
            PyErr_Format(PyExc_TypeError,
                         "items[%zd] must be a tuple of 12 or 14 check_share arguments", parsed);
            goto done;
        }
        PyObject *args = PySequence_Tuple(item); /* a list item is snapshotted too */
        if (!args)
            goto done;
        PyObject *a[14] = {0};
        for (Py_ssize_t j = 0; j < len; j++)
            a[j] = PyTuple_GET_ITEM(args, j);
        /* The same list/tuple object as the previous share's branch: share its parse. */
        const share_parse *reuse =
            (parsed > 0 && a[4] == prev_branch && (PyList_CheckExact(a[4]) || PyTuple_CheckExact(a[4])))
                ? &ps[parsed - 1]
                : NULL;
        int rc = parse_share(a, &vec, &ps[parsed], reuse);
        Py_XSETREF(prev_branch, Py_NewRef(a[4])); /* held: its identity stays meaningful */
        Py_DECREF(args);
        if (rc < 0) {
            prefix_item_error(parsed);
            goto done;
        }
        size_t cbl = ps[parsed].b[0].n + ps[parsed].b[1].n + ps[parsed].b[2].n + ps[parsed].b[3].n;
        if (cbl > max_cb)
            max_cb = cbl;
    }
    /* Branch pointers: one array for all shares (reused branches are simply listed again). */
    size_t nptrs = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        nptrs += ps[i].depth;
    ptrs = PyMem_Malloc((nptrs + 1) * sizeof(uint8_t *));
    size_t scratch_size = padded_size(max_cb, 0);
    scratch = PyMem_Malloc(2 * scratch_size);
    if (!ptrs || !scratch) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0, o = 0; i < n; o += ps[i].depth, i++)
        share_view(&ps[i], &vec, ptrs + o, &ins[i]);
    const hc_kernel *k = g_kernel;
    if (n >= NOGIL_MIN_SHARES) {
        Py_BEGIN_ALLOW_THREADS
        check_many(k, ins, (size_t)n, scratch, scratch + scratch_size, outs);
        Py_END_ALLOW_THREADS
    } else {
        check_many(k, ins, (size_t)n, scratch, scratch + scratch_size, outs);
    }
    result = PyList_New(n);
    if (!result)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = share_result(&outs[i]);
        if (!t) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, t);
    }
done:
    Py_XDECREF(prev_branch);
    if (ps)
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
    PyObject *names = PyList_New(0);
    if (!names)
        return NULL;
    const hc_kernel *avail[3];
    int n = 0;
#ifdef HC_X86
    if (cpu_has_shani())
        avail[n++] = &KERNEL_SHANI;
#endif
#ifdef HC_ARM
    if (cpu_has_armce())
        avail[n++] = &KERNEL_ARM;
#endif
    avail[n++] = &KERNEL_PORTABLE;
    for (int i = 0; i < n; i++) {
        PyObject *s = PyUnicode_FromString(avail[i]->name);
        if (!s || PyList_Append(names, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(names);
            return NULL;
        }
        Py_DECREF(s);
    }
    PyObject *t = PyList_AsTuple(names);
    Py_DECREF(names);
    return t;
}

static PyObject *py_set_backend(PyObject *self, PyObject *arg)
{
    (void)self;
    if (!PyUnicode_Check(arg)) {
        raise_type("backend", -1, "str", arg);
        return NULL;
    }
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name)
        return NULL;
    const hc_kernel *k = NULL;
    if (strcmp(name, "auto") == 0)
        k = best_kernel();
    else if (strcmp(name, "portable") == 0 || strcmp(name, "portable-c") == 0)
        k = &KERNEL_PORTABLE;
#ifdef HC_X86
    else if (strcmp(name, "sha-ni") == 0 && cpu_has_shani())
        k = &KERNEL_SHANI;
#endif
#ifdef HC_ARM
    else if (strcmp(name, "armv8-ce") == 0 && cpu_has_armce())
        k = &KERNEL_ARM;
#endif
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
