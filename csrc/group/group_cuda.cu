// Grouping gather on CUDA: out[b, m, j, :] = points[b, idx[b, m, j], :] - centers[b, m, :] in points.dtype.
//
// One thread per output scalar, so reads of idx/centers repeat across the three coordinates (cached) while
// the output, the bulk of the traffic, is written fully coalesced. The difference is taken in float32 and
// rounded once to the output dtype, as torch does for half/bfloat16 subtraction. idx must lie in [0, N)
// (checked on the host before the launch).
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <climits>

#include "../common/checks.h"
#include "../common/cuda_utils.cuh"

namespace {

constexpr int kThreads = 256;

// index_t is int32 whenever the output is small enough: the divisions below are then much cheaper.
template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    group_gather_kernel(const scalar_t* __restrict__ points, const scalar_t* __restrict__ centers,
                        const int64_t* __restrict__ idx, scalar_t* __restrict__ out, index_t n, index_t m,
                        index_t k, index_t total) {
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const index_t r = e / 3;  // flat (b, m, j)
    const index_t c = e - 3 * r;
    const index_t center = r / k;  // flat (b, m)
    const index_t b = center / m;
    const int64_t source = (static_cast<int64_t>(b) * n + idx[r]) * 3 + c;
    const float diff = static_cast<float>(points[source]) - static_cast<float>(centers[center * 3 + c]);
    out[e] = static_cast<scalar_t>(diff);
  }
}

}  // namespace

at::Tensor group_gather_cuda(const at::Tensor& points, const at::Tensor& centers, const at::Tensor& idx,
                             bool check_values) {
  TORCH_CHECK(points.is_cuda(), "group_gather_cuda: points must be a CUDA tensor, got ", points.device());
  c10::cuda::CUDAGuard guard(points.device());
  // Shapes, dtypes, devices, and idx values in [0, N) (one host sync, skipped when the caller vouches for
  // them with check_values = false): no gather reads out of bounds.
  crossjepa::check_group_args(points, centers, idx, check_values);
  const at::Tensor pts = points.contiguous();
  const at::Tensor ctr = centers.contiguous();
  const at::Tensor ix = idx.contiguous();
  const int64_t n = pts.size(1);
  const int64_t m = ctr.size(1);
  const int64_t k = ix.size(2);
  at::Tensor out = at::empty({pts.size(0), m, k, 3}, pts.options());
  const int64_t total = out.numel();
  if (total == 0) {
    return out;
  }
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream(pts.get_device());
  // Enough blocks to fill the GPU several times over; the grid-stride loop covers the rest.
  const int64_t blocks = std::min<int64_t>(crossjepa::cuda::ceil_div(total, kThreads), 1 << 20);
  CROSSJEPA_DISPATCH_POINT_TYPES(pts.scalar_type(), "group_gather_cuda", [&] {
        const auto* p = pts.data_ptr<scalar_t>();
        const auto* c = ctr.data_ptr<scalar_t>();
        const auto* i = ix.data_ptr<int64_t>();
        auto* o = out.data_ptr<scalar_t>();
        if (total <= INT_MAX / 2) {  // headroom: e + stride must not overflow
          group_gather_kernel<scalar_t, int><<<blocks, kThreads, 0, stream>>>(
              p, c, i, o, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), static_cast<int>(total));
        } else {
          group_gather_kernel<scalar_t, int64_t><<<blocks, kThreads, 0, stream>>>(p, c, i, o, n, m, k, total);
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return out;
}
