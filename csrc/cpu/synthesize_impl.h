// Fused synthesis kernel body (docs/kernel_contract.md). Included by synthesize.cpp once per
// instruction set, inside a namespace and a `#pragma GCC target` region, so the same source is
// compiled for AVX-512, AVX2+FMA and the baseline x86-64 ISA and picked at run time. No include
// guard on purpose. Everything the hot loops call is inline and branch-free so that
// `#pragma omp simd` loops vectorize (exp/log/sincos are Cephes-style polynomials, ~1 ulp).
//
// Exactness notes (results are compared with the eager PyTorch reference at 1e-5 relative):
// * every sum is evaluated in the same order as lsn_fast/reference.py (translation taps, blur
//   taps, A = (S + U) + L, Cornish-Fisher terms); -ffp-contract=off keeps a*b+c unfused;
// * taps whose weight is exactly 0 are skipped: the reference adds 0*g = +0, which is a no-op;
// * the transcendental functions differ from torch's SLEEF ones by ~1 ulp at most.

// Value-safe flags for vectorization: no errno from sqrt, no FP-exception semantics (GCC will not
// if-convert float selects under -ftrapping-math). Neither changes a single result bit.
#define LSN_FN __attribute__((optimize("no-math-errno", "no-trapping-math")))
#define LSN_INL inline __attribute__((always_inline)) LSN_FN

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

// Branch-free select through integer masks (GCC's if-conversion gives up on some float
// ternaries under -ftrapping-math, which un-vectorizes the whole loop).
LSN_INL float sel(bool c, float a, float b) {
  uint32_t m = 0u - (uint32_t)c;
  return u2f((f2u(a) & m) | (f2u(b) & ~m));
}

// std::min/max/sqrt/fabs are not inlined into functions with a different `optimize` attribute:
// use the builtins / plain compares instead.
LSN_INL float max_f(float a, float b) { return a > b ? a : b; }
LSN_INL float min_f(float a, float b) { return a < b ? a : b; }
// Correctly rounded sqrt for x >= 0 without the errno side exit of sqrtf (which stops GCC from
// vectorizing; -fno-math-errno is not among the build flags): rsqrt bit guess, two float Newton
// steps, two double Newton steps, x*y rounded once to float. Checked bit-exact against sqrtf on
// 2.2e7 floats spread over every binade; sqrt(0) = 0.
LSN_INL float sqrt_f(float x) {
  float y = u2f(0x5f375a86u - (f2u(x) >> 1));
  const float hx = 0.5f * x;
  y = y * (1.5f - hx * y * y);
  y = y * (1.5f - hx * y * y);
  const double xd = (double)x;
  double yd = (double)y;
  yd = yd * (1.5 - 0.5 * xd * yd * yd);
  yd = yd * (1.5 - 0.5 * xd * yd * yd);
  return (float)(xd * yd);
}

// floor for any finite float; branch-free (floats >= 2^23 in magnitude are integers already).
LSN_INL float floor_f(float x) {
  const float big = 8388608.0f;
  float xc = min_f(max_f(x, -big), big);
  float t = (float)(int32_t)xc;
  float tm1 = t - 1.0f;
  t = sel(t > xc, tm1, t);
  return sel(__builtin_fabsf(x) > big, x, t);
}

// ---------------------------------------------------------------- transcendental functions
// exp of a float, evaluated in double and rounded once: correctly rounded except with probability
// ~1e-5 (torch's SLEEF expf is correctly rounded ~99% of the time, so the two agree bit for bit
// almost everywhere -- which keeps Poisson floor() flips against the reference rare).
// n = round(x log2 e), r = x - n ln2 (|r| <= 0.35, exact enough in double), degree-10 Taylor.
LSN_INL float exp_f(float xf) {
  double x = (double)min_f(max_f(xf, -104.0f), 89.0f);  // exp(-104) < 2^-150 -> +0, exp(89) -> inf
  double t = x * 1.4426950408889634 + 0.5;
  // floor for |t| < 2^31
  int32_t ti = (int32_t)t;
  ti = ti - (int32_t)((double)ti > t);
  double n = (double)ti;
  double r = x - n * 0.6931471805599453;
  r = r - n * 2.3190468138462996e-17;
  double p = 2.7557319223985893e-07;
  p = p * r + 2.7557319223985888e-06;
  p = p * r + 2.4801587301587302e-05;
  p = p * r + 1.9841269841269841e-04;
  p = p * r + 1.3888888888888889e-03;
  p = p * r + 8.3333333333333332e-03;
  p = p * r + 4.1666666666666664e-02;
  p = p * r + 1.6666666666666666e-01;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  uint64_t bits = (uint64_t)((int64_t)ti + 1023) << 52;
  double sc;
  std::memcpy(&sc, &bits, 8);
  return (float)(p * sc);
}

// natural log for positive normal floats (Cephes logf).
LSN_INL float log_f(float x) {
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
  return r;
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

// ---------------------------------------------------------------- row helpers
// dst[x] = layer row (any storage dtype, any column stride) as float32.
static LSN_FN void load_row(const void* base, int64_t sW, int64_t W, int dtype, float* __restrict dst) {
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

static LSN_FN void store_row(const float* __restrict src, void* out, int64_t W, int dtype) {
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
static LSN_FN Taps make_taps(float o, int64_t n, int interp) {
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

// pad[j] = row[clamp(j + start, 0, W-1)] for j in [0, len)
static LSN_FN void fill_padded(const float* __restrict row, int64_t W, int64_t start, int64_t len, float* __restrict pad) {
  // three segments: left clamp, interior copy, right clamp
  int64_t j = 0;
  const float first = row[0], last = row[W - 1];
  int64_t left_end = clampi(-start, 0, len);  // j < left_end  -> index < 0
  for (; j < left_end; ++j) pad[j] = first;
  int64_t mid_end = clampi(W - start, left_end, len);  // index <= W-1
  if (mid_end > j) {
    std::memcpy(pad + j, row + (j + start), (size_t)(mid_end - j) * sizeof(float));
    j = mid_end;
  }
  for (; j < len; ++j) pad[j] = last;
}

// out[x] = sum_t w[t] * pad[x + off[t] - lo]  (taps summed in order)
static LSN_FN void hpass(const float* __restrict pad, const Taps& t, int64_t W, float* __restrict out) {
  const float* p0 = pad + (t.off[0] - t.lo);
  const float w0 = t.w[0];
#pragma omp simd
  for (int64_t x = 0; x < W; ++x) out[x] = w0 * p0[x];
  for (int i = 1; i < t.n; ++i) {
    const float* p = pad + (t.off[i] - t.lo);
    const float w = t.w[i];
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) out[x] = out[x] + w * p[x];
  }
}

// Gaussian taps of one sample: radius ceil(3 sigma), weights exp(-0.5 (j/sigma)^2) / sum.
static LSN_FN int gauss_weights(float sigma, std::vector<float>& w) {
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

// Blur one output row y of image img (H x W, row-major) with per-sample taps (vertical then
// horizontal, clamped). tmp: W floats; pad: W + 2r floats; out: W floats.
static LSN_FN void blur_row(const float* img, int64_t H, int64_t W, int64_t y, const float* w, int r,
                     float* __restrict tmp, float* __restrict pad, float* __restrict out) {
  {
    const float* row = img + clampi(y - r, 0, H - 1) * W;
    const float w0 = w[0];
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) tmp[x] = w0 * row[x];
    for (int k = 1; k < 2 * r + 1; ++k) {
      const float* rk = img + clampi(y + k - r, 0, H - 1) * W;
      const float wk = w[k];
#pragma omp simd
      for (int64_t x = 0; x < W; ++x) tmp[x] = tmp[x] + wk * rk[x];
    }
  }
  fill_padded(tmp, W, -r, W + 2 * r, pad);
  const float w0 = w[0];
#pragma omp simd
  for (int64_t x = 0; x < W; ++x) out[x] = w0 * pad[x];
  for (int k = 1; k < 2 * r + 1; ++k) {
    const float* p = pad + k;
    const float wk = w[k];
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) out[x] = out[x] + wk * p[x];
  }
}

// ---------------------------------------------------------------- per-thread scratch
struct Scratch {
  std::vector<float> a, b, c, d, pad, lam, u2;
  void ensure(int64_t W, int64_t padlen) {
    size_t n = (size_t)W + 16;
    if (a.size() < n) {
      a.resize(n);
      b.resize(n);
      c.resize(n);
      d.resize(n);
      lam.resize(n);
      u2.resize(n);
    }
    if (pad.size() < (size_t)padlen + 16) pad.resize((size_t)padlen + 16);
  }
};

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
static LSN_FN void translate_row(const KernelArgs& a, const char* layer, int ilayer, const Sample& s, int64_t y,
                          Scratch& sc, float* __restrict out) {
  const int64_t H = a.H, W = a.W;
  const int64_t sH = a.strides[ilayer][1], sW = a.strides[ilayer][2];
  const int64_t esz = a.dtype_in == DT_F32 ? 4 : 2;
  float* tmp = sc.c.data();
  float* rowbuf = sc.d.data();
  const Taps& ty = s.ty;
  const Taps& tx = s.tx;
  for (int i = 0; i < ty.n; ++i) {
    int64_t sy = clampi(y + ty.base + ty.off[i], 0, H - 1);
    const char* rp = layer + sy * sH * esz;
    const float* src;
    if (a.dtype_in == DT_F32 && sW == 1) {
      src = (const float*)rp;
    } else {
      load_row(rp, sW, W, a.dtype_in, rowbuf);
      src = rowbuf;
    }
    const float w = ty.w[i];
    if (i == 0) {
#pragma omp simd
      for (int64_t x = 0; x < W; ++x) tmp[x] = w * src[x];
    } else {
#pragma omp simd
      for (int64_t x = 0; x < W; ++x) tmp[x] = tmp[x] + w * src[x];
    }
  }
  // columns: pad[j] = tmp[clamp(j + base + lo)], j in [0, W + hi - lo)
  int64_t len = W + (tx.hi - tx.lo);
  fill_padded(tmp, W, tx.base + tx.lo, len, sc.pad.data());
  hpass(sc.pad.data(), tx, W, out);
}

// Quantum noise on one row of expected counts q (in place); z2 of each pixel to z2out.
// mode 0: only z2 (electronic noise), 1: gaussian, 2: poisson.
static LSN_FN void noise_row(float* __restrict q, float* __restrict z2out, int64_t W, uint32_t pix0, uint32_t c1,
                      uint32_t c2, uint32_t k0, uint32_t k1, int mode, float* __restrict lamb, float* __restrict u2b) {
  const float two_pi = 6.28318530717958647692f;
  if (mode == 2) {
    int nsmall = 0;
#pragma omp simd reduction(+ : nsmall)
    for (int64_t x = 0; x < W; ++x) {
      uint32_t r0, r1, r2, r3;
      philox(pix0 + (uint32_t)x, c1, c2, 0u, k0, k1, &r0, &r1, &r2, &r3);
      float u0 = uniform24(r0), u1 = uniform24(r1), u2 = uniform24(r2);
      float rho = sqrt_f(-2.0f * log_f(u0));
      float sn, cs;
      sincos_f(two_pi * u1, &sn, &cs);
      float z1 = rho * cs;
      z2out[x] = rho * sn;
      float lam = max_f(q[x], 0.0f);
      float v = lam + sqrt_f(lam) * z1;
      v = v + (z1 * z1 - 1.0f) / 6.0f;
      v = v + 0.5f;
      v = floor_f(v);
      v = max_f(v, 0.0f);
      q[x] = v;
      lamb[x] = lam;
      u2b[x] = u2;
      nsmall += lam < 12.0f ? 1 : 0;
    }
    if (nsmall) {
      for (int64_t x = 0; x < W; ++x) {
        float lam = lamb[x];
        if (lam < 12.0f) {
          float u = u2b[x];
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
      uint32_t r0, r1, r2, r3;
      philox(pix0 + (uint32_t)x, c1, c2, 0u, k0, k1, &r0, &r1, &r2, &r3);
      float u0 = uniform24(r0), u1 = uniform24(r1);
      float rho = sqrt_f(-2.0f * log_f(u0));
      float sn, cs;
      sincos_f(two_pi * u1, &sn, &cs);
      float z1 = rho * cs;
      z2out[x] = rho * sn;
      float qq = q[x];
      float qc = max_f(qq, 0.0f);
      q[x] = qq + sqrt_f(qc) * z1;
    }
  } else {
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) {
      uint32_t r0, r1, r2, r3;
      philox(pix0 + (uint32_t)x, c1, c2, 0u, k0, k1, &r0, &r1, &r2, &r3);
      float u0 = uniform24(r0), u1 = uniform24(r1);
      float rho = sqrt_f(-2.0f * log_f(u0));
      float sn, cs;
      sincos_f(two_pi * u1, &sn, &cs);
      z2out[x] = rho * sn;
    }
  }
}

// Final stage of one row: electronic noise, output mapping, cast, store.
static LSN_FN void finish_row(const KernelArgs& a, const Sample& s, float* __restrict q, const float* __restrict z2,
                       void* outrow) {
  const int64_t W = a.W;
  if (s.rng && s.esig > 0.0f) {
    const float e = s.esig;
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) q[x] = q[x] + e * z2[x];
  }
  if (a.output_mode == 0) {
    const float mc = a.min_counts, n0 = s.n0;
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) {
      float v = max_f(q[x], mc);
      q[x] = -log_f(v / n0);
    }
  }
  store_row(q, outrow, W, a.dtype_out);
}

// ---------------------------------------------------------------- phases
// Phase 1 for rows [y0, y1): A' -> (no params: output) or q -> [no scatter: noise] -> Q image
// (or straight to the output when there is no blur either).
static LSN_FN void phase1(const KernelArgs& a, const Sample& s, int64_t b, int64_t y0, int64_t y1, Scratch& sc, float* Q,
                   float* Z2) {
  const int64_t W = a.W;
  const int64_t esz = a.dtype_in == DT_F32 ? 4 : 2;
  const int64_t osz = a.dtype_out == DT_F32 ? 4 : 2;
  float* srow = sc.a.data();
  float* frow = sc.b.data();
  const bool ml = a.move_lower;
  const char* mov = ml ? s.lower : s.upper;
  const char* fix = ml ? s.upper : s.lower;
  const int imov = ml ? 2 : 1, ifix = ml ? 1 : 2;
  float* mbuf = sc.u2.data();  // u2/lam are free until noise_row, which runs after the sum
  for (int64_t y = y0; y < y1; ++y) {
    const char* sp = s.soft + y * a.strides[0][1] * esz;
    const char* fp = fix + y * a.strides[ifix][1] * esz;
    load_row(sp, a.strides[0][2], W, a.dtype_in, srow);
    load_row(fp, a.strides[ifix][2], W, a.dtype_in, frow);
    translate_row(a, mov, imov, s, y, sc, mbuf);
    float* dst = (Q != nullptr) ? Q + y * W : srow;
    if (ml) {
#pragma omp simd
      for (int64_t x = 0; x < W; ++x) dst[x] = (srow[x] + frow[x]) + mbuf[x];
    } else {
#pragma omp simd
      for (int64_t x = 0; x < W; ++x) dst[x] = (srow[x] + mbuf[x]) + frow[x];
    }
    char* outrow = (char*)a.out + (b * a.H + y) * W * osz;
    if (!s.has_params) {
      store_row(dst, outrow, W, a.dtype_out);
      continue;
    }
    const float n0 = s.n0;
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) dst[x] = n0 * exp_f(-dst[x]);
    if (s.spr > 0.0f) continue;  // scatter needs the whole q image first
    float* z2 = (Z2 != nullptr) ? Z2 + y * W : frow;
    if (s.rng)
      noise_row(dst, z2, W, (uint32_t)(y * W), s.c1, s.c2, a.k0, a.k1, a.noise_mode, sc.lam.data(), sc.u2.data());
    if (s.rb == 0) finish_row(a, s, dst, z2, outrow);
  }
}

// Scatter for rows [y0, y1): T = Q + spr * G_s(Q), then noise -> T (Z2).
static LSN_FN void phase_scatter(const KernelArgs& a, const Sample& s, int64_t y0, int64_t y1, Scratch& sc, const float* Q,
                          float* T, float* Z2, int64_t b) {
  const int64_t W = a.W;
  const int64_t osz = a.dtype_out == DT_F32 ? 4 : 2;
  float* g = sc.a.data();
  const float spr = s.spr;
  for (int64_t y = y0; y < y1; ++y) {
    const float* qr = Q + y * W;
    float* tr = T + y * W;
    if (s.rs > 0) {
      blur_row(Q, a.H, W, y, s.ws.data(), s.rs, sc.c.data(), sc.pad.data(), g);
    } else {
      std::memcpy(g, qr, (size_t)W * sizeof(float));
    }
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) tr[x] = qr[x] + spr * g[x];
    float* z2 = Z2 + y * W;
    if (s.rng)
      noise_row(tr, z2, W, (uint32_t)(y * W), s.c1, s.c2, a.k0, a.k1, a.noise_mode, sc.lam.data(), sc.u2.data());
    if (s.rb == 0) finish_row(a, s, tr, z2, (char*)a.out + (b * a.H + y) * W * osz);
  }
}

// Detector blur + finish for rows [y0, y1) from the noisy image N.
static LSN_FN void phase_blur(const KernelArgs& a, const Sample& s, int64_t y0, int64_t y1, Scratch& sc, const float* N,
                       const float* Z2, int64_t b) {
  const int64_t W = a.W;
  const int64_t osz = a.dtype_out == DT_F32 ? 4 : 2;
  float* o = sc.a.data();
  for (int64_t y = y0; y < y1; ++y) {
    blur_row(N, a.H, W, y, s.wb.data(), s.rb, sc.c.data(), sc.pad.data(), o);
    finish_row(a, s, o, Z2 + y * W, (char*)a.out + (b * a.H + y) * W * osz);
  }
}

static LSN_FN void setup_sample(const KernelArgs& a, int64_t b, Sample& s) {
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

static LSN_FN int64_t pad_len(const KernelArgs& a, const Sample& s) {
  int64_t m = a.W + 8;
  m = std::max<int64_t>(m, a.W + 2 * s.rs + 1);
  m = std::max<int64_t>(m, a.W + 2 * s.rb + 1);
  return m;
}

// Whole sample on one thread.
static LSN_FN void run_sample_serial(const KernelArgs& a, int64_t b, Scratch& sc, std::vector<float>& Q,
                              std::vector<float>& T, std::vector<float>& Z2) {
  Sample s;
  setup_sample(a, b, s);
  sc.ensure(a.W, pad_len(a, s));
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

static LSN_FN void run_kernel(const KernelArgs& a) {
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
    const int64_t plen = pad_len(a, s);
    const bool full = s.has_params && !(s.spr <= 0.0f && s.rb == 0);
    const int64_t rb = 8;
    const int64_t nblk = (a.H + rb - 1) / rb;
#pragma omp parallel num_threads(nt)
    {
      Scratch sc;
      sc.ensure(a.W, plen);
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
#undef LSN_FN
