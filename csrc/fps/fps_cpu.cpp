// Farthest-point sampling on the CPU.
//
// Each cloud is copied into a structure-of-arrays layout (x[], y[], z[], dist[]) so the per-iteration work,
// "dist = min(dist, |p - c|^2) and find the argmax", is one fused vectorised pass (AVX2 where available).
// The argmax keeps kLanes independent (max, first index) lanes, each updated only on a strictly larger
// value, so lanes vectorise without breaking the lowest-index tie rule. Chosen points get dist = -1 and
// padding -inf, so neither can win while an unchosen point remains. Whole clouds are spread over threads
// (crossjepa::parallel_for); a batch smaller than the thread count, of large clouds, splits each cloud instead.
#include "fps/fps.h"

#include <ATen/Dispatch.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common/checks.h"
#include "utils/cpu.h"

namespace {

constexpr int32_t kLanes = 16;
// Below this many points per thread, one barrier per iteration costs more than it saves.
constexpr int64_t kMinPointsPerThread = 8192;
// Distance updates (points x samples, all clouds) below which a batch runs on one thread.
constexpr int64_t kMinParallelWork = int64_t{1} << 18;
// A team whose barrier had to sleep this often is not getting parallel cores: thread 0 goes on alone.
constexpr int kMaxBarrierSleeps = 8;

struct Best {
  float dist;
  int32_t index;
};

inline bool better(const Best& a, const Best& b) {
  return a.dist > b.dist || (a.dist == b.dist && a.index < b.index);
}

inline Best reduce_lanes(const float* lane_dist, const int32_t* lane_index) {
  Best best{lane_dist[0], lane_index[0]};
  for (int32_t l = 1; l < kLanes; ++l) {
    const Best lane{lane_dist[l], lane_index[l]};
    if (better(lane, best)) best = lane;
  }
  return best;
}

// One fused pass over [begin, end) (multiples of kLanes): dist = min(dist, |p - c|^2); returns the largest
// dist and its lowest index. Portable version; each lane keeps its own (max, first index).
Best update_and_argmax_generic(const float* __restrict x, const float* __restrict y, const float* __restrict z,
                               float* __restrict dist, int32_t begin, int32_t end, float cx, float cy, float cz) {
  float lane_dist[kLanes];
  int32_t lane_index[kLanes];
  for (int32_t l = 0; l < kLanes; ++l) {
    lane_dist[l] = -std::numeric_limits<float>::infinity();
    lane_index[l] = begin + l;
  }
  for (int32_t i = begin; i < end; i += kLanes) {
    for (int32_t l = 0; l < kLanes; ++l) {
      const float d = crossjepa::squared_distance(x[i + l], y[i + l], z[i + l], cx, cy, cz);
      const float old = dist[i + l];
      const float nd = old < d ? old : d;
      dist[i + l] = nd;
      if (nd > lane_dist[l]) {
        lane_dist[l] = nd;
        lane_index[l] = i + l;
      }
    }
  }
  return reduce_lanes(lane_dist, lane_index);
}

#if CROSSJEPA_HAVE_AVX2_PATH
// Same pass with AVX2: two 8-lane (max, index) accumulators so the compare/blend chains overlap.
CROSSJEPA_TARGET_AVX2
Best update_and_argmax_avx2(const float* __restrict x, const float* __restrict y, const float* __restrict z,
                            float* __restrict dist, int32_t begin, int32_t end, float cx, float cy, float cz) {
  const __m256 vcx = _mm256_set1_ps(cx);
  const __m256 vcy = _mm256_set1_ps(cy);
  const __m256 vcz = _mm256_set1_ps(cz);
  const __m256i step = _mm256_set1_epi32(kLanes);
  __m256 best[2] = {_mm256_set1_ps(-std::numeric_limits<float>::infinity()),
                    _mm256_set1_ps(-std::numeric_limits<float>::infinity())};
  __m256i index[2] = {_mm256_add_epi32(_mm256_set1_epi32(begin), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                      _mm256_add_epi32(_mm256_set1_epi32(begin), _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15))};
  __m256i arg[2] = {index[0], index[1]};
  for (int32_t i = begin; i < end; i += kLanes) {
    for (int h = 0; h < 2; ++h) {
      const int32_t j = i + 8 * h;
      const __m256 dx = _mm256_sub_ps(_mm256_loadu_ps(x + j), vcx);
      const __m256 dy = _mm256_sub_ps(_mm256_loadu_ps(y + j), vcy);
      const __m256 dz = _mm256_sub_ps(_mm256_loadu_ps(z + j), vcz);
      const __m256 d =
          _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(dx, dx), _mm256_mul_ps(dy, dy)), _mm256_mul_ps(dz, dz));
      const __m256 nd = _mm256_min_ps(_mm256_loadu_ps(dist + j), d);  // old < d ? old : d
      _mm256_storeu_ps(dist + j, nd);
      const __m256 gt = _mm256_cmp_ps(nd, best[h], _CMP_GT_OQ);
      best[h] = _mm256_blendv_ps(best[h], nd, gt);
      arg[h] = _mm256_castps_si256(
          _mm256_blendv_ps(_mm256_castsi256_ps(arg[h]), _mm256_castsi256_ps(index[h]), gt));
      index[h] = _mm256_add_epi32(index[h], step);
    }
  }
  float lane_dist[kLanes];
  int32_t lane_index[kLanes];
  _mm256_storeu_ps(lane_dist, best[0]);
  _mm256_storeu_ps(lane_dist + 8, best[1]);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lane_index), arg[0]);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lane_index + 8), arg[1]);
  return reduce_lanes(lane_dist, lane_index);
}
#endif

Best update_and_argmax(const float* x, const float* y, const float* z, float* dist, int32_t begin, int32_t end,
                       float cx, float cy, float cz) {
#if CROSSJEPA_HAVE_AVX2_PATH
  if (crossjepa::use_avx2()) return update_and_argmax_avx2(x, y, z, dist, begin, end, cx, cy, cz);
#endif
  return update_and_argmax_generic(x, y, z, dist, begin, end, cx, cy, cz);
}

// Structure-of-arrays copy of one cloud: 4 arrays of `padded` floats (x, y, z, running min distance).
struct Cloud {
  std::vector<float> data;
  int32_t padded;
  float* x() { return data.data(); }
  float* y() { return data.data() + padded; }
  float* z() { return data.data() + 2 * static_cast<int64_t>(padded); }
  float* dist() { return data.data() + 3 * static_cast<int64_t>(padded); }

  template <typename scalar_t>
  Cloud(const scalar_t* xyz, int32_t length)
      : data(), padded(static_cast<int32_t>(crossjepa::round_up(length, kLanes))) {
    data.resize(4 * static_cast<size_t>(padded));
    for (int32_t i = 0; i < padded; ++i) {
      const bool valid = i < length;
      x()[i] = valid ? static_cast<float>(xyz[3 * i]) : 0.f;
      y()[i] = valid ? static_cast<float>(xyz[3 * i + 1]) : 0.f;
      z()[i] = valid ? static_cast<float>(xyz[3 * i + 2]) : 0.f;
      dist()[i] = valid ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
    }
  }
};

template <typename scalar_t>
void sample_cloud(const scalar_t* xyz, int32_t length, int32_t start, int64_t num_samples, int64_t* out) {
  Cloud cloud(xyz, length);
  int32_t current = start;
  for (int64_t s = 0;; ++s) {
    out[s] = current;
    if (s + 1 == num_samples) break;
    cloud.dist()[current] = -1.f;
    current = update_and_argmax(cloud.x(), cloud.y(), cloud.z(), cloud.dist(), 0, cloud.padded,
                                cloud.x()[current], cloud.y()[current], cloud.z()[current])
                  .index;
  }
}

// One cloud, its points split over `threads` threads: one barrier per iteration (TeamBarrier), each
// thread's (max, index) in double-buffered slots. When the barrier keeps having to sleep (other processes
// hold the cores), the team agrees to stop and thread 0 finishes alone: never much slower than serial.
template <typename scalar_t>
void sample_cloud_parallel(const scalar_t* xyz, int32_t length, int32_t start, int64_t num_samples, int64_t* out,
                           int threads) {
  Cloud cloud(xyz, length);
  std::vector<Best> slots(2 * static_cast<size_t>(threads));
  crossjepa::TeamBarrier barrier(threads);
#pragma omp parallel num_threads(threads)
  {
    const int tid = omp_get_thread_num();
    const int team = omp_get_num_threads();
    // A smaller team than asked for (thread limits, nested regions) cannot use the barrier: thread 0 alone.
    bool solo = team != threads;
    const int64_t chunk = crossjepa::round_up((cloud.padded + team - 1) / team, kLanes);
    auto begin = static_cast<int32_t>(solo ? 0 : std::min<int64_t>(cloud.padded, tid * chunk));
    auto end = static_cast<int32_t>(solo ? cloud.padded : std::min<int64_t>(cloud.padded, begin + chunk));
    int32_t current = start;
    for (int64_t s = 0; !(solo && tid != 0); ++s) {
      if (tid == 0) out[s] = current;
      if (s + 1 == num_samples) break;
      if (current >= begin && current < end) cloud.dist()[current] = -1.f;
      Best local{-std::numeric_limits<float>::infinity(), begin};
      if (begin < end) {
        local = update_and_argmax(cloud.x(), cloud.y(), cloud.z(), cloud.dist(), begin, end, cloud.x()[current],
                                  cloud.y()[current], cloud.z()[current]);
      }
      if (solo) {
        current = local.index;
        continue;
      }
      Best* slot = slots.data() + (s & 1) * threads;
      slot[tid] = local;
      const int sleeps = barrier.arrive_and_wait();
      Best best = slot[0];
      for (int t = 1; t < team; ++t) {
        if (better(slot[t], best)) best = slot[t];
      }
      current = best.index;
      if (sleeps > kMaxBarrierSleeps) {
        if (tid != 0) break;
        solo = true;
        begin = 0;
        end = cloud.padded;
      }
    }
  }
}

}  // namespace

at::Tensor fps_cpu(const at::Tensor& points, const at::Tensor& lengths, const at::Tensor& start, int64_t num_samples,
                   bool check_values) {
  crossjepa::check_fps_args(points, lengths, start, num_samples, check_values);
  TORCH_CHECK(points.is_cpu(), "fps_cpu: points must be a CPU tensor, got ", points.device());
  const int64_t batch = points.size(0);
  const int64_t n = points.size(1);
  TORCH_CHECK_VALUE(n < (int64_t{1} << 30), "fps: at most 2^30 points per cloud, got ", n);
  const at::Tensor lengths_c = lengths.contiguous();
  const at::Tensor start_c = start.contiguous();
  const int64_t* len = lengths_c.data_ptr<int64_t>();
  const int64_t* first = start_c.data_ptr<int64_t>();
  at::Tensor out = at::empty({batch, num_samples}, points.options().dtype(at::kLong));
  if (batch == 0) return out;
  const at::Tensor xyz = points.contiguous();
  int64_t* result = out.data_ptr<int64_t>();
  const int threads = std::max(1, at::get_num_threads());
  const int point_threads = static_cast<int>(std::min<int64_t>(threads, n / kMinPointsPerThread));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xyz.scalar_type(), "fps_cpu", [&] {
    const scalar_t* data = xyz.data_ptr<scalar_t>();
    if (batch < threads && point_threads > 1) {
      for (int64_t b = 0; b < batch; ++b) {
        sample_cloud_parallel(data + b * n * 3, static_cast<int32_t>(len[b]), static_cast<int32_t>(first[b]),
                              num_samples, result + b * num_samples, point_threads);
      }
      return;
    }
    // Whole clouds per thread: no synchronisation inside a cloud. Work too small to pay for waking a worker
    // runs on the calling thread.
    const int64_t work = batch * crossjepa::round_up(n, kLanes) * num_samples;
    crossjepa::parallel_for(batch, 1, work < kMinParallelWork ? 1 : threads, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        sample_cloud(data + b * n * 3, static_cast<int32_t>(len[b]), static_cast<int32_t>(first[b]), num_samples,
                     result + b * num_samples);
      }
    });
  });
  return out;
}
