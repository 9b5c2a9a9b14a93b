// Fused synthesis kernel body (docs/kernel_contract.md). Included by synthesize.cpp once per
// instruction set, inside a namespace and a `#pragma GCC target` region, so the same source is
// compiled for AVX-512, AVX2+FMA and the baseline x86-64 ISA and picked at run time; LSN_SIMD_WIDTH
// (16, 8 or 0) selects the hand-vectorized Philox path. No include guard on purpose.
//
// Layout of the hot path: per image row, Philox fills structure-of-arrays rows of uniforms with
// explicit SIMD (mul-hi/lo through 32x32->64 multiplies, the one thing GCC's vectorizer does
// badly), then branch-free `#pragma omp simd` loops do the float math with the inline
// polynomial exp/log/sincos below; -fno-math-errno (setup.py) makes sqrt/floor single instructions.
//
// Exactness notes (results are compared with the eager PyTorch reference at 1e-5 relative):
// * every sum is evaluated in the same order as lsn_fast/reference.py (translation taps, blur
//   taps, A = (S + U) + L, Cornish-Fisher terms); -ffp-contract=off keeps a*b+c unfused, so every
//   ISA computes the same bits (no FMA anywhere);
// * taps whose weight is exactly 0 are skipped: the reference adds 0*g = +0, which is a no-op;
// * exp/log/sincos are float polynomials within 1 ulp (exp, log) / 1.2e-7 (sincos) of the exact
//   values, agreeing with torch's SLEEF ones on ~98 % / ~96 % / ~80 % of inputs (tests/test_backend_cpu.py
//   bounds them per ISA); the Philox words, uniforms and formulae are exactly the contract's, so the
//   noise stream is the same everywhere and Poisson floor() flips against the reference stay rare.

#define LSN_INL inline __attribute__((always_inline))

LSN_INL uint32_t f2u(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
LSN_INL float u2f(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Branch-free select through integer masks (a float ternary GCC fails to if-convert would
// un-vectorize the whole loop; with -ftrapping-math it often does).
LSN_INL float sel(bool c, float a, float b) {
  uint32_t m = 0u - (uint32_t)c;
  return u2f((f2u(a) & m) | (f2u(b) & ~m));
}

LSN_INL float max_f(float a, float b) { return a > b ? a : b; }
LSN_INL float min_f(float a, float b) { return a < b ? a : b; }
// max that keeps a NaN in its first argument (as torch.clamp_min does): NaN in, NaN out. One
// compare: b > NaN is false, so a NaN a comes back (one maxps with the operands swapped).
LSN_INL float max_nan(float a, float b) { return b > a ? b : a; }
// Correctly rounded (sqrtss/sqrtps; no errno path with -fno-math-errno).
LSN_INL float sqrt_f(float x) { return __builtin_sqrtf(x); }

LSN_INL float floor_f(float x) {
#if LSN_SIMD_WIDTH > 0
  return __builtin_floorf(x);  // roundps (SSE4.1 and up)
#else
  // baseline x86-64 has no roundps: branch-free, exact for every finite float
  const float big = 8388608.0f;  // floats >= 2^23 in magnitude are integers already
  float xc = min_f(max_f(x, -big), big);
  float t = (float)(int32_t)xc;
  float tm1 = t - 1.0f;
  t = sel(t > xc, tm1, t);
  return sel(__builtin_fabsf(x) > big, x, t);
#endif
}

// ---------------------------------------------------------------- transcendental functions
// exp of a float (Cephes expf): n = round(x log2 e), r = x - n ln2 in two parts (n * 0.693359375
// is exact), degree-7 polynomial, times 2^n applied in two halves so that results down to the
// subnormal range and up to overflow come out right. Within 1 ulp everywhere and correctly
// rounded on ~98 % of inputs (torch's SLEEF expf: ~99 %).
LSN_INL float exp_f(float x) {
  const float x0 = x;
  x = min_f(max_f(x, -104.0f), 89.0f);  // exp(-104) < 2^-150 -> +0, exp(89) -> inf
  const float fn = floor_f(x * 1.44269504088896341f + 0.5f);
  const float t = x - fn * 0.693359375f;  // exact
  const float c = fn * -2.12194440e-4f;
  const float r = t - c;
  const float rlo = (t - r) - c;  // rounding error of r (Fast2Sum)
  const float z = r * r;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  // exp(r) = 1 + r + p z with 1 + r split exactly into hi + lo: a single rounding at the end,
  // so the result is the correctly rounded one far more often
  const float hi = 1.0f + r;
  const float lo = ((1.0f - hi) + r) + rlo;
  p = hi + (lo + p * z);
  const int32_t n = (int32_t)fn;  // in [-150, 129]
  const int32_t n1 = n >> 1, n2 = n - n1;
  const float res = (p * u2f((uint32_t)(n1 + 127) << 23)) * u2f((uint32_t)(n2 + 127) << 23);
  return sel(x0 != x0, x0, res);  // the clamp above would turn NaN into exp(-104) = 0
}

// natural log (Cephes logf) for every float: subnormals are scaled by 2^23 first; log(0) = -inf,
// log(x < 0) = NaN, log(inf) = inf, log(NaN) = NaN, as std::log.
LSN_INL float log_f(float x0) {
  const bool sub = x0 < 1.17549435e-38f;  // subnormal, zero or negative
  const float x = sel(sub, x0 * 8388608.0f, x0);  // * 2^23: subnormals become normal
  uint32_t b = f2u(x);
  int32_t e = (int32_t)(b >> 23) - 126;
  float m = u2f((b & 0x007fffffu) | 0x3f000000u);  // [0.5, 1)
  bool small = m < 0.707106781186547524f;
  e = e - (int32_t)small;
  float t = sel(small, m + m, m);
  t = t - 1.0f;
  float z = t * t;
  float y = 7.0376836292E-2f;
  y = y * t - 1.1514610310E-1f;
  y = y * t + 1.1676998740E-1f;
  y = y * t - 1.2420140846E-1f;
  y = y * t + 1.4249322787E-1f;
  y = y * t - 1.6668057665E-1f;
  y = y * t + 2.0000714765E-1f;
  y = y * t - 2.4999993993E-1f;
  y = y * t + 3.3333331174E-1f;
  y = y * t * z;
  float fe = (float)e;
  y = y + fe * -2.12194440e-4f;
  y = y - 0.5f * z;
  float r = t + y;
  r = r + fe * 0.693359375f;
  r = sel(sub, r - 15.9423851f, r);  // 23 ln 2
  const float inf = u2f(0x7f800000u), nan = u2f(0x7fc00000u);
  r = sel(x0 == 0.0f, -inf, r);
  r = sel(x0 < 0.0f, nan, r);
  r = sel(x0 == inf, inf, r);
  return sel(x0 != x0, x0, r);
}

// sin and cos of x >= 0 (here x in [0, 2 pi)), Cephes sinf/cosf with a 3-part Cody-Waite reduction.
LSN_INL void sincos_f(float x, float* s, float* c) {
  int32_t j = (int32_t)(x * 1.27323954473516f);  // 4/pi
  j = (j + 1) & ~1;
  float y = (float)j;
  float r = x - y * 0.78515625f;
  r = r - y * 2.4187564849853515625e-4f;
  r = r - y * 3.77489497744594108e-8f;
  float z = r * r;
  float pc = 2.443315711809948E-5f;
  pc = pc * z - 1.388731625493765E-3f;
  pc = pc * z + 4.166664568298827E-2f;
  pc = pc * z * z;
  pc = pc - 0.5f * z;
  pc = pc + 1.0f;
  float ps = -1.9515295891E-4f;
  ps = ps * z + 8.3321608736E-3f;
  ps = ps * z - 1.6666654611E-1f;
  ps = ps * z * r;
  ps = ps + r;
  bool swap = (j & 2) != 0;
  float sv = sel(swap, pc, ps);
  float cv = sel(swap, ps, pc);
  uint32_t ssign = (uint32_t)(j & 4) << 29;
  uint32_t csign = (uint32_t)(~(j - 2) & 4) << 29;
  *s = u2f(f2u(sv) ^ ssign);
  *c = u2f(f2u(cv) ^ csign);
}

// ---------------------------------------------------------------- 16-bit conversions (RNE)
LSN_INL float half_to_float(uint16_t h) {
  uint32_t o = (uint32_t)(h & 0x7fffu) << 13;
  uint32_t ex = o & 0x0f800000u;
  o += (uint32_t)(127 - 15) << 23;
  float f = u2f(o);
  float fd = u2f(o + (1u << 23)) - u2f(113u << 23);  // subnormal renormalized
  uint32_t r = ex == 0x0f800000u ? o + ((uint32_t)(128 - 16) << 23) : (ex == 0 ? f2u(fd) : f2u(f));
  return u2f(r | ((uint32_t)(h & 0x8000u) << 16));
}
LSN_INL float bf16_to_float(uint16_t h) { return u2f((uint32_t)h << 16); }

LSN_INL uint16_t float_to_half(float f) {
  uint32_t u = f2u(f);
  uint32_t sign = u & 0x80000000u;
  u ^= sign;
  const uint32_t f32infty = 255u << 23, f16max = (127u + 16u) << 23;
  const uint32_t denorm_magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
  uint32_t o_big = u > f32infty ? 0x7e00u : 0x7c00u;
  uint32_t o_den = f2u(u2f(u) + u2f(denorm_magic)) - denorm_magic;
  uint32_t mant_odd = (u >> 13) & 1u;
  uint32_t o_norm = (u + ((uint32_t)(15 - 127) << 23) + 0xfffu + mant_odd) >> 13;
  uint32_t o = u >= f16max ? o_big : (u < (113u << 23) ? o_den : o_norm);
  return (uint16_t)(o | (sign >> 16));
}
LSN_INL uint16_t float_to_bf16(float f) {
  uint32_t u = f2u(f);
  bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  uint32_t r = (u + (((u >> 16) & 1u) + 0x7fffu)) >> 16;
  return nan ? (uint16_t)0x7fc0u : (uint16_t)r;
}

// ---------------------------------------------------------------- Philox-4x32-10
// One Philox round: (c0..c3) <- (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2), hi(M0*c0) ^ c3 ^ k1, lo(M0*c0)).
#define LSN_PHILOX_ROUND(K0, K1)                                   \
  {                                                                \
    uint64_t p0 = (uint64_t)0xD2511F53u * (uint64_t)c0;            \
    uint64_t p1 = (uint64_t)0xCD9E8D57u * (uint64_t)c2;            \
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ (K0);                \
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ (K1);                \
    c1 = (uint32_t)p1;                                             \
    c3 = (uint32_t)p0;                                             \
    c0 = n0;                                                       \
    c2 = n2;                                                       \
  }

// Philox-4x32-10, written out (a loop here keeps GCC from vectorizing the pixel loop around it).
LSN_INL void philox(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1,
                    uint32_t* r0, uint32_t* r1, uint32_t* r2, uint32_t* r3) {
  const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  LSN_PHILOX_ROUND(k0, k1)
  LSN_PHILOX_ROUND(k0 + W0, k1 + W1)
  LSN_PHILOX_ROUND(k0 + 2u * W0, k1 + 2u * W1)
  LSN_PHILOX_ROUND(k0 + 3u * W0, k1 + 3u * W1)
  LSN_PHILOX_ROUND(k0 + 4u * W0, k1 + 4u * W1)
  LSN_PHILOX_ROUND(k0 + 5u * W0, k1 + 5u * W1)
  LSN_PHILOX_ROUND(k0 + 6u * W0, k1 + 6u * W1)
  LSN_PHILOX_ROUND(k0 + 7u * W0, k1 + 7u * W1)
  LSN_PHILOX_ROUND(k0 + 8u * W0, k1 + 8u * W1)
  LSN_PHILOX_ROUND(k0 + 9u * W0, k1 + 9u * W1)
  *r0 = c0;
  *r1 = c1;
  *r2 = c2;
  *r3 = c3;
}
#undef LSN_PHILOX_ROUND

LSN_INL float uniform24(uint32_t r) { return ((float)(int32_t)(r >> 8) + 0.5f) * 5.9604644775390625e-08f; }

// Uniforms u0, u1 of the pixels pix0 .. pix0 + n - 1 (counter (pix, c1, c2, 0), key (k0, k1)), as
// structure-of-arrays rows. The SIMD paths run the same Philox rounds on 16 / 8 uint32 lanes: hi
// words of the 32x32->64 products of even and odd lanes come from two _mul_epu32 and are blended
// back, lo words from one _mullo_epi32 (GCC's own vectorization of the scalar round widens to
// 64-bit lanes and uses vpmullq, ~2x slower). K independent vectors are interleaved because a
// round is a dependency chain (mul -> shift -> blend -> xor): 4 x 16 lanes run ~2x faster than 1
// here. r2/r3 are not needed (the Poisson inversion draws u2 only for its rare small-lambda pixels).
#if LSN_SIMD_WIDTH == 16
LSN_INL __m512i mulhilo16(__m512i a, __m512i m, __m512i* lo) {
  const __m512i pe = _mm512_mul_epu32(a, m);                         // even lanes, 64-bit
  const __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);  // odd lanes, 64-bit
  *lo = _mm512_mullo_epi32(a, m);
  return _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
}
LSN_INL __m512 uniform24_v(__m512i r) {
  __m512 f = _mm512_cvtepi32_ps(_mm512_srli_epi32(r, 8));
  return _mm512_mul_ps(_mm512_add_ps(f, _mm512_set1_ps(0.5f)), _mm512_set1_ps(5.9604644775390625e-08f));
}
template <int K>
LSN_INL void philox_block(uint32_t pix, uint32_t c1, uint32_t c2, const uint32_t* ka, const uint32_t* kb,
                          float* __restrict u0, float* __restrict u1) {
  const __m512i m0 = _mm512_set1_epi32((int)0xD2511F53u), m1 = _mm512_set1_epi32((int)0xCD9E8D57u);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __m512i a0[K], a1[K], a2[K], a3[K];
  for (int j = 0; j < K; ++j) {
    a0[j] = _mm512_add_epi32(_mm512_set1_epi32((int)(pix + 16u * (uint32_t)j)), lane);
    a1[j] = _mm512_set1_epi32((int)c1);
    a2[j] = _mm512_set1_epi32((int)c2);
    a3[j] = _mm512_setzero_si512();
  }
#pragma GCC unroll 10
  for (int i = 0; i < 10; ++i) {
    const __m512i k0 = _mm512_set1_epi32((int)ka[i]), k1 = _mm512_set1_epi32((int)kb[i]);
#pragma GCC unroll 4
    for (int j = 0; j < K; ++j) {
      __m512i lo0, lo1;
      const __m512i hi0 = mulhilo16(a0[j], m0, &lo0), hi1 = mulhilo16(a2[j], m1, &lo1);
      a0[j] = _mm512_ternarylogic_epi32(hi1, a1[j], k0, 0x96);  // 3-way xor
      a2[j] = _mm512_ternarylogic_epi32(hi0, a3[j], k1, 0x96);
      a1[j] = lo1;
      a3[j] = lo0;
    }
  }
  for (int j = 0; j < K; ++j) {
    _mm512_storeu_ps(u0 + 16 * j, uniform24_v(a0[j]));
    _mm512_storeu_ps(u1 + 16 * j, uniform24_v(a1[j]));
  }
}
#elif LSN_SIMD_WIDTH == 8
LSN_INL __m256i mulhilo8(__m256i a, __m256i m, __m256i* lo) {
  const __m256i pe = _mm256_mul_epu32(a, m);
  const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  *lo = _mm256_mullo_epi32(a, m);
  return _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
}
LSN_INL __m256 uniform24_v(__m256i r) {
  __m256 f = _mm256_cvtepi32_ps(_mm256_srli_epi32(r, 8));
  return _mm256_mul_ps(_mm256_add_ps(f, _mm256_set1_ps(0.5f)), _mm256_set1_ps(5.9604644775390625e-08f));
}
template <int K>
LSN_INL void philox_block(uint32_t pix, uint32_t c1, uint32_t c2, const uint32_t* ka, const uint32_t* kb,
                          float* __restrict u0, float* __restrict u1) {
  const __m256i m0 = _mm256_set1_epi32((int)0xD2511F53u), m1 = _mm256_set1_epi32((int)0xCD9E8D57u);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i a0[K], a1[K], a2[K], a3[K];
  for (int j = 0; j < K; ++j) {
    a0[j] = _mm256_add_epi32(_mm256_set1_epi32((int)(pix + 8u * (uint32_t)j)), lane);
    a1[j] = _mm256_set1_epi32((int)c1);
    a2[j] = _mm256_set1_epi32((int)c2);
    a3[j] = _mm256_setzero_si256();
  }
#pragma GCC unroll 10
  for (int i = 0; i < 10; ++i) {
    const __m256i k0 = _mm256_set1_epi32((int)ka[i]), k1 = _mm256_set1_epi32((int)kb[i]);
#pragma GCC unroll 4
    for (int j = 0; j < K; ++j) {
      __m256i lo0, lo1;
      const __m256i hi0 = mulhilo8(a0[j], m0, &lo0), hi1 = mulhilo8(a2[j], m1, &lo1);
      a0[j] = _mm256_xor_si256(_mm256_xor_si256(hi1, a1[j]), k0);
      a2[j] = _mm256_xor_si256(_mm256_xor_si256(hi0, a3[j]), k1);
      a1[j] = lo1;
      a3[j] = lo0;
    }
  }
  for (int j = 0; j < K; ++j) {
    _mm256_storeu_ps(u0 + 8 * j, uniform24_v(a0[j]));
    _mm256_storeu_ps(u1 + 8 * j, uniform24_v(a1[j]));
  }
}
#endif

static void philox_uniforms(uint32_t pix0, int64_t n, uint32_t c1, uint32_t c2, uint32_t k0, uint32_t k1,
                            float* __restrict u0, float* __restrict u1) {
  int64_t x = 0;
#if LSN_SIMD_WIDTH > 0
  constexpr int V = LSN_SIMD_WIDTH;
  constexpr int K = V == 16 ? 4 : 2;  // AVX2 has 16 registers: two interleaved vectors
  uint32_t ka[10], kb[10];            // round keys
  for (int i = 0; i < 10; ++i) {
    ka[i] = k0 + (uint32_t)i * 0x9E3779B9u;
    kb[i] = k1 + (uint32_t)i * 0xBB67AE85u;
  }
  for (; x + K * V <= n; x += K * V) philox_block<K>(pix0 + (uint32_t)x, c1, c2, ka, kb, u0 + x, u1 + x);
  for (; x + V <= n; x += V) philox_block<1>(pix0 + (uint32_t)x, c1, c2, ka, kb, u0 + x, u1 + x);
#endif
  for (; x < n; ++x) {  // tail (and the whole row on the baseline ISA)
    uint32_t r0, r1, r2, r3;
    philox(pix0 + (uint32_t)x, c1, c2, 0u, k0, k1, &r0, &r1, &r2, &r3);
    u0[x] = uniform24(r0);
    u1[x] = uniform24(r1);
  }
}

// ---------------------------------------------------------------- row helpers
// dst[x] = layer row (any storage dtype, any column stride) as float32.
static void load_row(const void* base, int64_t sW, int64_t W, int dtype, float* __restrict dst) {
  if (dtype == DT_F32) {
    const float* p = (const float*)base;
    if (sW == 1) {
      std::memcpy(dst, p, (size_t)W * sizeof(float));
    } else {
      for (int64_t x = 0; x < W; ++x) dst[x] = p[x * sW];
    }
  } else if (dtype == DT_F16) {
    const uint16_t* p = (const uint16_t*)base;
    if (sW == 1) {
#pragma omp simd
      for (int64_t x = 0; x < W; ++x) dst[x] = half_to_float(p[x]);
    } else {
      for (int64_t x = 0; x < W; ++x) dst[x] = half_to_float(p[x * sW]);
    }
  } else {
    const uint16_t* p = (const uint16_t*)base;
    if (sW == 1) {
#pragma omp simd
      for (int64_t x = 0; x < W; ++x) dst[x] = bf16_to_float(p[x]);
    } else {
      for (int64_t x = 0; x < W; ++x) dst[x] = bf16_to_float(p[x * sW]);
    }
  }
}

static void store_row(const float* __restrict src, void* out, int64_t W, int dtype) {
  if (dtype == DT_F32) {
    std::memcpy(out, src, (size_t)W * sizeof(float));
  } else if (dtype == DT_F16) {
    uint16_t* o = (uint16_t*)out;
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) o[x] = float_to_half(src[x]);
  } else {
    uint16_t* o = (uint16_t*)out;
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) o[x] = float_to_bf16(src[x]);
  }
}

// Separable 1-D taps for one sample and one axis: value(i) = sum_t w[t] * v[clamp(i + base + off[t])].
struct Taps {
  int n = 0;           // taps with non-zero weight
  int64_t base = 0;    // integer offset, clamped to a range where clamping is equivalent
  int off[4] = {0, 0, 0, 0};
  float w[4] = {0, 0, 0, 0};
  int lo = 0, hi = 0;  // min / max of off (for the padded row)
};

// Taps for sampling at i + o (o = -displacement) along an axis of length n, the reference's weights.
static Taps make_taps(float o, int64_t n, int interp) {
  Taps t;
  float fb = __builtin_floorf(o);
  float f = o - fb;
  float w[4];
  int off[4];
  int nt;
  if (interp == 0) {
    w[0] = 1.0f - f;
    w[1] = f;
    off[0] = 0;
    off[1] = 1;
    nt = 2;
  } else {
    const float f2 = f * f, f3 = f * f * f;
    // a = -0.5, evaluated exactly as reference._taps does (Python folds the scalar products).
    w[0] = ((-0.5f * f3) - (-1.0f * f2)) + (-0.5f * f);
    w[1] = ((1.5f * f3) - (2.5f * f2)) + 1.0f;
    w[2] = ((-1.5f * f3) + (2.0f * f2)) - (-0.5f * f);
    w[3] = (0.5f * f3) + (-0.5f * f2);
    off[0] = -1;
    off[1] = 0;
    off[2] = 1;
    off[3] = 2;
    nt = 4;
  }
  // every index clamps to an edge once |base| > n + 2: clamp base so int arithmetic stays small.
  double b = (double)fb;
  double lim = (double)n + 3.0;
  b = b < -lim ? -lim : (b > lim ? lim : b);
  t.base = (int64_t)b;
  for (int i = 0; i < nt; ++i) {
    if (w[i] != 0.0f) {
      t.w[t.n] = w[i];
      t.off[t.n] = off[i];
      ++t.n;
    }
  }
  if (t.n == 0) {  // cannot happen (weights sum to 1) but keep the kernel total
    t.w[0] = 1.0f;
    t.off[0] = 0;
    t.n = 1;
  }
  t.lo = t.off[0];
  t.hi = t.off[t.n - 1];
  return t;
}

LSN_INL int64_t clampi(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Clamped borders in place: row[-left .. -1] = row[0], row[W .. W + right - 1] = row[W - 1].
static void extend_row(float* row, int64_t W, int64_t left, int64_t right) {
  const float first = row[0], last = row[W - 1];
  for (int64_t j = 1; j <= left; ++j) row[-j] = first;
  for (int64_t j = 0; j < right; ++j) row[W + j] = last;
}

// out[x] = sum_t w[t] * src[t][x], t = 0 .. n-1 summed in order (the reference's order). N > 0: n
// known at compile time, one pass with the taps in registers; N = 0: any n, one pass per tap.
template <int N>
static void taps_sum_n(int n, const float* const* src, const float* w, int64_t W, float* __restrict out) {
  if (N > 0) {
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) {
      float acc = w[0] * src[0][x];
      for (int t = 1; t < N; ++t) acc = acc + w[t] * src[t][x];
      out[x] = acc;
    }
    return;
  }
  const float* s0 = src[0];
  const float w0 = w[0];
#pragma omp simd
  for (int64_t x = 0; x < W; ++x) out[x] = w0 * s0[x];
  for (int t = 1; t < n; ++t) {
    const float* st = src[t];
    const float wt = w[t];
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) out[x] = out[x] + wt * st[x];
  }
}

static void taps_sum(int n, const float* const* src, const float* w, int64_t W, float* __restrict out) {
  switch (n) {  // translation taps (1-4) and detector-blur kernels (radius <= 4)
    case 1: return taps_sum_n<1>(n, src, w, W, out);
    case 2: return taps_sum_n<2>(n, src, w, W, out);
    case 3: return taps_sum_n<3>(n, src, w, W, out);
    case 4: return taps_sum_n<4>(n, src, w, W, out);
    case 5: return taps_sum_n<5>(n, src, w, W, out);
    case 7: return taps_sum_n<7>(n, src, w, W, out);
    case 9: return taps_sum_n<9>(n, src, w, W, out);
    default: return taps_sum_n<0>(n, src, w, W, out);
  }
}

// Gaussian taps of one sample: radius ceil(3 sigma), weights exp(-0.5 (j/sigma)^2) / sum.
static int gauss_weights(float sigma, std::vector<float>& w) {
  if (!(sigma > 0.0f)) {
    w.assign(1, 1.0f);
    return 0;
  }
  int r = (int)__builtin_ceilf(3.0f * sigma);
  w.resize(2 * r + 1);
  float s = 0.0f;
  for (int k = 0; k < 2 * r + 1; ++k) {
    float j = (float)(k - r);
    float q = j / sigma;
    w[k] = __builtin_expf(-0.5f * (q * q));
  }
  for (int k = 0; k < 2 * r + 1; ++k) s = s + w[k];
  for (int k = 0; k < 2 * r + 1; ++k) w[k] = w[k] / s;
  return r;
}

// ---------------------------------------------------------------- per-thread scratch
struct Scratch {
  std::vector<float> a, b, c, z2, lam, u0, u1, rows, pad;
  std::vector<const float*> ptrs;
  int64_t margin = 0;
  // W: row length; rmax: largest blur radius of the sample.
  void ensure(int64_t W, int64_t rmax) {
    size_t n = (size_t)W + 16;
    if (a.size() < n) {
      for (auto* v : {&a, &b, &c, &z2, &lam, &u0, &u1}) v->resize(n);
      rows.resize(4 * n);
    }
    // translation: |base| <= W + 3 plus 2 taps; blur: r on either side
    margin = std::max<int64_t>(W + 8, rmax + 8);
    if (pad.size() < (size_t)(W + 2 * margin)) pad.resize((size_t)(W + 2 * margin));
    if (ptrs.size() < (size_t)(2 * rmax + 5)) ptrs.resize((size_t)(2 * rmax + 5));
  }
  // a row of W floats with `margin` free floats on either side (for extend_row)
  float* ext() { return pad.data() + margin; }
};

// Blur one output row y of image img (H x W, row-major) with per-sample taps (vertical then
// horizontal, clamped). out: W floats.
static void blur_row(const float* img, int64_t H, int64_t W, int64_t y, const float* w, int r, Scratch& sc,
                     float* __restrict out) {
  const float** src = sc.ptrs.data();
  for (int k = 0; k < 2 * r + 1; ++k) src[k] = img + clampi(y + k - r, 0, H - 1) * W;
  float* row = sc.ext();
  taps_sum(2 * r + 1, src, w, W, row);
  extend_row(row, W, r, r);
  for (int k = 0; k < 2 * r + 1; ++k) src[k] = row + (k - r);
  taps_sum(2 * r + 1, src, w, W, out);
}


// Per-sample constants.
struct Sample {
  const char* soft;  // row 0 of the entry, per layer
  const char* upper;
  const char* lower;
  Taps ty, tx;
  bool has_params = false;
  float n0 = 1.0f, spr = 0.0f, esig = 0.0f;
  int rs = 0, rb = 0;  // scatter / blur radius
  std::vector<float> ws, wb;
  bool rng = false;
  uint32_t c1 = 0, c2 = 0;
};

// Translated row y of the moving layer (rows first, then columns). out: W floats.
static void translate_row(const KernelArgs& a, const char* layer, int ilayer, const Sample& s, int64_t y,
                          Scratch& sc, float* __restrict out) {
  const int64_t H = a.H, W = a.W;
  const int64_t sH = a.strides[ilayer][1], sW = a.strides[ilayer][2];
  const int64_t esz = a.dtype_in == DT_F32 ? 4 : 2;
  const Taps& ty = s.ty;
  const Taps& tx = s.tx;
  const float* src[4];
  for (int i = 0; i < ty.n; ++i) {
    int64_t sy = clampi(y + ty.base + ty.off[i], 0, H - 1);
    const char* rp = layer + sy * sH * esz;
    if (a.dtype_in == DT_F32 && sW == 1) {
      src[i] = (const float*)rp;
    } else {
      float* buf = sc.rows.data() + i * (W + 16);
      load_row(rp, sW, W, a.dtype_in, buf);
      src[i] = buf;
    }
  }
  float* row = sc.ext();
  taps_sum(ty.n, src, ty.w, W, row);
  // columns: out[x] = sum_t w_t row[clamp(x + base + off_t)]
  extend_row(row, W, std::max<int64_t>(0, -(tx.base + tx.lo)), std::max<int64_t>(0, tx.base + tx.hi));
  for (int i = 0; i < tx.n; ++i) src[i] = row + tx.base + tx.off[i];
  taps_sum(tx.n, src, tx.w, W, out);
}


// Quantum noise on one row of expected counts q (in place); z2 of each pixel to z2out.
// mode 0: only z2 (electronic noise), 1: gaussian, 2: poisson. u0b/u1b/lamb: W floats of scratch.
static void noise_row(float* __restrict q, float* __restrict z2out, int64_t W, uint32_t pix0, uint32_t c1,
                      uint32_t c2, uint32_t k0, uint32_t k1, int mode, float* __restrict u0b,
                      float* __restrict u1b, float* __restrict lamb) {
  const float two_pi = 6.28318530717958647692f;
  philox_uniforms(pix0, W, c1, c2, k0, k1, u0b, u1b);
  if (mode == 2) {
    int nsmall = 0;
#pragma omp simd reduction(+ : nsmall)
    for (int64_t x = 0; x < W; ++x) {
      float rho = sqrt_f(-2.0f * log_f(u0b[x]));
      float sn, cs;
      sincos_f(two_pi * u1b[x], &sn, &cs);
      float z1 = rho * cs;
      z2out[x] = rho * sn;
      float lam = max_nan(q[x], 0.0f);
      float v = lam + sqrt_f(lam) * z1;
      v = v + (z1 * z1 - 1.0f) / 6.0f;
      v = v + 0.5f;
      v = floor_f(v);
      v = max_nan(v, 0.0f);
      q[x] = v;
      lamb[x] = lam;
      nsmall += lam < 12.0f ? 1 : 0;
    }
    if (nsmall) {  // inversion for lam < 12: rare at useful doses, so scalar, u2 drawn here
      for (int64_t x = 0; x < W; ++x) {
        float lam = lamb[x];
        if (lam < 12.0f) {
          uint32_t r0, r1, r2, r3;
          philox(pix0 + (uint32_t)x, c1, c2, 0u, k0, k1, &r0, &r1, &r2, &r3);
          float u = uniform24(r2);
          float p = exp_f(-lam);
          float cdf = p;
          float k = 0.0f;
          for (int i = 1; i <= 40; ++i) {
            k = k + (u > cdf ? 1.0f : 0.0f);
            p = p * lam / (float)i;
            cdf = cdf + p;
          }
          q[x] = k;
        }
      }
    }
  } else if (mode == 1) {
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) {
      float rho = sqrt_f(-2.0f * log_f(u0b[x]));
      float sn, cs;
      sincos_f(two_pi * u1b[x], &sn, &cs);
      float z1 = rho * cs;
      z2out[x] = rho * sn;
      float qq = q[x];
      float qc = max_nan(qq, 0.0f);
      q[x] = qq + sqrt_f(qc) * z1;
    }
  } else {
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) {
      float rho = sqrt_f(-2.0f * log_f(u0b[x]));
      float sn, cs;
      sincos_f(two_pi * u1b[x], &sn, &cs);
      z2out[x] = rho * sn;
    }
  }
}

// Final stage of one row: electronic noise, output mapping, cast, store (float32 output is
// written in the same loop).
static void finish_row(const KernelArgs& a, const Sample& s, float* __restrict q, const float* __restrict z2,
                       void* outrow) {
  const int64_t W = a.W;
  if (s.rng && s.esig > 0.0f) {
    const float e = s.esig;
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) q[x] = q[x] + e * z2[x];
  }
  if (a.output_mode == 0) {
    const float mc = a.min_counts, n0 = s.n0;
    float* o = a.dtype_out == DT_F32 ? (float*)outrow : q;
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) {
      float v = max_nan(q[x], mc);
      o[x] = -log_f(v / n0);
    }
    if (a.dtype_out == DT_F32) return;
  }
  store_row(q, outrow, W, a.dtype_out);
}

// ---------------------------------------------------------------- phases
// Layer row y as float32: the bank row itself (float32, unit stride) or converted into buf.
static const float* layer_row(const KernelArgs& a, const char* layer, int ilayer, int64_t y, float* buf) {
  const int64_t esz = a.dtype_in == DT_F32 ? 4 : 2;
  const char* p = layer + y * a.strides[ilayer][1] * esz;
  if (a.dtype_in == DT_F32 && a.strides[ilayer][2] == 1) return (const float*)p;
  load_row(p, a.strides[ilayer][2], a.W, a.dtype_in, buf);
  return buf;
}

// Phase 1 for rows [y0, y1): A' -> (no params: output) or q -> [no scatter: noise] -> Q image
// (or straight to the output when there is no blur either).
static void phase1(const KernelArgs& a, const Sample& s, int64_t b, int64_t y0, int64_t y1, Scratch& sc, float* Q,
                   float* Z2) {
  const int64_t W = a.W;
  const int64_t osz = a.dtype_out == DT_F32 ? 4 : 2;
  const bool ml = a.move_lower;
  const char* mov = ml ? s.lower : s.upper;
  const char* fix = ml ? s.upper : s.lower;
  const int imov = ml ? 2 : 1, ifix = ml ? 1 : 2;
  float* mrow = sc.lam.data();  // free until noise_row, which runs after the sum
  for (int64_t y = y0; y < y1; ++y) {
    const float* srow = layer_row(a, s.soft, 0, y, sc.a.data());
    const float* frow = layer_row(a, fix, ifix, y, sc.b.data());
    translate_row(a, mov, imov, s, y, sc, mrow);
    // A = (S + U') + L in the reference's order: the moving layer is U (second) or L (third)
    const float* t1 = ml ? frow : mrow;
    const float* t2 = ml ? mrow : frow;
    char* outrow = (char*)a.out + (b * a.H + y) * W * osz;
    if (!s.has_params) {
      float* dst = a.dtype_out == DT_F32 ? (float*)outrow : sc.c.data();
#pragma omp simd
      for (int64_t x = 0; x < W; ++x) dst[x] = (srow[x] + t1[x]) + t2[x];
      if (a.dtype_out != DT_F32) store_row(dst, outrow, W, a.dtype_out);
      continue;
    }
    float* dst = (Q != nullptr) ? Q + y * W : sc.c.data();
    const float n0 = s.n0;
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) dst[x] = n0 * exp_f(-((srow[x] + t1[x]) + t2[x]));
    if (s.spr > 0.0f) continue;  // scatter needs the whole q image first
    float* z2 = (Z2 != nullptr && s.esig > 0.0f) ? Z2 + y * W : sc.z2.data();  // z2 is read only when esig > 0
    if (s.rng)
      noise_row(dst, z2, W, (uint32_t)(y * W), s.c1, s.c2, a.k0, a.k1, a.noise_mode, sc.u0.data(), sc.u1.data(),
                sc.lam.data());
    if (s.rb == 0) finish_row(a, s, dst, z2, outrow);
  }
}

// Scatter for rows [y0, y1): T = Q + spr * G_s(Q), then noise -> T (Z2).
static void phase_scatter(const KernelArgs& a, const Sample& s, int64_t y0, int64_t y1, Scratch& sc, const float* Q,
                          float* T, float* Z2, int64_t b) {
  const int64_t W = a.W;
  const int64_t osz = a.dtype_out == DT_F32 ? 4 : 2;
  float* g = sc.a.data();
  const float spr = s.spr;
  for (int64_t y = y0; y < y1; ++y) {
    const float* qr = Q + y * W;
    float* tr = T + y * W;
    if (s.rs > 0) {
      blur_row(Q, a.H, W, y, s.ws.data(), s.rs, sc, g);
    } else {
      std::memcpy(g, qr, (size_t)W * sizeof(float));
    }
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) tr[x] = qr[x] + spr * g[x];
    float* z2 = s.esig > 0.0f ? Z2 + y * W : sc.z2.data();
    if (s.rng)
      noise_row(tr, z2, W, (uint32_t)(y * W), s.c1, s.c2, a.k0, a.k1, a.noise_mode, sc.u0.data(), sc.u1.data(),
                sc.lam.data());
    if (s.rb == 0) finish_row(a, s, tr, z2, (char*)a.out + (b * a.H + y) * W * osz);
  }
}

// Detector blur + finish for rows [y0, y1) from the noisy image N.
static void phase_blur(const KernelArgs& a, const Sample& s, int64_t y0, int64_t y1, Scratch& sc, const float* N,
                       const float* Z2, int64_t b) {
  const int64_t W = a.W;
  const int64_t osz = a.dtype_out == DT_F32 ? 4 : 2;
  float* o = sc.a.data();
  for (int64_t y = y0; y < y1; ++y) {
    blur_row(N, a.H, W, y, s.wb.data(), s.rb, sc, o);
    finish_row(a, s, o, Z2 + y * W, (char*)a.out + (b * a.H + y) * W * osz);
  }
}

static void setup_sample(const KernelArgs& a, int64_t b, Sample& s) {
  const int64_t idx = a.index[b];
  const int64_t esz = a.dtype_in == DT_F32 ? 4 : 2;
  s.soft = (const char*)a.soft + idx * a.strides[0][0] * esz;
  s.upper = (const char*)a.upper + idx * a.strides[1][0] * esz;
  s.lower = (const char*)a.lower + idx * a.strides[2][0] * esz;
  const float dy = a.disp[2 * b], dx = a.disp[2 * b + 1];
  s.ty = make_taps(-dy, a.H, a.interp);
  s.tx = make_taps(-dx, a.W, a.interp);
  s.has_params = a.params != nullptr;
  if (s.has_params) {
    const float* p = a.params + 5 * b;
    s.n0 = p[0];
    s.spr = p[1];
    s.rs = s.spr > 0.0f ? gauss_weights(p[2], s.ws) : 0;
    s.rb = gauss_weights(p[3], s.wb);
    s.esig = p[4];
    s.rng = a.noise_mode != 0 || s.esig > 0.0f;
    const uint64_t si = (uint64_t)a.sample_index[b];
    s.c1 = (uint32_t)(si & 0xffffffffu);
    s.c2 = (uint32_t)(si >> 32);
  }
}

static int64_t max_radius(const Sample& s) { return std::max(s.rs, s.rb); }

// Whole sample on one thread.
static void run_sample_serial(const KernelArgs& a, int64_t b, Scratch& sc, std::vector<float>& Q,
                              std::vector<float>& T, std::vector<float>& Z2) {
  Sample s;
  setup_sample(a, b, s);
  sc.ensure(a.W, max_radius(s));
  const int64_t HW = a.H * a.W;
  if (!s.has_params || (s.spr <= 0.0f && s.rb == 0)) {
    phase1(a, s, b, 0, a.H, sc, nullptr, nullptr);
    return;
  }
  if (Q.size() < (size_t)HW) Q.resize(HW);
  if (Z2.size() < (size_t)HW) Z2.resize(HW);
  phase1(a, s, b, 0, a.H, sc, Q.data(), Z2.data());
  const float* N = Q.data();
  if (s.spr > 0.0f) {
    if (T.size() < (size_t)HW) T.resize(HW);
    phase_scatter(a, s, 0, a.H, sc, Q.data(), T.data(), Z2.data(), b);
    N = T.data();
  }
  if (s.rb > 0) phase_blur(a, s, 0, a.H, sc, N, Z2.data(), b);
}

// ---------------------------------------------------------------- test hooks
// The inline math of this ISA over arrays (lsn_fast._C._test_vmath): fn 0 exp, 1 log, 2 sincos.
static void vmath(int fn, const float* __restrict x, float* __restrict o1, float* __restrict o2, int64_t n) {
  if (fn == 0) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o1[i] = exp_f(x[i]);
  } else if (fn == 1) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o1[i] = log_f(x[i]);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) sincos_f(x[i], &o1[i], &o2[i]);
  }
}

static void run_kernel(const KernelArgs& a) {
  int nt = a.nthreads > 0 ? a.nthreads : 1;
#ifdef _OPENMP
  if (nt > omp_get_max_threads()) nt = omp_get_max_threads();
#else
  nt = 1;
#endif
  if (a.B >= nt || a.B * a.H * a.W < 32768) {
    // one sample per thread at a time
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      Scratch sc;
      std::vector<float> Q, T, Z2;
#pragma omp for schedule(dynamic, 1)
      for (int64_t b = 0; b < a.B; ++b) run_sample_serial(a, b, sc, Q, T, Z2);
    }
    return;
  }
  // few large images: every phase split over row blocks, barriers between phases
  const int64_t HW = a.H * a.W;
  std::vector<float> Q((size_t)HW), T((size_t)HW), Z2((size_t)HW);
  for (int64_t b = 0; b < a.B; ++b) {
    Sample s;
    setup_sample(a, b, s);
    const int64_t rmax = max_radius(s);
    const bool full = s.has_params && !(s.spr <= 0.0f && s.rb == 0);
    const int64_t rb = 8;
    const int64_t nblk = (a.H + rb - 1) / rb;
#pragma omp parallel num_threads(nt)
    {
      Scratch sc;
      sc.ensure(a.W, rmax);
#pragma omp for schedule(dynamic, 1)
      for (int64_t k = 0; k < nblk; ++k)
        phase1(a, s, b, k * rb, std::min(a.H, (k + 1) * rb), sc, full ? Q.data() : nullptr, full ? Z2.data() : nullptr);
      const float* N = Q.data();
      if (full && s.spr > 0.0f) {
#pragma omp for schedule(dynamic, 1)
        for (int64_t k = 0; k < nblk; ++k)
          phase_scatter(a, s, k * rb, std::min(a.H, (k + 1) * rb), sc, Q.data(), T.data(), Z2.data(), b);
        N = T.data();
      }
      if (full && s.rb > 0) {
#pragma omp for schedule(dynamic, 1)
        for (int64_t k = 0; k < nblk; ++k) phase_blur(a, s, k * rb, std::min(a.H, (k + 1) * rb), sc, N, Z2.data(), b);
      }
    }
  }
}

#undef LSN_INL
