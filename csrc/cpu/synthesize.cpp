// The fused synthesis operator on CPU (docs/kernel_contract.md): gather a bank entry, translate
// one bone layer (separable linear / Keys-cubic, edge-clamped, rows first), Beer-Lambert, optional
// scatter, Philox-4x32-10 quantum noise (gaussian or poisson), detector blur, electronic noise and
// the attenuation/counts output, in one pass per image.
//
// Parallel layout: OpenMP over samples (one image per thread at a time, per-thread row scratch);
// when there are fewer images than threads, every stage is split over row blocks instead. The
// body (synthesize_impl.h) is compiled three times -- AVX-512, AVX2+FMA, baseline x86-64 -- and
// the widest ISA the CPU supports is chosen at run time (the extension is built without -march).
// No torch headers: the Python wrapper (lsn_fast/_cpu_backend.py) passes raw data pointers.
#include "synthesize.h"
#include "param_ranges.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(__clang__)
#define LSN_MULTI_ISA 1
#include <immintrin.h>
#endif

namespace py = pybind11;

namespace lsn_cpu {

enum { DT_F32 = 0, DT_F16 = 1, DT_BF16 = 2 };

struct KernelArgs {
  const void* soft;
  const void* upper;
  const void* lower;
  int64_t strides[3][3];  // (N, H, W) strides in elements of soft, upper, lower
  int dtype_in;
  const int64_t* index;
  const float* disp;
  const float* params;  // nullptr: noiseless attenuation
  const int64_t* sample_index;
  int64_t B, H, W;
  bool move_lower;
  uint32_t k0, k1;
  int noise_mode, output_mode, interp;
  float min_counts;
  void* out;
  int dtype_out;
  int nthreads;
};

// LSN_SIMD_WIDTH tells the body which hand-written Philox path to compile (16: AVX-512, 8: AVX2,
// 0: portable scalar loop). `#pragma GCC target` does not define __AVX512F__ & co., hence the macro.
#ifdef LSN_MULTI_ISA
namespace isa_avx512 {
#pragma GCC diagnostic push
// GCC 12 false positive on the _mm512_undefined_* inside avx512fintrin.h (GCC bug 105593)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi2,prefer-vector-width=512")
#define LSN_SIMD_WIDTH 16
#include "synthesize_impl.h"
#undef LSN_SIMD_WIDTH
#pragma GCC pop_options
#pragma GCC diagnostic pop
}  // namespace isa_avx512
namespace isa_avx2 {
#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi2")
#define LSN_SIMD_WIDTH 8
#include "synthesize_impl.h"
#undef LSN_SIMD_WIDTH
#pragma GCC pop_options
}  // namespace isa_avx2
#endif
namespace isa_base {
#define LSN_SIMD_WIDTH 0
#include "synthesize_impl.h"
#undef LSN_SIMD_WIDTH
}  // namespace isa_base

// "auto", or forced by LSN_FAST_CPU_ISA=avx512|avx2|base (benchmarks, debugging).
static const char* pick_isa() {
#ifdef LSN_MULTI_ISA
  const char* env = std::getenv("LSN_FAST_CPU_ISA");
  std::string want = env ? env : "";
  __builtin_cpu_init();
  bool has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  bool has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
  if (want == "base") return "base";
  if (want == "avx2" && has2) return "avx2";
  if (has512 && (want.empty() || want == "avx512")) return "avx512";
  if (has2) return "avx2";
#endif
  return "base";
}

static void dispatch(const KernelArgs& a) {
  static const std::string isa = pick_isa();
#ifdef LSN_MULTI_ISA
  if (isa == "avx512") return isa_avx512::run_kernel(a);
  if (isa == "avx2") return isa_avx2::run_kernel(a);
#endif
  isa_base::run_kernel(a);
}

// ISAs this CPU can run, widest first (always ends with "base").
static std::vector<std::string> usable_isas() {
  std::vector<std::string> v;
#ifdef LSN_MULTI_ISA
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq"))
    v.push_back("avx512");
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2"))
    v.push_back("avx2");
#endif
  v.push_back("base");
  return v;
}

static void check_isa(const std::string& isa) {
  auto v = usable_isas();
  if (std::find(v.begin(), v.end(), isa) == v.end()) throw std::invalid_argument("isa not usable on this CPU: " + isa);
}

// Test hooks: the vector math and the SIMD Philox of one ISA on raw float32 arrays.
static void test_vmath(const std::string& fn, const std::string& isa, uintptr_t x, uintptr_t o1, uintptr_t o2,
                       int64_t n) {
  check_isa(isa);
  const int f = fn == "exp" ? 0 : fn == "log" ? 1 : fn == "sincos" ? 2 : -1;
  if (f < 0) throw std::invalid_argument("fn: exp, log or sincos");
  if (!x || !o1 || (f == 2 && !o2) || n < 0) throw std::invalid_argument("null pointer or negative n");
  auto xp = (const float*)x;
  auto p1 = (float*)o1, p2 = (float*)o2;
#ifdef LSN_MULTI_ISA
  if (isa == "avx512") return isa_avx512::vmath(f, xp, p1, p2, n);
  if (isa == "avx2") return isa_avx2::vmath(f, xp, p1, p2, n);
#endif
  isa_base::vmath(f, xp, p1, p2, n);
}

static void test_philox_uniforms(const std::string& isa, uint32_t pix0, int64_t n, uint32_t c1, uint32_t c2,
                                 uint64_t seed, uintptr_t u0, uintptr_t u1) {
  check_isa(isa);
  if (!u0 || !u1 || n < 0) throw std::invalid_argument("null pointer or negative n");
  const uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
#ifdef LSN_MULTI_ISA
  if (isa == "avx512") return isa_avx512::philox_uniforms(pix0, n, c1, c2, k0, k1, (float*)u0, (float*)u1);
  if (isa == "avx2") return isa_avx2::philox_uniforms(pix0, n, c1, c2, k0, k1, (float*)u0, (float*)u1);
#endif
  isa_base::philox_uniforms(pix0, n, c1, c2, k0, k1, (float*)u0, (float*)u1);
}

static std::array<uint32_t, 4> philox4x32_host(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  uint32_t r[4];
  isa_base::philox(c[0], c[1], c[2], c[3], k[0], k[1], &r[0], &r[1], &r[2], &r[3]);
  return {r[0], r[1], r[2], r[3]};
}

static void synthesize_binding(uintptr_t soft, uintptr_t upper, uintptr_t lower, std::array<int64_t, 3> soft_strides,
                               std::array<int64_t, 3> upper_strides, std::array<int64_t, 3> lower_strides,
                               int dtype_in, uintptr_t index, uintptr_t disp, uintptr_t params, uintptr_t sample_index,
                               int64_t B, int64_t H, int64_t W, bool move_lower, uint64_t seed, int noise_mode,
                               int output_mode, int interp, double min_counts, uintptr_t out, int dtype_out,
                               int nthreads) {
  if (B < 1 || H < 1 || W < 1) throw std::invalid_argument("synthesize: B, H, W must be >= 1");
  if (H * W > (int64_t)0xffffffffLL) throw std::invalid_argument("synthesize: H*W must fit the 32-bit Philox pixel counter");
  if (dtype_in < 0 || dtype_in > 2 || dtype_out < 0 || dtype_out > 2) throw std::invalid_argument("synthesize: dtype code");
  if (noise_mode < 0 || noise_mode > 2 || output_mode < 0 || output_mode > 1 || interp < 0 || interp > 1)
    throw std::invalid_argument("synthesize: mode code");
  if (!soft || !upper || !lower || !index || !disp || !out || (params && !sample_index))
    throw std::invalid_argument("synthesize: null pointer");
  // The Python schema (lsn_fast/ops/schema.py) checks all of this first; the binding checks the
  // values that size work or index memory again, so no caller can crash the process through it.
  if (!(min_counts > 0.0) || !std::isfinite(min_counts)) throw std::invalid_argument("min_counts: must be finite and > 0");
  {
    const float* d = (const float*)disp;
    for (int64_t i = 0; i < 2 * B; ++i)
      if (!std::isfinite(d[i]) || std::fabs(d[i]) > lsn_fast::kMaxDispPx)
        throw std::invalid_argument("disp: must be finite and within " + std::to_string(lsn_fast::kMaxDispPx) + " px");
  }
  if (params) {
    // the bounds of lsn_fast.physics.detector.PARAM_RANGES (param_ranges.h is generated from it)
    const float* p = (const float*)params;
    for (int64_t b = 0; b < B; ++b) {
      const float* r = p + lsn_fast::kNumParams * b;
      for (int j = 0; j < lsn_fast::kNumParams; ++j) {
        const lsn_fast::ParamRange& q = lsn_fast::kParamRanges[j];
        if (!std::isfinite(r[j])) throw std::invalid_argument("params: contains NaN or Inf");
        const bool lo_ok = q.lo_inclusive ? r[j] >= q.lo : r[j] > q.lo;
        if (!lo_ok || !(r[j] <= q.hi))
          throw std::invalid_argument(std::string("params: ") + q.name + " must lie in " + (q.lo_inclusive ? "[" : "(") +
                                      std::to_string(q.lo) + ", " + std::to_string(q.hi) + "]");
      }
    }
  }
  KernelArgs a;
  a.soft = (const void*)soft;
  a.upper = (const void*)upper;
  a.lower = (const void*)lower;
  for (int i = 0; i < 3; ++i) {
    a.strides[0][i] = soft_strides[i];
    a.strides[1][i] = upper_strides[i];
    a.strides[2][i] = lower_strides[i];
  }
  a.dtype_in = dtype_in;
  a.index = (const int64_t*)index;
  a.disp = (const float*)disp;
  a.params = (const float*)params;
  a.sample_index = (const int64_t*)sample_index;
  a.B = B;
  a.H = H;
  a.W = W;
  a.move_lower = move_lower;
  a.k0 = (uint32_t)(seed & 0xffffffffu);
  a.k1 = (uint32_t)(seed >> 32);
  a.noise_mode = noise_mode;
  a.output_mode = output_mode;
  a.interp = interp;
  a.min_counts = (float)min_counts;
  a.out = (void*)out;
  a.dtype_out = dtype_out;
  a.nthreads = nthreads;
  py::gil_scoped_release release;
  dispatch(a);
}

}  // namespace lsn_cpu

void register_synthesize(py::module_& m) {
  m.def("synthesize", &lsn_cpu::synthesize_binding, py::arg("soft"), py::arg("upper"), py::arg("lower"),
        py::arg("soft_strides"), py::arg("upper_strides"), py::arg("lower_strides"), py::arg("dtype_in"),
        py::arg("index"), py::arg("disp"), py::arg("params"), py::arg("sample_index"), py::arg("B"), py::arg("H"),
        py::arg("W"), py::arg("move_lower"), py::arg("seed"), py::arg("noise_mode"), py::arg("output_mode"),
        py::arg("interp"), py::arg("min_counts"), py::arg("out"), py::arg("dtype_out"), py::arg("nthreads"),
        "Fused synthesis (docs/kernel_contract.md) on raw pointers. Layers: data pointers of (N,H,W) tensors with "
        "element strides; dtype codes 0 float32, 1 float16, 2 bfloat16; index/sample_index int64 (B,); disp "
        "float32 (B,2) contiguous; params float32 (B,5) contiguous or 0 for None; out (B,1,H,W) contiguous. "
        "Releases the GIL; no bounds checks on the data (the caller validates).");
  m.def("philox4x32", &lsn_cpu::philox4x32_host, py::arg("counter"), py::arg("key"),
        "Philox-4x32-10 of one 128-bit counter (4 uint32) and 64-bit key (2 uint32) -> 4 uint32.");
  m.def("synthesize_isa", []() { return std::string(lsn_cpu::pick_isa()); },
        "Instruction set the synthesis kernel runs with here (avx512, avx2 or base).");
  m.def("_usable_isas", &lsn_cpu::usable_isas, "Instruction sets this CPU can run (tests).");
  m.def("_test_vmath", &lsn_cpu::test_vmath, py::arg("fn"), py::arg("isa"), py::arg("x"), py::arg("o1"),
        py::arg("o2"), py::arg("n"),
        "Test hook: the kernel's float32 exp/log/sincos of one ISA on n contiguous floats at x -> o1 (sincos: sin "
        "-> o1, cos -> o2).");
  m.def("_test_philox_uniforms", &lsn_cpu::test_philox_uniforms, py::arg("isa"), py::arg("pix0"), py::arg("n"),
        py::arg("c1"), py::arg("c2"), py::arg("seed"), py::arg("u0"), py::arg("u1"),
        "Test hook: the kernel's row Philox of one ISA: uniforms u0, u1 (n float32 each) of pixels pix0 .. pix0+n-1.");
}
