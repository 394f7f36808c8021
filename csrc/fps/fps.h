// Farthest-point sampling: dispatch to the CPU or CUDA kernel.
#pragma once

#include <ATen/ATen.h>

#ifdef WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#endif

// points (B,N,3) contiguous float/half/bfloat16; lengths (B,) int64 in [1, N] (valid points per cloud);
// start (B,) int64 in [0, lengths[b]); 1 <= num_samples <= min(lengths). Returns (B, num_samples) int64.
// Distances are float32; ties go to the lowest index among points not yet chosen. check_values: see
// common/checks.h (false skips the host-side checks of the lengths/start values).
at::Tensor fps_cpu(const at::Tensor& points, const at::Tensor& lengths, const at::Tensor& start, int64_t num_samples,
                   bool check_values);

#ifdef WITH_CUDA
at::Tensor fps_cuda(const at::Tensor& points, const at::Tensor& lengths, const at::Tensor& start, int64_t num_samples,
                    bool check_values);
#endif

inline at::Tensor fps(const at::Tensor& points, const at::Tensor& lengths, const at::Tensor& start,
                      int64_t num_samples, bool check_values) {
  if (points.is_cuda()) {
#ifdef WITH_CUDA
    TORCH_CHECK(lengths.device() == points.device() && start.device() == points.device(),
                "fps: lengths and start must be on the device of points");
    const c10::cuda::OptionalCUDAGuard guard(points.device());
    return fps_cuda(points, lengths, start, num_samples, check_values);
#else
    TORCH_CHECK(false, "fps: points is a CUDA tensor but crossjepa._C was built without CUDA "
                       "(rebuild with nvcc on PATH or FORCE_CUDA=1)");
#endif
  }
  TORCH_CHECK(points.is_cpu(), "fps: points must be a CPU or CUDA tensor, got ", points.device());
  return fps_cpu(points, lengths.cpu(), start.cpu(), num_samples, check_values);
}
