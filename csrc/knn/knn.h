// k nearest neighbours: dispatch to the CPU or CUDA kernel.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#ifdef WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#endif

// queries (B,M,3), points (B,N,3): same dtype (float/half/bfloat16), contiguous; lengths (B,) int64 in [1, N]
// (only the first lengths[b] points are candidates); 1 <= k <= min(lengths).
// Returns {sq_dists (B,M,k) float32 ascending, idx (B,M,k) int64}; ties go to the lower index.
// check_values: see common/checks.h (false skips the host-side checks of the lengths values).
std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& queries, const at::Tensor& points,
                                           const at::Tensor& lengths, int64_t k, bool check_values);

#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> knn_cuda(const at::Tensor& queries, const at::Tensor& points,
                                            const at::Tensor& lengths, int64_t k, bool check_values);
#endif

inline std::tuple<at::Tensor, at::Tensor> knn(const at::Tensor& queries, const at::Tensor& points,
                                              const at::Tensor& lengths, int64_t k, bool check_values) {
  TORCH_CHECK(queries.device() == points.device(), "knn: queries and points must be on the same device");
  if (points.is_cuda()) {
#ifdef WITH_CUDA
    TORCH_CHECK(lengths.device() == points.device(), "knn: lengths must be on the device of points");
    const c10::cuda::OptionalCUDAGuard guard(points.device());
    return knn_cuda(queries, points, lengths, k, check_values);
#else
    TORCH_CHECK(false, "knn: points is a CUDA tensor but crossjepa._C was built without CUDA "
                       "(rebuild with nvcc on PATH or FORCE_CUDA=1)");
#endif
  }
  TORCH_CHECK(points.is_cpu(), "knn: points must be a CPU or CUDA tensor, got ", points.device());
  return knn_cpu(queries, points, lengths.cpu(), k, check_values);
}
