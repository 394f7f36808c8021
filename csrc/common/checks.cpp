// Argument checks shared by the CPU and CUDA entry points (see checks.h for the contract and the choice of a
// host-side check).
#include "common/checks.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>

namespace crossjepa {
namespace {

void check_cloud(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.dim() == 3 && t.size(2) == 3, op, ": ", name, " must have shape (B, N, 3), got ", t.sizes());
  const auto type = t.scalar_type();
  TORCH_CHECK_TYPE(type == at::kFloat || type == at::kHalf || type == at::kBFloat16, op, ": ", name,
                   " must be float32, float16 or bfloat16, got ", type);
}

void check_index_tensor(const char* op, const char* name, const at::Tensor& t, const at::Tensor& points) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, op, ": ", name, " must be int64, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == points.size(0), op, ": ", name, " must have shape (",
                    points.size(0), ",), got ", t.sizes());
  TORCH_CHECK_VALUE(t.device() == points.device(), op, ": ", name, " must be on the points' device (",
                    points.device(), "), got ", t.device());
}

std::atomic<int64_t> value_checks{0};

// The reductions in one int64 tensor, copied to the host in one transfer (the one sync on CUDA).
at::Tensor to_host(std::initializer_list<at::Tensor> reductions) {
  return at::stack(reductions).to(at::kCPU, at::kLong);
}

// Whether to run the value checks of this call (counted when run).
bool run_value_checks(bool check_values) {
  if (check_values) value_checks.fetch_add(1, std::memory_order_relaxed);
  return check_values;
}

// lengths in [1, n] (from their min `low` and max `high`) and count (num_samples or k) <= min(lengths).
void check_lengths_values(const char* op, int64_t low, int64_t high, int64_t n, const char* count_name,
                          int64_t count) {
  TORCH_CHECK_VALUE(low >= 1 && high <= n, op, ": lengths must be in [1, ", n, "] (points per cloud), got values in [",
                    low, ", ", high, "]");
  TORCH_CHECK_VALUE(count <= low, op, ": ", count_name, " must be <= min(lengths) = ", low, ", got ", count);
}

}  // namespace

void check_fps_args(const at::Tensor& points, const at::Tensor& lengths, const at::Tensor& start,
                    int64_t num_samples, bool check_values) {
  check_cloud("fps", "points", points);
  check_index_tensor("fps", "lengths", lengths, points);
  check_index_tensor("fps", "start", start, points);
  const int64_t n = points.size(1);
  TORCH_CHECK_VALUE(num_samples >= 1 && num_samples <= n, "fps: num_samples must be in [1, ", n,
                    "] (points per cloud), got ", num_samples);
  if (points.size(0) == 0 || !run_value_checks(check_values)) return;
  const at::Tensor v = to_host({lengths.min(), lengths.max(), start.min(), (start - lengths).max()});
  const int64_t* h = v.data_ptr<int64_t>();
  check_lengths_values("fps", h[0], h[1], n, "num_samples", num_samples);
  TORCH_CHECK_VALUE(h[2] >= 0 && h[3] < 0, "fps: start must satisfy 0 <= start[b] < lengths[b], got min(start) = ",
                    h[2], " and max(start - lengths) = ", h[3]);
}

void check_knn_args(const at::Tensor& queries, const at::Tensor& points, const at::Tensor& lengths, int64_t k,
                    bool check_values) {
  check_cloud("knn", "points", points);
  check_cloud("knn", "queries", queries);
  TORCH_CHECK_VALUE(queries.size(0) == points.size(0), "knn: queries must have the batch size of points (",
                    points.size(0), "), got ", queries.size(0));
  TORCH_CHECK_TYPE(queries.scalar_type() == points.scalar_type(), "knn: queries must have the dtype of points (",
                   points.scalar_type(), "), got ", queries.scalar_type());
  TORCH_CHECK_VALUE(queries.device() == points.device(), "knn: queries must be on the points' device (",
                    points.device(), "), got ", queries.device());
  check_index_tensor("knn", "lengths", lengths, points);
  const int64_t n = points.size(1);
  TORCH_CHECK_VALUE(k >= 1 && k <= n, "knn: k must be in [1, ", n, "] (points per cloud), got ", k);
  if (points.size(0) == 0 || !run_value_checks(check_values)) return;
  const at::Tensor v = to_host({lengths.min(), lengths.max()});
  const int64_t* h = v.data_ptr<int64_t>();
  check_lengths_values("knn", h[0], h[1], n, "k", k);
}

void check_group_args(const at::Tensor& points, const at::Tensor& centers, const at::Tensor& idx,
                      bool check_values) {
  check_cloud("group_gather", "points", points);
  check_cloud("group_gather", "centers", centers);
  TORCH_CHECK_VALUE(centers.size(0) == points.size(0), "group_gather: centers must have the batch size of points (",
                    points.size(0), "), got ", centers.size(0));
  TORCH_CHECK_TYPE(centers.scalar_type() == points.scalar_type(),
                   "group_gather: centers must have the dtype of points (", points.scalar_type(), "), got ",
                   centers.scalar_type());
  TORCH_CHECK_TYPE(idx.scalar_type() == at::kLong, "group_gather: idx must be int64, got ", idx.scalar_type());
  TORCH_CHECK_VALUE(idx.dim() == 3 && idx.size(0) == points.size(0) && idx.size(1) == centers.size(1),
                    "group_gather: idx must have shape (", points.size(0), ", ", centers.size(1), ", k), got ",
                    idx.sizes());
  TORCH_CHECK_VALUE(centers.device() == points.device() && idx.device() == points.device(),
                    "group_gather: centers and idx must be on the points' device (", points.device(), ")");
  if (idx.numel() == 0 || !run_value_checks(check_values)) return;
  const int64_t n = points.size(1);
  int64_t h[2];
  if (idx.is_cpu()) {
    // A plain loop: torch's reductions run in its thread pool, whose threads busy-wait and stall for a time
    // slice when another process shares a core.
    const at::Tensor c = idx.contiguous();
    const int64_t* data = c.data_ptr<int64_t>();
    const auto [low, high] = std::minmax_element(data, data + c.numel());
    h[0] = *low;
    h[1] = *high;
  } else {
    const at::Tensor v = to_host({idx.min(), idx.max()});
    h[0] = v.data_ptr<int64_t>()[0];
    h[1] = v.data_ptr<int64_t>()[1];
  }
  TORCH_CHECK_VALUE(h[0] >= 0 && h[1] < n, "group_gather: idx must be in [0, ", n, ") (points per cloud), got values in [",
                    h[0], ", ", h[1], "]");
}

int64_t value_check_count() { return value_checks.load(std::memory_order_relaxed); }

}  // namespace crossjepa
