// Grouping gather: dispatch to the CPU or CUDA kernel.
#pragma once

#include <ATen/ATen.h>

#ifdef WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#endif

// points (B,N,3), centers (B,M,3): same dtype (float/half/bfloat16), contiguous; idx (B,M,k) int64 in [0, N).
// Returns neighbourhoods (B,M,k,3) = points[b, idx[b,m,j]] - centers[b,m], in points.dtype.
// check_values: see common/checks.h (false skips the host-side check of the idx values).
at::Tensor group_gather_cpu(const at::Tensor& points, const at::Tensor& centers, const at::Tensor& idx,
                            bool check_values);

#ifdef WITH_CUDA
at::Tensor group_gather_cuda(const at::Tensor& points, const at::Tensor& centers, const at::Tensor& idx,
                             bool check_values);
#endif

inline at::Tensor group_gather(const at::Tensor& points, const at::Tensor& centers, const at::Tensor& idx,
                               bool check_values) {
  TORCH_CHECK(centers.device() == points.device() && idx.device() == points.device(),
              "group_gather: points, centers and idx must be on the same device");
  if (points.is_cuda()) {
#ifdef WITH_CUDA
    const c10::cuda::OptionalCUDAGuard guard(points.device());
    return group_gather_cuda(points, centers, idx, check_values);
#else
    TORCH_CHECK(false, "group_gather: points is a CUDA tensor but crossjepa._C was built without CUDA "
                       "(rebuild with nvcc on PATH or FORCE_CUDA=1)");
#endif
  }
  TORCH_CHECK(points.is_cpu(), "group_gather: points must be a CPU or CUDA tensor, got ", points.device());
  return group_gather_cpu(points, centers, idx, check_values);
}
