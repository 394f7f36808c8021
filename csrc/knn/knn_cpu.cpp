// k nearest neighbours on the CPU.
//
// Points are transposed to a structure-of-arrays layout so squared distances are computed 8 at a time (AVX2
// where available) and filtered with one compare against the current k-th distance: only the few
// candidates that can enter the result are inserted. k <= 64 keeps a sorted buffer (in AVX2 vectors where
// available, else a scalar insertion buffer for k <= 32); larger k a bounded max-heap. Never a full sort.
// Candidates arrive in index order and only a strictly smaller distance displaces a kept one, so ties keep
// the lower index. Parallel over (cloud, block of queries) units (crossjepa::parallel_for).
#include "knn/knn.h"

#include <ATen/Dispatch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "common/checks.h"
#include "utils/cpu.h"

namespace {

constexpr int64_t kMaxInsertionK = 32;
// Queries per work unit at least (each unit transposes its cloud once).
constexpr int64_t kMinBlockRows = 32;
// Distance computations (queries x points, all clouds) below which the work runs on one thread.
constexpr int64_t kMinParallelWork = int64_t{1} << 18;

// Sorted buffer of the k best (distance, index) pairs, for small k.
struct InsertionTopK {
  float* dist;
  int64_t* index;
  int64_t k;
  int64_t size = 0;

  float bound() const { return size < k ? std::numeric_limits<float>::infinity() : dist[k - 1]; }

  void push(float d, int64_t i) {
    int64_t pos = size < k ? size++ : k - 1;
    while (pos > 0 && dist[pos - 1] > d) {  // strict: an equal distance stays ahead (lower index)
      dist[pos] = dist[pos - 1];
      index[pos] = index[pos - 1];
      --pos;
    }
    dist[pos] = d;
    index[pos] = i;
  }
};

// Bounded max-heap of (distance, index) pairs ordered lexicographically, for large k.
struct HeapTopK {
  std::vector<std::pair<float, int64_t>> heap;
  int64_t k;

  float bound() const {
    return static_cast<int64_t>(heap.size()) < k ? std::numeric_limits<float>::infinity() : heap.front().first;
  }

  void push(float d, int64_t i) {
    if (std::isnan(d)) d = std::numeric_limits<float>::infinity();  // keeps the ordering strict-weak
    if (static_cast<int64_t>(heap.size()) < k) {
      heap.emplace_back(d, i);
      std::push_heap(heap.begin(), heap.end());
      return;
    }
    std::pop_heap(heap.begin(), heap.end());
    heap.back() = {d, i};
    std::push_heap(heap.begin(), heap.end());
  }

  void write(float* dist, int64_t* index) {
    std::sort_heap(heap.begin(), heap.end());
    for (size_t j = 0; j < heap.size(); ++j) {
      dist[j] = heap[j].first;
      index[j] = heap[j].second;
    }
    heap.clear();
  }
};

#if CROSSJEPA_HAVE_AVX2_PATH
// Sorted (distance, index) buffer of 8*V slots in AVX2 vectors, for k <= 8*V: the insert position is a
// vector count of the kept distances <= d (equal ones stay ahead), and the shift is a lane rotation and a
// blend, with no data-dependent branch. Unused slots hold +inf.
template <int V>
struct SimdTopK {
  alignas(32) float dist[8 * V];
  alignas(32) int32_t index[8 * V];
  int64_t k;
  int64_t size = 0;

  explicit SimdTopK(int64_t k_) : k(k_) {
    for (int s = 0; s < 8 * V; ++s) {
      dist[s] = std::numeric_limits<float>::infinity();
      index[s] = 0;
    }
  }

  float bound() const { return dist[k - 1]; }

  CROSSJEPA_TARGET_AVX2 void push(float d, int64_t i) {
    size += size < k;
    const __m256 value = _mm256_set1_ps(d);
    const __m256 id = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int32_t>(i)));
    __m256 kept[V];
    __m256 ids[V];
    int pos = 0;
    for (int v = 0; v < V; ++v) {
      kept[v] = _mm256_load_ps(dist + 8 * v);
      ids[v] = _mm256_load_ps(reinterpret_cast<const float*>(index) + 8 * v);
      pos += __builtin_popcount(static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(kept[v], value, _CMP_LE_OQ))));
    }
    const __m256i rotate = _mm256_setr_epi32(7, 0, 1, 2, 3, 4, 5, 6);
    const __m256i position = _mm256_set1_epi32(pos);
    __m256 carry_dist = value;
    __m256 carry_id = id;
    for (int v = 0; v < V; ++v) {
      // Slot s takes slot s-1 (the previous vector's last lane for lane 0) when s > pos, d when s == pos.
      const __m256 rot_dist = _mm256_permutevar8x32_ps(kept[v], rotate);
      const __m256 rot_id = _mm256_permutevar8x32_ps(ids[v], rotate);
      const __m256 shifted_dist = _mm256_blend_ps(rot_dist, carry_dist, 1);
      const __m256 shifted_id = _mm256_blend_ps(rot_id, carry_id, 1);
      carry_dist = rot_dist;
      carry_id = rot_id;
      const __m256i lane = _mm256_add_epi32(_mm256_set1_epi32(8 * v), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      const __m256 after = _mm256_castsi256_ps(_mm256_cmpgt_epi32(lane, position));
      const __m256 at = _mm256_castsi256_ps(_mm256_cmpeq_epi32(lane, position));
      _mm256_store_ps(dist + 8 * v, _mm256_blendv_ps(_mm256_blendv_ps(kept[v], shifted_dist, after), value, at));
      _mm256_store_ps(reinterpret_cast<float*>(index) + 8 * v,
                      _mm256_blendv_ps(_mm256_blendv_ps(ids[v], shifted_id, after), id, at));
    }
  }

  void write(float* out_dist, int64_t* out_index) const {
    for (int64_t j = 0; j < k; ++j) {
      out_dist[j] = dist[j];
      out_index[j] = index[j];
    }
  }
};
#endif

// Feeds every candidate of [0, length) that can still enter the top k to `top`, in index order. The first
// k are always pushed, so the result is complete even for NaN/Inf distances (check_finite=False).
template <typename TopK>
void scan_generic(const float* x, const float* y, const float* z, int64_t length, const float* q, TopK& top) {
  int64_t j = 0;
  for (; j < top.k; ++j) top.push(crossjepa::squared_distance(q[0], q[1], q[2], x[j], y[j], z[j]), j);
  float bound = top.bound();
  for (; j < length; ++j) {
    const float d = crossjepa::squared_distance(q[0], q[1], q[2], x[j], y[j], z[j]);
    if (d < bound) {
      top.push(d, j);
      bound = top.bound();
    }
  }
}

#if CROSSJEPA_HAVE_AVX2_PATH
// Same scan with AVX2: 8 distances at a time and one compare mask against the current bound, so the ~90% of
// candidates that cannot enter cost no branch each.
template <typename TopK>
CROSSJEPA_TARGET_AVX2 void scan_avx2(const float* x, const float* y, const float* z, int64_t length, const float* q,
                                     TopK& top) {
  int64_t j = 0;
  for (; j < top.k; ++j) top.push(crossjepa::squared_distance(q[0], q[1], q[2], x[j], y[j], z[j]), j);
  float bound = top.bound();
  const __m256 qx = _mm256_set1_ps(q[0]);
  const __m256 qy = _mm256_set1_ps(q[1]);
  const __m256 qz = _mm256_set1_ps(q[2]);
  __m256 vbound = _mm256_set1_ps(bound);
  alignas(32) float lanes[8];
  for (; j + 8 <= length; j += 8) {
    const __m256 dx = _mm256_sub_ps(qx, _mm256_loadu_ps(x + j));
    const __m256 dy = _mm256_sub_ps(qy, _mm256_loadu_ps(y + j));
    const __m256 dz = _mm256_sub_ps(qz, _mm256_loadu_ps(z + j));
    const __m256 d = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(dx, dx), _mm256_mul_ps(dy, dy)), _mm256_mul_ps(dz, dz));
    unsigned mask = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(d, vbound, _CMP_LT_OQ)));
    if (mask == 0) continue;
    _mm256_store_ps(lanes, d);
    do {
      const int l = __builtin_ctz(mask);
      mask &= mask - 1;
      if (lanes[l] < bound) {  // the bound may have tightened within these 8
        top.push(lanes[l], j + l);
        bound = top.bound();
      }
    } while (mask != 0);
    vbound = _mm256_set1_ps(bound);
  }
  for (; j < length; ++j) {
    const float d = crossjepa::squared_distance(q[0], q[1], q[2], x[j], y[j], z[j]);
    if (d < bound) {
      top.push(d, j);
      bound = top.bound();
    }
  }
}
#endif

#if CROSSJEPA_HAVE_AVX2_PATH
CROSSJEPA_TARGET_AVX2 inline float horizontal_max(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

// k <= 8*V in two passes. Pass 1 stores every distance in buf and keeps, per lane, the V smallest (a
// branch-free min/max insertion); the largest of those 8*V kept distances, t, bounds the k-th smallest
// distance from above, since 8*V >= k distances are <= t. Pass 2 pushes, in index order, only distances
// <= t: a few more than k, instead of the ~k*ln(N/k) a single pass inserts. If fewer than k pass (only
// possible with NaN distances, check_finite=False), the single-pass scan fills the result.
template <int V>
CROSSJEPA_TARGET_AVX2 void select_two_pass(const float* x, const float* y, const float* z, int64_t length,
                                           const float* q, SimdTopK<V>& top, float* buf) {
  const __m256 qx = _mm256_set1_ps(q[0]);
  const __m256 qy = _mm256_set1_ps(q[1]);
  const __m256 qz = _mm256_set1_ps(q[2]);
  __m256 low[V];
  for (int v = 0; v < V; ++v) low[v] = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  const int64_t full = length / 8 * 8;
  for (int64_t j = 0; j < full; j += 8) {
    const __m256 dx = _mm256_sub_ps(qx, _mm256_loadu_ps(x + j));
    const __m256 dy = _mm256_sub_ps(qy, _mm256_loadu_ps(y + j));
    const __m256 dz = _mm256_sub_ps(qz, _mm256_loadu_ps(z + j));
    __m256 d = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(dx, dx), _mm256_mul_ps(dy, dy)), _mm256_mul_ps(dz, dz));
    _mm256_storeu_ps(buf + j, d);
    for (int v = 0; v < V; ++v) {
      const __m256 larger = _mm256_max_ps(low[v], d);
      low[v] = _mm256_min_ps(low[v], d);
      d = larger;
    }
  }
  __m256 threshold = _mm256_set1_ps(horizontal_max(low[V - 1]));
  float bound = std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < full; j += 8) {
    unsigned mask = static_cast<unsigned>(
        _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(buf + j), threshold, _CMP_LE_OQ)));
    while (mask != 0) {
      const int l = __builtin_ctz(mask);
      mask &= mask - 1;
      const float d = buf[j + l];
      if (top.size < top.k || d < bound) {
        top.push(d, j + l);
        if (top.size == top.k) {
          bound = top.bound();
          threshold = _mm256_set1_ps(bound);
        }
      }
    }
  }
  for (int64_t j = full; j < length; ++j) {
    const float d = crossjepa::squared_distance(q[0], q[1], q[2], x[j], y[j], z[j]);
    if (top.size < top.k || d < bound) {
      top.push(d, j);
      if (top.size == top.k) bound = top.bound();
    }
  }
  if (top.size < top.k) {
    top = SimdTopK<V>(top.k);
    scan_avx2(x, y, z, length, q, top);
  }
}
#endif

template <typename TopK>
void scan(const float* x, const float* y, const float* z, int64_t length, const float* q, TopK& top) {
#if CROSSJEPA_HAVE_AVX2_PATH
  if (crossjepa::use_avx2()) return scan_avx2(x, y, z, length, q, top);
#endif
  scan_generic(x, y, z, length, q, top);
}

// The k nearest of the first `length` points (SoA x, y, z) to query q, written to out_dist / out_index.
// buf: scratch for `length` distances.
void query(const float* x, const float* y, const float* z, int64_t length, const float* q, int64_t k,
           float* out_dist, int64_t* out_index, HeapTopK& heap, float* buf) {
#if CROSSJEPA_HAVE_AVX2_PATH
  if (crossjepa::use_avx2() && k <= 64) {
    if (k <= 8) {
      SimdTopK<1> top(k);
      if (k == 1) {  // nearly every candidate is rejected by one compare: the second pass would not pay
        scan_avx2(x, y, z, length, q, top);
      } else {
        select_two_pass(x, y, z, length, q, top, buf);
      }
      return top.write(out_dist, out_index);
    }
    if (k <= 16) {
      SimdTopK<2> top(k);
      select_two_pass(x, y, z, length, q, top, buf);
      return top.write(out_dist, out_index);
    }
    if (k <= 32) {
      SimdTopK<4> top(k);
      select_two_pass(x, y, z, length, q, top, buf);
      return top.write(out_dist, out_index);
    }
    SimdTopK<8> top(k);
    select_two_pass(x, y, z, length, q, top, buf);
    return top.write(out_dist, out_index);
  }
#endif
  if (k <= kMaxInsertionK) {
    InsertionTopK top{out_dist, out_index, k};
    return scan(x, y, z, length, q, top);
  }
  scan(x, y, z, length, q, heap);
  heap.write(out_dist, out_index);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& queries, const at::Tensor& points,
                                           const at::Tensor& lengths, int64_t k, bool check_values) {
  crossjepa::check_knn_args(queries, points, lengths, k, check_values);
  TORCH_CHECK(points.is_cpu(), "knn_cpu: points must be a CPU tensor, got ", points.device());
  const int64_t batch = points.size(0);
  const int64_t m = queries.size(1);
  const int64_t n = points.size(1);
  TORCH_CHECK_VALUE(n < (int64_t{1} << 31), "knn: at most 2^31 - 1 points per cloud, got ", n);
  const at::Tensor lengths_c = lengths.contiguous();
  const int64_t* len = lengths_c.data_ptr<int64_t>();
  at::Tensor dists = at::empty({batch, m, k}, points.options().dtype(at::kFloat));
  at::Tensor idx = at::empty({batch, m, k}, points.options().dtype(at::kLong));
  if (batch == 0 || m == 0) return {dists, idx};

  const at::Tensor q = queries.contiguous();
  const at::Tensor p = points.contiguous();
  float* d_out = dists.data_ptr<float>();
  int64_t* i_out = idx.data_ptr<int64_t>();
  const int threads = std::max(1, at::get_num_threads());
  // Work units: (cloud, block of queries); each transposes its cloud, so blocks hold at least kMinBlockRows
  // queries, and a cloud is split only when there are too few clouds to keep the threads busy.
  const int64_t split = std::min((4 * threads + batch - 1) / batch, (m + kMinBlockRows - 1) / kMinBlockRows);
  const int64_t block_rows = (m + split - 1) / split;
  const int64_t blocks = (m + block_rows - 1) / block_rows;
  const int64_t work = batch * m * n;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.scalar_type(), "knn_cpu", [&] {
    const scalar_t* q_data = q.data_ptr<scalar_t>();
    const scalar_t* p_data = p.data_ptr<scalar_t>();
    crossjepa::parallel_for(batch * blocks, 1, work < kMinParallelWork ? 1 : threads, [&](int64_t begin, int64_t end) {
      HeapTopK heap{{}, k};
      if (k > kMaxInsertionK) heap.heap.reserve(k);
      std::vector<float> soa(4 * static_cast<size_t>(n));  // x, y, z of the cloud, then scratch distances
      float* x = soa.data();
      for (int64_t unit = begin; unit < end; ++unit) {
        const int64_t b = unit / blocks;
        const int64_t length = len[b];
        const scalar_t* cloud = p_data + b * n * 3;
        for (int64_t j = 0; j < length; ++j) {
          x[j] = static_cast<float>(cloud[3 * j]);
          x[n + j] = static_cast<float>(cloud[3 * j + 1]);
          x[2 * n + j] = static_cast<float>(cloud[3 * j + 2]);
        }
        const int64_t row_end = std::min(m, (unit % blocks + 1) * block_rows);
        for (int64_t r = b * m + (unit % blocks) * block_rows; r < b * m + row_end; ++r) {
          const float qr[3] = {static_cast<float>(q_data[3 * r]), static_cast<float>(q_data[3 * r + 1]),
                               static_cast<float>(q_data[3 * r + 2])};
          query(x, x + n, x + 2 * n, length, qr, k, d_out + r * k, i_out + r * k, heap, x + 3 * n);
        }
      }
    });
  });
  return {dists, idx};
}
