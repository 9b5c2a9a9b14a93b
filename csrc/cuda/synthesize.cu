// The fused synthesis operator in CUDA C++ (docs/kernel_contract.md is the spec,
// lsn_fast/reference.py the ground truth).
//
// Per sample b and pixel (y, x), float32 math:
//   gather S, U, L (storage dtype -> float32)  ->  translate the moving bone (separable, rows
//   first, then columns, edge-clamped linear / Keys-cubic taps)  ->  A = (S + U) + L
//   ->  q = n0 exp(-A)  ->  [scatter]  ->  Philox-4x32-10 normals  ->  quantum noise
//   ->  detector blur (vertical then horizontal)  ->  electronic noise  ->  -log(max(q,m)/n0).
//
// Two paths:
//  * fused (no scatter, blur radius <= kMaxFusedRadius): one block per (sample, 32x32 tile). The
//    block computes the noisy counts of its tile plus a halo of the blur radius into shared
//    memory (noise is keyed by pixel, so the halo is recomputed, never exchanged), blurs
//    vertically into a second shared buffer, then horizontally, adds electronic noise and writes.
//  * multi-pass (any scatter > 0, or a larger blur radius): expected counts -> global buffer,
//    Gaussian passes over global memory, noise, blur, finish. Slower, exact, any sigma.
//
// Accuracy: multiplies and adds use __fmul_rn / __fadd_rn so nvcc never contracts them into
// FMAs: the reference (eager torch) rounds after every operation, and matching its rounding
// keeps the Poisson floor() from flipping. Transcendentals are the accurate CUDA ones
// (expf, logf, sincosf: <= 2 ulp), square roots and divisions are IEEE round-to-nearest.
#include "synthesize.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace lsn_cuda {
namespace {

// Every helper and kernel body is __host__ __device__: the GPU runs them as kernels, and
// emulate() runs the very same code block by block, thread by thread, on the host (the CPU test
// of the kernels' indexing and arithmetic, tests/test_backend_cuda.py).
#define LSN_HD __host__ __device__ __forceinline__

// max that keeps a NaN in its first argument (fmaxf drops it): NaN in, NaN out, as the reference
LSN_HD float fmax_nan(float a, float b) { return a != a ? a : fmaxf(a, b); }
#ifdef __CUDA_ARCH__
#define LSN_UNROLL _Pragma("unroll")
#else
#define LSN_UNROLL
#endif

// ------------------------------------------------------------------------------ arithmetic
#ifdef __CUDA_ARCH__
LSN_HD float mul(float a, float b) { return __fmul_rn(a, b); }
LSN_HD float add(float a, float b) { return __fadd_rn(a, b); }
LSN_HD float sub(float a, float b) { return __fsub_rn(a, b); }
LSN_HD float dvd(float a, float b) { return __fdiv_rn(a, b); }
LSN_HD float sqrt_rn(float a) { return __fsqrt_rn(a); }
LSN_HD unsigned int umulhi(unsigned int a, unsigned int b) { return __umulhi(a, b); }
template <typename T>
LSN_HD T ldg(const T* p) { return __ldg(p); }
#else
LSN_HD float mul(float a, float b) { return a * b; }  // x86-64 host code: no FMA contraction
LSN_HD float add(float a, float b) { return a + b; }
LSN_HD float sub(float a, float b) { return a - b; }
LSN_HD float dvd(float a, float b) { return a / b; }
LSN_HD float sqrt_rn(float a) { return sqrtf(a); }
LSN_HD unsigned int umulhi(unsigned int a, unsigned int b) {
  return static_cast<unsigned int>((static_cast<unsigned long long>(a) * b) >> 32);
}
template <typename T>
LSN_HD T ldg(const T* p) { return *p; }
#endif

template <typename T>
LSN_HD float load_f(const T* p);
template <>
LSN_HD float load_f<float>(const float* p) { return ldg(p); }
template <>
LSN_HD float load_f<__half>(const __half* p) { return __half2float(ldg(p)); }
template <>
LSN_HD float load_f<__nv_bfloat16>(const __nv_bfloat16* p) { return __bfloat162float(ldg(p)); }

template <typename O>
LSN_HD O cast_out(float v);
template <>
LSN_HD float cast_out<float>(float v) { return v; }
template <>
LSN_HD __half cast_out<__half>(float v) { return __float2half_rn(v); }
template <>
LSN_HD __nv_bfloat16 cast_out<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

LSN_HD int clampi(int i, int lo, int hi) { return i < lo ? lo : (i > hi ? hi : i); }

// ------------------------------------------------------------------------------ Philox
constexpr unsigned int kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
constexpr unsigned int kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;

struct Rng {
  float z1, z2, u2;
};

// Philox-4x32-10, counter (pix, s_lo, s_hi, 0), key (k0, k1) -> z1, z2 (Box-Muller) and u2.
LSN_HD Rng detector_rng(unsigned int pix, unsigned int s_lo, unsigned int s_hi,
                                            unsigned int k0, unsigned int k1) {
  unsigned int c0 = pix, c1 = s_lo, c2 = s_hi, c3 = 0u;
LSN_UNROLL
  for (int r = 0; r < 10; ++r) {
    const unsigned int hi0 = umulhi(kM0, c0), lo0 = kM0 * c0;
    const unsigned int hi1 = umulhi(kM1, c2), lo1 = kM1 * c2;
    const unsigned int n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kW0;  // the bump after the last round is never used
    k1 += kW1;
  }
  constexpr float kInv24 = 5.9604644775390625e-08f;  // 2^-24
  const float u0 = mul(add(static_cast<float>(c0 >> 8), 0.5f), kInv24);
  const float u1 = mul(add(static_cast<float>(c1 >> 8), 0.5f), kInv24);
  Rng r;
  r.u2 = mul(add(static_cast<float>(c2 >> 8), 0.5f), kInv24);
  const float rho = sqrt_rn(mul(-2.0f, logf(u0)));
  const float theta = mul(6.283185307179586f, u1);  // float32(2 pi) * u1, as the reference
  float s, c;
  sincosf(theta, &s, &c);
  r.z1 = mul(rho, c);
  r.z2 = mul(rho, s);
  return r;
}

// Quantum noise (contract step 7). mode 0: none, 1: gaussian, 2: poisson.
LSN_HD float quantum_noise(float q, int mode, float z1, float u2) {
  if (mode == 1) return add(q, mul(sqrt_rn(fmax_nan(q, 0.0f)), z1));
  if (mode == 2) {
    const float lam = fmax_nan(q, 0.0f);
    if (lam < 12.0f) {  // POISSON_SMALL_LAMBDA: exact inversion, POISSON_INVERSION_TERMS = 40
      float p = expf(-lam), cdf = p, k = 0.0f;
      for (int i = 1; i <= 40; ++i) {
        k = add(k, u2 > cdf ? 1.0f : 0.0f);
        p = dvd(mul(p, lam), static_cast<float>(i));
        cdf = add(cdf, p);
      }
      return k;
    }
    const float t = add(add(add(lam, mul(sqrt_rn(lam), z1)), dvd(sub(mul(z1, z1), 1.0f), 6.0f)), 0.5f);
    return fmax_nan(floorf(t), 0.0f);
  }
  return q;
}

// ------------------------------------------------------------------------------ translation
template <int INTERP>
struct Taps {
  static constexpr int kN = INTERP ? 4 : 2;
  static constexpr int kFirst = INTERP ? -1 : 0;
  int base;
  float w[kN];
};

// Taps for sampling at i + offset (contract step 2), weights in the reference's operation order.
template <int INTERP>
LSN_HD Taps<INTERP> make_taps(float offset) {
  Taps<INTERP> t;
  const float bf = floorf(offset);
  const float f = sub(offset, bf);
  // |base| beyond 2^30 samples only edge pixels either way; clamping keeps int arithmetic safe.
  t.base = static_cast<int>(fminf(fmaxf(bf, -1073741824.0f), 1073741824.0f));
  if constexpr (INTERP == 0) {
    t.w[0] = sub(1.0f, f);
    t.w[1] = f;
  } else {
    constexpr float a = -0.5f;  // Keys a = -0.5
    const float f2 = mul(f, f), f3 = mul(f2, f);
    t.w[0] = add(sub(mul(a, f3), mul(2.0f * a, f2)), mul(a, f));
    t.w[1] = add(sub(mul(a + 2.0f, f3), mul(a + 3.0f, f2)), 1.0f);
    t.w[2] = sub(add(mul(-(a + 2.0f), f3), mul(2.0f * a + 3.0f, f2)), mul(a, f));
    t.w[3] = add(mul(-a, f3), mul(a, f2));
  }
  return t;
}

template <typename T>
struct Layer {
  const T* p;
  long long s1, s2;
  LSN_HD float at(int y, int x) const {
    return load_f<T>(p + static_cast<long long>(y) * s1 + static_cast<long long>(x) * s2);
  }
};

// Per-sample constants shared by every pixel of a block.
template <typename T, int INTERP>
struct Sample {
  Layer<T> soft, up, lo;  // already offset to the bank entry
  Taps<INTERP> ty, tx;
  int move_lower;
};

template <typename T, int INTERP>
LSN_HD Sample<T, INTERP> load_sample(const SynthArgs& a, long long b) {
  Sample<T, INTERP> s;
  const long long n = a.index[b];
  const T* base[3];
LSN_UNROLL
  for (int l = 0; l < 3; ++l) base[l] = static_cast<const T*>(a.layer[l]) + n * a.stride[l][0];
  s.soft = Layer<T>{base[0], a.stride[0][1], a.stride[0][2]};
  s.up = Layer<T>{base[1], a.stride[1][1], a.stride[1][2]};
  s.lo = Layer<T>{base[2], a.stride[2][1], a.stride[2][2]};
  s.ty = make_taps<INTERP>(-a.disp[2 * b + 0]);
  s.tx = make_taps<INTERP>(-a.disp[2 * b + 1]);
  s.move_lower = a.move_lower;
  return s;
}

// M'(y, x): rows first (column sums over y taps), then columns: the reference's exact order.
template <typename T, int INTERP>
LSN_HD float translated(const Layer<T>& m, const Taps<INTERP>& ty, const Taps<INTERP>& tx,
                                            int y, int x, int H, int W) {
  constexpr int N = Taps<INTERP>::kN, F = Taps<INTERP>::kFirst;
  int yy[N];
LSN_UNROLL
  for (int r = 0; r < N; ++r) yy[r] = clampi(y + ty.base + F + r, 0, H - 1);
  float acc = 0.0f;
LSN_UNROLL
  for (int c = 0; c < N; ++c) {
    const int xx = clampi(x + tx.base + F + c, 0, W - 1);
    float col = mul(ty.w[0], m.at(yy[0], xx));
LSN_UNROLL
    for (int r = 1; r < N; ++r) col = add(col, mul(ty.w[r], m.at(yy[r], xx)));
    const float term = mul(tx.w[c], col);
    acc = c == 0 ? term : add(acc, term);
  }
  return acc;
}

template <typename T, int INTERP>
LSN_HD float attenuation_at(const Sample<T, INTERP>& s, int y, int x, int H, int W) {
  const float S = s.soft.at(y, x);
  float U, L;
  if (s.move_lower) {
    U = s.up.at(y, x);
    L = translated<T, INTERP>(s.lo, s.ty, s.tx, y, x, H, W);
  } else {
    U = translated<T, INTERP>(s.up, s.ty, s.tx, y, x, H, W);
    L = s.lo.at(y, x);
  }
  return add(add(S, U), L);
}

struct Detector {
  float n0, spr, blur_sigma, es;
  unsigned int s_lo, s_hi;
};

LSN_HD Detector load_detector(const SynthArgs& a, long long b) {
  Detector d;
  const float* p = a.params + 5 * b;
  d.n0 = p[0];
  d.spr = p[1];
  d.blur_sigma = p[3];
  d.es = p[4];
  const unsigned long long si = static_cast<unsigned long long>(a.sample_index[b]);
  d.s_lo = static_cast<unsigned int>(si & 0xffffffffull);
  d.s_hi = static_cast<unsigned int>(si >> 32);
  return d;
}

LSN_HD float finish(float q, const Detector& d, int output_mode, float min_counts) {
  if (output_mode == 1) return q;
  return -logf(dvd(fmax_nan(q, min_counts), d.n0));
}

LSN_HD int blur_radius(float sigma) { return static_cast<int>(ceilf(mul(3.0f, sigma))); }

// Normalized Gaussian taps w[0..2r] for j = -r..r (reference.gaussian_weights up to the order of
// the normalizing sum). Run by one thread.
__host__ __device__ void gaussian_taps(float sigma, int r, float* w) {
  if (r == 0) {
    w[0] = 1.0f;
    return;
  }
  const float s = fmaxf(sigma, 1e-12f);
  float sum = 0.0f;
  for (int j = -r; j <= r; ++j) {
    const float v = dvd(static_cast<float>(j), s);
    w[j + r] = expf(mul(-0.5f, mul(v, v)));
    sum = add(sum, w[j + r]);
  }
  for (int j = 0; j <= 2 * r; ++j) w[j] = dvd(w[j], sum);
}

// ------------------------------------------------------------------------------ kernel bodies
// Grid for the per-pixel kernels: blocks_per_sample blocks of kPixThreads threads per sample.
struct PixIdx {
  long long b, pix;
  int y, x;
  bool valid;
};

LSN_HD PixIdx pix_index(long long blk, int tid, long long bps, int H, int W) {
  PixIdx p;
  p.b = blk / bps;
  p.pix = (blk % bps) * kPixThreads + tid;
  p.valid = p.pix < static_cast<long long>(H) * W;
  p.y = p.valid ? static_cast<int>(p.pix / W) : 0;
  p.x = p.valid ? static_cast<int>(p.pix % W) : 0;
  return p;
}

// Noiseless attenuation (params == nullptr) or expected counts q = n0 exp(-A) (counts != 0, O = float).
template <typename T, typename O, int INTERP>
LSN_HD void pointwise_body(const SynthArgs& a, O* out, int counts, long long bps, long long blk, int tid) {
  const PixIdx p = pix_index(blk, tid, bps, a.H, a.W);
  if (!p.valid) return;
  const Sample<T, INTERP> s = load_sample<T, INTERP>(a, p.b);
  float v = attenuation_at<T, INTERP>(s, p.y, p.x, a.H, a.W);
  if (counts) v = mul(a.params[5 * p.b], expf(-v));
  out[p.b * a.H * static_cast<long long>(a.W) + p.pix] = cast_out<O>(v);
}

// Fused tile block (no scatter, blur radius <= kMaxFusedRadius): state shared by the threads of
// one block; the phases are separated by __syncthreads() on the GPU.
template <typename T, typename O, int INTERP>
struct FusedBlock {
  Sample<T, INTERP> s;
  Detector d;
  int r, x0, y0, H, W;
  bool rng;
  O* out;

  LSN_HD void init(const SynthArgs& a, long long blk, int tiles_x, int tiles_per_sample) {
    const long long b = blk / tiles_per_sample;
    const int tile = static_cast<int>(blk % tiles_per_sample);
    x0 = (tile % tiles_x) * kTileW;
    y0 = (tile / tiles_x) * kTileH;
    H = a.H;
    W = a.W;
    s = load_sample<T, INTERP>(a, b);
    d = load_detector(a, b);
    r = blur_radius(d.blur_sigma);
    r = r > a.blur_radius ? a.blur_radius : r;  // never beyond the shared memory the host sized
    rng = a.noise_mode != 0 || d.es > 0.0f;
    out = static_cast<O*>(a.out) + b * static_cast<long long>(H) * W;
  }

  LSN_HD float noisy_counts(const SynthArgs& a, int y, int x, float* z2) const {
    float q = mul(d.n0, expf(-attenuation_at<T, INTERP>(s, y, x, H, W)));
    if (rng) {
      const Rng z = detector_rng(static_cast<unsigned int>(y * W + x), d.s_lo, d.s_hi, a.key0, a.key1);
      q = quantum_noise(q, a.noise_mode, z.z1, z.u2);
      *z2 = z.z2;
    }
    return q;
  }

  // r == 0 (no blur): every pixel on its own, no shared memory.
  LSN_HD void direct(const SynthArgs& a, int tid) const {
    for (int i = tid; i < kTileH * kTileW; i += kThreads) {
      const int y = y0 + i / kTileW, x = x0 + i % kTileW;
      if (y >= H || x >= W) continue;
      float z2 = 0.0f;
      float q = noisy_counts(a, y, x, &z2);
      if (rng) q = add(q, mul(d.es, z2));
      out[static_cast<long long>(y) * W + x] = cast_out<O>(finish(q, d, a.output_mode, a.min_counts));
    }
  }

  // shared memory: taps [36] | region (RH x RW) | vertical (kTileH x RW) | z2 (kTileH x kTileW)
  LSN_HD int rw() const { return kTileW + 2 * r; }
  LSN_HD int rh() const { return kTileH + 2 * r; }
  LSN_HD float* region(float* smem) const { return smem + 36; }
  LSN_HD float* vert(float* smem) const { return region(smem) + rh() * rw(); }
  LSN_HD float* z2s(float* smem) const { return vert(smem) + kTileH * rw(); }

  // 1. noisy counts over the tile + halo, edge-clamped pixels (as the reference's blur indices);
  //    thread 0 also writes the Gaussian taps.
  LSN_HD void phase1(const SynthArgs& a, int tid, float* smem) const {
    if (tid == 0) gaussian_taps(d.blur_sigma, r, smem);
    const int RW = rw(), RH = rh();
    float* reg = region(smem);
    float* z2 = z2s(smem);
    for (int i = tid; i < RH * RW; i += kThreads) {
      const int ry = i / RW, rx = i - ry * RW;
      const int y = clampi(y0 - r + ry, 0, H - 1), x = clampi(x0 - r + rx, 0, W - 1);
      float zz = 0.0f;
      reg[i] = noisy_counts(a, y, x, &zz);
      const int ty = ry - r, tx = rx - r;
      if (rng && ty >= 0 && ty < kTileH && tx >= 0 && tx < kTileW) z2[ty * kTileW + tx] = zz;
    }
  }

  // 2. vertical pass (along H) over every region column
  LSN_HD void phase2(int tid, float* smem) const {
    const int RW = rw(), nt = 2 * r + 1;
    const float* w = smem;
    const float* reg = region(smem);
    float* v = vert(smem);
    for (int i = tid; i < kTileH * RW; i += kThreads) {
      const int ty = i / RW, rx = i - ty * RW;
      const float* col = reg + ty * RW + rx;
      float acc = mul(w[0], col[0]);
      for (int t = 1; t < nt; ++t) acc = add(acc, mul(w[t], col[t * RW]));
      v[i] = acc;
    }
  }

  // 3. horizontal pass, electronic noise, output
  LSN_HD void phase3(const SynthArgs& a, int tid, float* smem) const {
    const int RW = rw(), nt = 2 * r + 1;
    const float* w = smem;
    const float* v = vert(smem);
    const float* z2 = z2s(smem);
    for (int i = tid; i < kTileH * kTileW; i += kThreads) {
      const int ty = i / kTileW, tx = i - ty * kTileW;
      const int y = y0 + ty, x = x0 + tx;
      if (y >= H || x >= W) continue;
      const float* row = v + ty * RW + tx;
      float q = mul(w[0], row[0]);
      for (int t = 1; t < nt; ++t) q = add(q, mul(w[t], row[t]));
      if (rng) q = add(q, mul(d.es, z2[i]));
      out[static_cast<long long>(y) * W + x] = cast_out<O>(finish(q, d, a.output_mode, a.min_counts));
    }
  }
};

// Multi-pass: one Gaussian pass over global memory (axis 0 = along H, 1 = along W) with the
// reference's per-sample tap weights (B, 2R+1); each sample uses its own radius ceil(3 sigma).
LSN_HD void blur_pass_body(const float* in, float* out, const float* params, int col, const float* weights, int R,
                           int axis, int H, int W, long long bps, long long blk, int tid) {
  const PixIdx p = pix_index(blk, tid, bps, H, W);
  if (!p.valid) return;
  const long long HW = static_cast<long long>(H) * W;
  int r = blur_radius(params[5 * p.b + col]);
  r = r > R ? R : r;
  const float* w = weights + p.b * (2 * R + 1) + (R - r);
  const float* src = in + p.b * HW;
  float acc = 0.0f;
  for (int t = -r; t <= r; ++t) {
    const float v = axis == 0 ? ldg(src + static_cast<long long>(clampi(p.y + t, 0, H - 1)) * W + p.x)
                              : ldg(src + static_cast<long long>(p.y) * W + clampi(p.x + t, 0, W - 1));
    const float term = mul(w[t + r], v);
    acc = t == -r ? term : add(acc, term);
  }
  out[p.b * HW + p.pix] = acc;
}

// Multi-pass: q = q0 (+ scatter * G(q0)), then quantum noise.
LSN_HD void noise_body(const SynthArgs& a, const float* q0, const float* g, float* out, long long bps, long long blk,
                       int tid) {
  const PixIdx p = pix_index(blk, tid, bps, a.H, a.W);
  if (!p.valid) return;
  const long long i = p.b * a.H * static_cast<long long>(a.W) + p.pix;
  const Detector d = load_detector(a, p.b);
  float q = q0[i];
  if (g != nullptr) q = add(q, mul(d.spr, g[i]));
  if (a.noise_mode != 0) {
    const Rng z = detector_rng(static_cast<unsigned int>(p.pix), d.s_lo, d.s_hi, a.key0, a.key1);
    q = quantum_noise(q, a.noise_mode, z.z1, z.u2);
  }
  out[i] = q;
}

// Multi-pass: horizontal blur pass of the vertically blurred noisy counts, electronic noise, output.
template <typename O>
LSN_HD void finish_body(const SynthArgs& a, const float* vin, long long bps, long long blk, int tid) {
  const PixIdx p = pix_index(blk, tid, bps, a.H, a.W);
  if (!p.valid) return;
  const int W = a.W;
  const long long HW = static_cast<long long>(a.H) * W;
  const Detector d = load_detector(a, p.b);
  const int R = a.blur_radius;
  int r = blur_radius(d.blur_sigma);
  r = r > R ? R : r;
  const float* w = a.blur_weights + p.b * (2 * R + 1) + (R - r);
  const float* src = vin + p.b * HW + static_cast<long long>(p.y) * W;
  float q = mul(w[0], ldg(src + clampi(p.x - r, 0, W - 1)));
  for (int t = -r + 1; t <= r; ++t) q = add(q, mul(w[t + r], ldg(src + clampi(p.x + t, 0, W - 1))));
  if (a.noise_mode != 0 || d.es > 0.0f) {
    const Rng z = detector_rng(static_cast<unsigned int>(p.pix), d.s_lo, d.s_hi, a.key0, a.key1);
    q = add(q, mul(d.es, z.z2));
  }
  static_cast<O*>(a.out)[p.b * HW + p.pix] = cast_out<O>(finish(q, d, a.output_mode, a.min_counts));
}

// ------------------------------------------------------------------------------ kernels
template <typename T, typename O, int INTERP>
__global__ void __launch_bounds__(kPixThreads) pointwise_kernel(SynthArgs a, O* __restrict__ out, int counts,
                                                                long long bps) {
  pointwise_body<T, O, INTERP>(a, out, counts, bps, blockIdx.x, threadIdx.x);
}

template <typename T, typename O, int INTERP>
__global__ void __launch_bounds__(kThreads) fused_kernel(SynthArgs a, int tiles_x, int tiles_per_sample) {
  extern __shared__ float smem[];
  FusedBlock<T, O, INTERP> fb;
  fb.init(a, blockIdx.x, tiles_x, tiles_per_sample);
  if (fb.r == 0) {  // block-uniform: every thread returns
    fb.direct(a, threadIdx.x);
    return;
  }
  fb.phase1(a, threadIdx.x, smem);
  __syncthreads();
  fb.phase2(threadIdx.x, smem);
  __syncthreads();
  fb.phase3(a, threadIdx.x, smem);
}

__global__ void __launch_bounds__(kPixThreads) blur_pass_kernel(const float* __restrict__ in, float* __restrict__ out,
                                                                const float* __restrict__ params, int col,
                                                                const float* __restrict__ weights, int R, int axis,
                                                                int H, int W, long long bps) {
  blur_pass_body(in, out, params, col, weights, R, axis, H, W, bps, blockIdx.x, threadIdx.x);
}

__global__ void __launch_bounds__(kPixThreads) noise_kernel(SynthArgs a, const float* __restrict__ q0,
                                                            const float* __restrict__ g, float* __restrict__ out,
                                                            long long bps) {
  noise_body(a, q0, g, out, bps, blockIdx.x, threadIdx.x);
}

template <typename O>
__global__ void __launch_bounds__(kPixThreads) finish_kernel(SynthArgs a, const float* __restrict__ vin, long long bps) {
  finish_body<O>(a, vin, bps, blockIdx.x, threadIdx.x);
}

// ------------------------------------------------------------------------------ host side
void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    throw std::runtime_error(std::string("lsn_fast._cuda: launching ") + what + " failed: " + cudaGetErrorName(e) +
                             ": " + cudaGetErrorString(e));
  }
}

long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

void check_grid(long long blocks, const char* what) {
  if (blocks <= 0 || blocks > 2147483647LL) {
    throw std::runtime_error(std::string("lsn_fast._cuda: ") + what + ": grid of " + std::to_string(blocks) +
                             " blocks is out of range (batch too large for one launch)");
  }
}

// Runs a per-pixel body over a grid on the host: the emulation of a kernel without barriers.
template <typename F>
void host_grid(long long blocks, int threads, F&& body) {
  for (long long blk = 0; blk < blocks; ++blk)
    for (int tid = 0; tid < threads; ++tid) body(blk, tid);
}

// One implementation of the launch sequence: on the GPU (kHost = false) or emulated (kHost = true).
template <bool kHost, typename T, typename O, int INTERP>
void run(const SynthArgs& a, int fused_radius, bool multipass, cudaStream_t st) {
  const long long HW = static_cast<long long>(a.H) * a.W;
  const long long bps = ceil_div(HW, kPixThreads);
  const long long pix_blocks = a.B * bps;
  if (a.params == nullptr) {  // noiseless attenuation
    check_grid(pix_blocks, "pointwise_kernel");
    O* out = static_cast<O*>(a.out);
    if constexpr (kHost) {
      host_grid(pix_blocks, kPixThreads, [&](long long blk, int tid) {
        pointwise_body<T, O, INTERP>(a, out, 0, bps, blk, tid);
      });
    } else {
      pointwise_kernel<T, O, INTERP><<<static_cast<unsigned int>(pix_blocks), kPixThreads, 0, st>>>(a, out, 0, bps);
      check_launch("pointwise_kernel");
    }
    return;
  }
  if (!multipass) {
    const int tiles_x = static_cast<int>(ceil_div(a.W, kTileW));
    const int tiles = tiles_x * static_cast<int>(ceil_div(a.H, kTileH));
    const long long blocks = a.B * tiles;
    check_grid(blocks, "fused_kernel");
    SynthArgs fa = a;
    fa.blur_radius = fused_radius;  // the kernel's cap on per-sample radii (shared memory sized for it)
    const int smem = fused_radius > 0 ? fused_smem_bytes(fused_radius) : 0;
    if constexpr (kHost) {
      std::vector<float> shared(static_cast<size_t>(smem / sizeof(float)) + 1);
      for (long long blk = 0; blk < blocks; ++blk) {
        FusedBlock<T, O, INTERP> fb;
        fb.init(fa, blk, tiles_x, tiles);
        if (fb.r == 0) {
          for (int tid = 0; tid < kThreads; ++tid) fb.direct(fa, tid);
          continue;
        }
        std::fill(shared.begin(), shared.end(), std::numeric_limits<float>::quiet_NaN());  // stale data shows
        for (int tid = 0; tid < kThreads; ++tid) fb.phase1(fa, tid, shared.data());
        for (int tid = 0; tid < kThreads; ++tid) fb.phase2(tid, shared.data());
        for (int tid = 0; tid < kThreads; ++tid) fb.phase3(fa, tid, shared.data());
      }
    } else {
      fused_kernel<T, O, INTERP><<<static_cast<unsigned int>(blocks), kThreads, smem, st>>>(fa, tiles_x, tiles);
      check_launch("fused_kernel");
    }
    return;
  }
  check_grid(pix_blocks, "multi-pass kernels");
  const unsigned int g = static_cast<unsigned int>(pix_blocks);
  float* buf0 = a.workspace;
  float* buf1 = buf0 + a.B * HW;
  float* buf2 = buf1 + a.B * HW;
  const float* scat = a.use_scatter ? buf2 : nullptr;
  if constexpr (kHost) {
    host_grid(pix_blocks, kPixThreads, [&](long long blk, int tid) {
      pointwise_body<T, float, INTERP>(a, buf0, 1, bps, blk, tid);
    });
    if (a.use_scatter) {
      host_grid(pix_blocks, kPixThreads, [&](long long blk, int tid) {
        blur_pass_body(buf0, buf1, a.params, 2, a.scatter_weights, a.scatter_radius, 0, a.H, a.W, bps, blk, tid);
      });
      host_grid(pix_blocks, kPixThreads, [&](long long blk, int tid) {
        blur_pass_body(buf1, buf2, a.params, 2, a.scatter_weights, a.scatter_radius, 1, a.H, a.W, bps, blk, tid);
      });
    }
    host_grid(pix_blocks, kPixThreads, [&](long long blk, int tid) { noise_body(a, buf0, scat, buf1, bps, blk, tid); });
    host_grid(pix_blocks, kPixThreads, [&](long long blk, int tid) {
      blur_pass_body(buf1, buf2, a.params, 3, a.blur_weights, a.blur_radius, 0, a.H, a.W, bps, blk, tid);
    });
    host_grid(pix_blocks, kPixThreads, [&](long long blk, int tid) { finish_body<O>(a, buf2, bps, blk, tid); });
    return;
  } else {
    pointwise_kernel<T, float, INTERP><<<g, kPixThreads, 0, st>>>(a, buf0, 1, bps);  // q0 = n0 exp(-A)
    check_launch("pointwise_kernel (counts)");
    if (a.use_scatter) {
      blur_pass_kernel<<<g, kPixThreads, 0, st>>>(buf0, buf1, a.params, 2, a.scatter_weights, a.scatter_radius, 0,
                                                  a.H, a.W, bps);
      check_launch("blur_pass_kernel (scatter, vertical)");
      blur_pass_kernel<<<g, kPixThreads, 0, st>>>(buf1, buf2, a.params, 2, a.scatter_weights, a.scatter_radius, 1,
                                                  a.H, a.W, bps);
      check_launch("blur_pass_kernel (scatter, horizontal)");
    }
    noise_kernel<<<g, kPixThreads, 0, st>>>(a, buf0, scat, buf1, bps);
    check_launch("noise_kernel");
    blur_pass_kernel<<<g, kPixThreads, 0, st>>>(buf1, buf2, a.params, 3, a.blur_weights, a.blur_radius, 0, a.H, a.W,
                                                bps);
    check_launch("blur_pass_kernel (detector, vertical)");
    finish_kernel<O><<<g, kPixThreads, 0, st>>>(a, buf2, bps);
    check_launch("finish_kernel");
  }
}

template <bool kHost, typename T, typename O>
void dispatch_interp(const SynthArgs& a, int fr, bool mp, cudaStream_t st) {
  if (a.interp == 1)
    run<kHost, T, O, 1>(a, fr, mp, st);
  else
    run<kHost, T, O, 0>(a, fr, mp, st);
}

template <bool kHost, typename T>
void dispatch_out(const SynthArgs& a, int fr, bool mp, cudaStream_t st) {
  switch (a.out_dtype) {
    case kFloat32: dispatch_interp<kHost, T, float>(a, fr, mp, st); break;
    case kFloat16: dispatch_interp<kHost, T, __half>(a, fr, mp, st); break;
    case kBFloat16: dispatch_interp<kHost, T, __nv_bfloat16>(a, fr, mp, st); break;
    default: throw std::invalid_argument("lsn_fast._cuda: out_dtype code must be 0, 1 or 2");
  }
}

template <bool kHost>
void dispatch(const SynthArgs& a, int fused_radius, bool multipass, void* stream) {
  if (a.H <= 0 || a.W <= 0 || a.B <= 0) throw std::invalid_argument("lsn_fast._cuda: empty shape");
  if (static_cast<long long>(a.H) * a.W > 2147483647LL)
    throw std::invalid_argument("lsn_fast._cuda: H*W must be < 2^31 (Philox pixel counter)");
  if (a.interp != 0 && a.interp != 1) throw std::invalid_argument("lsn_fast._cuda: interp code must be 0 or 1");
  if (a.noise_mode < 0 || a.noise_mode > 2) throw std::invalid_argument("lsn_fast._cuda: noise_mode must be 0, 1 or 2");
  if (a.output_mode != 0 && a.output_mode != 1) throw std::invalid_argument("lsn_fast._cuda: output_mode must be 0 or 1");
  if (a.params != nullptr && !multipass && (fused_radius < 0 || fused_radius > kMaxFusedRadius))
    throw std::invalid_argument("lsn_fast._cuda: fused path needs 0 <= blur radius <= kMaxFusedRadius");
  if (a.params != nullptr && multipass &&
      (a.workspace == nullptr || a.blur_weights == nullptr || (a.use_scatter && a.scatter_weights == nullptr)))
    throw std::invalid_argument("lsn_fast._cuda: multi-pass path needs workspace and tap weights");
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  switch (a.storage_dtype) {
    case kFloat32: dispatch_out<kHost, float>(a, fused_radius, multipass, st); break;
    case kFloat16: dispatch_out<kHost, __half>(a, fused_radius, multipass, st); break;
    case kBFloat16: dispatch_out<kHost, __nv_bfloat16>(a, fused_radius, multipass, st); break;
    default: throw std::invalid_argument("lsn_fast._cuda: storage dtype code must be 0, 1 or 2");
  }
}

}  // namespace

int fused_smem_bytes(int radius) {
  const int RW = kTileW + 2 * radius, RH = kTileH + 2 * radius;
  return static_cast<int>(sizeof(float)) * (36 + RH * RW + kTileH * RW + kTileH * kTileW);
}

void synthesize(const SynthArgs& a, int fused_radius, bool multipass, void* stream) {
  dispatch<false>(a, fused_radius, multipass, stream);
}

void emulate(const SynthArgs& a, int fused_radius, bool multipass) { dispatch<true>(a, fused_radius, multipass, nullptr); }

}  // namespace lsn_cuda
