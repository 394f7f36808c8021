// Grouping gather on the CPU: neighbourhoods (B,M,k,3) = points[idx] - center, in the input dtype.
#include "group/group.h"

#include <ATen/Dispatch.h>

#include "utils/cpu.h"

namespace {

// rows = B*M (center, neighbour list) pairs; computed in float32, rounded once to scalar_t.
template <typename scalar_t>
void gather(const scalar_t* points, const scalar_t* centers, const int64_t* idx, scalar_t* out, int64_t rows,
            int64_t m, int64_t n, int64_t k) {
#pragma omp parallel for num_threads(crossjepa::num_threads_for(rows * k / 4096 + 1)) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const scalar_t* cloud = points + (r / m) * n * 3;
    const float cx = centers[3 * r], cy = centers[3 * r + 1], cz = centers[3 * r + 2];
    for (int64_t j = 0; j < k; ++j) {
      const scalar_t* pt = cloud + 3 * idx[r * k + j];
      scalar_t* o = out + 3 * (r * k + j);
      o[0] = static_cast<scalar_t>(static_cast<float>(pt[0]) - cx);
      o[1] = static_cast<scalar_t>(static_cast<float>(pt[1]) - cy);
      o[2] = static_cast<scalar_t>(static_cast<float>(pt[2]) - cz);
    }
  }
}

}  // namespace

at::Tensor group_gather_cpu(const at::Tensor& points, const at::Tensor& centers, const at::Tensor& idx) {
  TORCH_CHECK(points.dim() == 3 && points.size(2) == 3, "group_gather: points must have shape (B, N, 3)");
  TORCH_CHECK(centers.dim() == 3 && centers.size(2) == 3 && centers.size(0) == points.size(0),
              "group_gather: centers must have shape (B, M, 3) with the batch size of points");
  TORCH_CHECK(points.scalar_type() == at::kFloat || points.scalar_type() == at::kHalf ||
                  points.scalar_type() == at::kBFloat16,
              "group_gather: points must be float32, float16 or bfloat16");
  TORCH_CHECK(centers.scalar_type() == points.scalar_type(), "group_gather: centers must have the dtype of points");
  TORCH_CHECK(idx.scalar_type() == at::kLong && idx.dim() == 3 && idx.size(0) == points.size(0) &&
                  idx.size(1) == centers.size(1),
              "group_gather: idx must be an int64 tensor of shape (B, M, k)");
  const int64_t batch = points.size(0);
  const int64_t n = points.size(1);
  const int64_t m = centers.size(1);
  const int64_t k = idx.size(2);
  at::Tensor out = at::empty({batch, m, k, 3}, points.options());
  if (out.numel() == 0) return out;
  TORCH_CHECK(idx.min().item<int64_t>() >= 0 && idx.max().item<int64_t>() < n, "group_gather: idx must be in [0, ",
              n, ")");
  const at::Tensor p = points.contiguous();
  const at::Tensor c = centers.contiguous();
  const at::Tensor ix = idx.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, points.scalar_type(), "group_gather_cpu", [&] {
    gather<scalar_t>(p.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), ix.data_ptr<int64_t>(), out.data_ptr<scalar_t>(),
                     batch * m, m, n, k);
  });
  return out;
}
