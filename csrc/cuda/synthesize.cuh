// lsn_fast CUDA kernels: the fused synthesis operator (docs/kernel_contract.md).
//
// Everything takes raw device pointers, shapes, element strides and the caller's stream; the
// Python layer (lsn_fast/_cuda_backend.py) validates every argument before calling in.
#pragma once

#include <cstdint>

namespace lsn_cuda {

// Storage / output dtype codes (must match lsn_fast/_cuda_backend.py).
enum DTypeCode : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// Fused tile kernel geometry: one block of kThreads threads per (sample, kTileH x kTileW tile).
constexpr int kTileW = 32;
constexpr int kTileH = 32;
constexpr int kThreads = 256;
// Largest detector-blur radius (ceil(3 sigma)) the fused kernel handles with its shared-memory
// halo; a larger radius, or any scatter, goes through the multi-pass path (global-memory passes).
constexpr int kMaxFusedRadius = 16;
// Threads per block of the per-pixel (multi-pass) kernels.
constexpr int kPixThreads = 256;

struct SynthArgs {
  // bank layers (N,H,W): soft, upper, lower; strides in elements (dim 0, 1, 2) per layer
  const void* layer[3];
  long long stride[3][3];
  int storage_dtype;  // DTypeCode, the same for the three layers
  long long n_bank;
  int H, W;
  // per sample
  const long long* index;         // (B,)
  const float* disp;              // (B,2) (dy, dx), contiguous
  const float* params;            // (B,5) contiguous, or nullptr (noiseless attenuation)
  const long long* sample_index;  // (B,)
  long long B;
  int move_lower;
  unsigned int key0, key1;  // Philox key = (seed & 0xffffffff, seed >> 32)
  int noise_mode;           // 0 none, 1 gaussian, 2 poisson
  int output_mode;          // 0 attenuation, 1 counts
  int interp;               // 0 linear, 1 cubic
  float min_counts;
  void* out;  // (B,1,H,W) contiguous
  int out_dtype;
  // multi-pass path only (else nullptr / 0)
  float* workspace;              // 3 * B*H*W floats
  const float* blur_weights;     // (B, 2*blur_radius+1) normalized Gaussian taps (reference's)
  int blur_radius;               // max radius over the batch
  const float* scatter_weights;  // (B, 2*scatter_radius+1) or nullptr
  int scatter_radius;
  int use_scatter;
};

// Bytes of dynamic shared memory the fused kernel uses for a batch-max blur radius R.
int fused_smem_bytes(int radius);

// Launches the operator on `stream` (a cudaStream_t). Throws std::runtime_error on a launch error.
void synthesize(const SynthArgs& a, int fused_radius, bool multipass, void* stream);

// The same launch sequence run on the host, block by block and thread by thread, with host
// pointers (the CPU test of the kernel code; slow). Synchronous.
void emulate(const SynthArgs& a, int fused_radius, bool multipass);

}  // namespace lsn_cuda
