// Device helpers shared by the crossjepa CUDA kernels (FPS, kNN, grouping).
//
// Only c10/cuda headers are used on purpose: ATen/cuda/CUDAContext.h pulls in cuBLAS/cuSPARSE headers, which a
// plain CUDA toolkit used for the compile-only CI check may not have.
#pragma once

#include <array>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>

#include <cuda_runtime.h>

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAMacros.h>
#include <ATen/Dispatch.h>

// float, half and bfloat16 only: the Python layer never passes float64, and every extra type is compile time.
#define CROSSJEPA_DISPATCH_POINT_TYPES(TYPE, NAME, ...)                        \
  AT_DISPATCH_SWITCH(TYPE, NAME, AT_DISPATCH_CASE(at::ScalarType::Float, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::ScalarType::Half, __VA_ARGS__)       \
                     AT_DISPATCH_CASE(at::ScalarType::BFloat16, __VA_ARGS__))

namespace crossjepa {
namespace cuda {

constexpr unsigned kFullMask = 0xffffffffu;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline int device_attribute(cudaDeviceAttr attr, int device) {
  int value = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&value, attr, device));
  return value;
}

inline void check_device_index(int device) {
  TORCH_CHECK(device >= 0 && device < C10_COMPILE_TIME_MAX_GPUS, "crossjepa: CUDA device index ", device,
              " out of range [0, ", C10_COMPILE_TIME_MAX_GPUS, ")");
}

// What the launch code needs to know of a device, queried once per device (thread-safe): the queries are
// driver calls, which would otherwise cost host time on every op.
struct DeviceLimits {
  int sms = 0;                  // streaming multiprocessors
  int64_t smem_optin = 0;       // bytes of shared memory a block may use once it opts in
};

inline const DeviceLimits& device_limits(int device) {
  static std::array<std::once_flag, C10_COMPILE_TIME_MAX_GPUS> once;
  static std::array<DeviceLimits, C10_COMPILE_TIME_MAX_GPUS> limits;
  check_device_index(device);
  std::call_once(once[device], [device] {
    limits[device].sms = device_attribute(cudaDevAttrMultiProcessorCount, device);
    limits[device].smem_optin = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  });
  return limits[device];
}

// Lets Kernel launch on `device` (the current device) with as much dynamic shared memory as the device's
// opt-in maximum leaves beside the kernel's static shared memory. Set once per kernel and device instead of
// before every launch (a driver call each time).
template <auto Kernel>
void allow_max_dynamic_smem(int device) {
  static std::array<std::once_flag, C10_COMPILE_TIME_MAX_GPUS> once;
  check_device_index(device);
  std::call_once(once[device], [device] {
    cudaFuncAttributes attributes;
    C10_CUDA_CHECK(cudaFuncGetAttributes(&attributes, Kernel));
    const int64_t dynamic = device_limits(device).smem_optin - static_cast<int64_t>(attributes.sharedSizeBytes);
    C10_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(dynamic)));
  });
}

// Kernel-path override for tests and benchmarks (e.g. CROSSJEPA_FPS_PATH=warp); empty when unset. Read on
// every call, not cached: tools/sanitize_ops.py switches paths within one process, and a getenv is a scan of
// the environment (no driver call).
inline std::string path_override(const char* env_name) {
  const char* value = std::getenv(env_name);
  return value == nullptr ? std::string() : std::string(value);
}

// Squared distance exactly as the torch reference and the CPU kernels compute it: float32,
// (dx*dx + dy*dy) + dz*dz with every product and sum rounded separately. The _rn intrinsics stop nvcc from
// contracting into FMAs, so values (and therefore ties) agree bit for bit across backends.
__device__ __forceinline__ float sq_dist(float ax, float ay, float az, float bx, float by, float bz) {
  const float dx = __fsub_rn(ax, bx);
  const float dy = __fsub_rn(ay, by);
  const float dz = __fsub_rn(az, bz);
  return __fadd_rn(__fadd_rn(__fmul_rn(dx, dx), __fmul_rn(dy, dy)), __fmul_rn(dz, dz));
}

// Warp-wide maximum of the packed key (hi << 32 | lo), returned to every lane. Two 32-bit reductions (max of
// hi, then max of lo among lanes holding that hi) cost less than five rounds of 64-bit shuffles.
__device__ __forceinline__ uint64_t warp_max_key(uint32_t hi, uint32_t lo) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const uint32_t best_hi = __reduce_max_sync(kFullMask, hi);
  const uint32_t best_lo = __reduce_max_sync(kFullMask, hi == best_hi ? lo : 0u);
  return (static_cast<uint64_t>(best_hi) << 32) | best_lo;
#else
  uint64_t key = (static_cast<uint64_t>(hi) << 32) | lo;
  for (int offset = 16; offset > 0; offset >>= 1) {
    const uint64_t other = __shfl_xor_sync(kFullMask, key, offset);
    key = other > key ? other : key;
  }
  return key;
#endif
}

// Coalesced flat read of a cloud's first `len` points (x, y, z interleaved) into float arrays x[i], y[i], z[i].
template <typename scalar_t>
__device__ __forceinline__ void load_cloud_soa(const scalar_t* __restrict__ p, int len, float* x, float* y,
                                               float* z, int tid, int nthreads) {
  for (int e = tid; e < 3 * len; e += nthreads) {
    const int i = e / 3;
    const int c = e - 3 * i;
    const float v = static_cast<float>(p[e]);
    if (c == 0) {
      x[i] = v;
    } else if (c == 1) {
      y[i] = v;
    } else {
      z[i] = v;
    }
  }
}

}  // namespace cuda
}  // namespace crossjepa
