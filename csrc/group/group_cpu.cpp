// Grouping gather on the CPU: neighbourhoods (B,M,k,3) = points[idx] - center, in the input dtype.
#include "group/group.h"

#include <ATen/Dispatch.h>

#include "common/checks.h"
#include "utils/cpu.h"

namespace {

// Neighbours gathered per work unit at least: the gather is memory bound and fast, so only a large one is split.
constexpr int64_t kMinUnitNeighbours = int64_t{1} << 18;

// rows = B*M (center, neighbour list) pairs; computed in float32, rounded once to scalar_t.
template <typename scalar_t>
void gather(const scalar_t* points, const scalar_t* centers, const int64_t* idx, scalar_t* out, int64_t rows,
            int64_t m, int64_t n, int64_t k) {
  const int64_t grain = (kMinUnitNeighbours + k - 1) / k;
  crossjepa::parallel_for(rows, grain, at::get_num_threads(), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
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
  });
}

}  // namespace

at::Tensor group_gather_cpu(const at::Tensor& points, const at::Tensor& centers, const at::Tensor& idx,
                            bool check_values) {
  crossjepa::check_group_args(points, centers, idx, check_values);
  TORCH_CHECK(points.is_cpu(), "group_gather_cpu: points must be a CPU tensor, got ", points.device());
  const int64_t batch = points.size(0);
  const int64_t n = points.size(1);
  const int64_t m = centers.size(1);
  const int64_t k = idx.size(2);
  at::Tensor out = at::empty({batch, m, k, 3}, points.options());
  if (out.numel() == 0) return out;
  const at::Tensor p = points.contiguous();
  const at::Tensor c = centers.contiguous();
  const at::Tensor ix = idx.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, points.scalar_type(), "group_gather_cpu", [&] {
    gather<scalar_t>(p.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), ix.data_ptr<int64_t>(), out.data_ptr<scalar_t>(),
                     batch * m, m, n, k);
  });
  return out;
}
