// pybind11 module lsn_fast._cuda: the CUDA kernels over raw device pointers and the caller's
// stream. No torch headers: lsn_fast/_cuda_backend.py passes data_ptr()s, strides and
// torch.cuda.current_stream().cuda_stream as Python ints, after validating every argument.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <vector>

#include "synthesize.cuh"

namespace py = pybind11;

namespace {

template <typename P>
P as_ptr(std::uintptr_t v) {
  return reinterpret_cast<P>(v);
}

void synthesize_py(std::uintptr_t soft, std::uintptr_t upper, std::uintptr_t lower, const std::vector<long long>& strides,
                   int storage_dtype, long long n_bank, int H, int W, std::uintptr_t index, std::uintptr_t disp,
                   std::uintptr_t params, std::uintptr_t sample_index, long long B, bool move_lower,
                   unsigned long long seed, int noise_mode, int output_mode, int interp, float min_counts,
                   std::uintptr_t out, int out_dtype, int fused_radius, bool multipass, std::uintptr_t workspace,
                   std::uintptr_t blur_weights, int blur_radius, std::uintptr_t scatter_weights, int scatter_radius,
                   bool use_scatter, std::uintptr_t stream, bool host_emulation) {
  if (strides.size() != 9) throw std::invalid_argument("strides: expected 9 values (3 layers x 3 dims)");
  if (soft == 0 || upper == 0 || lower == 0 || index == 0 || disp == 0 || sample_index == 0 || out == 0)
    throw std::invalid_argument("lsn_fast._cuda.synthesize: null pointer");
  lsn_cuda::SynthArgs a{};
  a.layer[0] = as_ptr<const void*>(soft);
  a.layer[1] = as_ptr<const void*>(upper);
  a.layer[2] = as_ptr<const void*>(lower);
  for (int l = 0; l < 3; ++l)
    for (int d = 0; d < 3; ++d) a.stride[l][d] = strides[3 * l + d];
  a.storage_dtype = storage_dtype;
  a.n_bank = n_bank;
  a.H = H;
  a.W = W;
  a.index = as_ptr<const long long*>(index);
  a.disp = as_ptr<const float*>(disp);
  a.params = as_ptr<const float*>(params);
  a.sample_index = as_ptr<const long long*>(sample_index);
  a.B = B;
  a.move_lower = move_lower ? 1 : 0;
  a.key0 = static_cast<unsigned int>(seed & 0xffffffffULL);
  a.key1 = static_cast<unsigned int>(seed >> 32);
  a.noise_mode = noise_mode;
  a.output_mode = output_mode;
  a.interp = interp;
  a.min_counts = min_counts;
  a.out = as_ptr<void*>(out);
  a.out_dtype = out_dtype;
  a.workspace = as_ptr<float*>(workspace);
  a.blur_weights = as_ptr<const float*>(blur_weights);
  a.blur_radius = blur_radius;
  a.scatter_weights = as_ptr<const float*>(scatter_weights);
  a.scatter_radius = scatter_radius;
  a.use_scatter = use_scatter ? 1 : 0;
  if (host_emulation) {
    py::gil_scoped_release release;
    lsn_cuda::emulate(a, fused_radius, multipass);
  } else {
    lsn_cuda::synthesize(a, fused_radius, multipass, as_ptr<void*>(stream));
  }
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "lsn_fast CUDA kernels (csrc/cuda): the fused synthesis operator over raw pointers";
  m.attr("MAX_FUSED_RADIUS") = lsn_cuda::kMaxFusedRadius;
  m.attr("TILE") = py::make_tuple(lsn_cuda::kTileH, lsn_cuda::kTileW);
  m.def("fused_smem_bytes", &lsn_cuda::fused_smem_bytes, py::arg("radius"),
        "dynamic shared memory of the fused kernel for a batch-max blur radius");
  m.def("synthesize", &synthesize_py, py::arg("soft"), py::arg("upper"), py::arg("lower"), py::arg("strides"),
        py::arg("storage_dtype"), py::arg("n_bank"), py::arg("H"), py::arg("W"), py::arg("index"), py::arg("disp"),
        py::arg("params"), py::arg("sample_index"), py::arg("B"), py::arg("move_lower"), py::arg("seed"),
        py::arg("noise_mode"), py::arg("output_mode"), py::arg("interp"), py::arg("min_counts"), py::arg("out"),
        py::arg("out_dtype"), py::arg("fused_radius"), py::arg("multipass"), py::arg("workspace"),
        py::arg("blur_weights"), py::arg("blur_radius"), py::arg("scatter_weights"), py::arg("scatter_radius"),
        py::arg("use_scatter"), py::arg("stream"), py::arg("host_emulation") = false,
        "Launch the fused synthesis operator on `stream` (asynchronous). Raises RuntimeError on a launch error.\n"
        "host_emulation=True runs the same kernel code on the host over host pointers instead (tests; slow).");
}
