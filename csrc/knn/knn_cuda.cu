// k-nearest neighbours on CUDA: sq_dists (B, M, k) float32 ascending, idx (B, M, k) int64, ties to the lower
// index, points at index >= lengths[b] ignored (same as crossjepa/ops/reference.py).
//
// Paths (CROSSJEPA_KNN_PATH=register|sort|select forces one, for tests and benchmarks):
//   register k <= 32: one thread per query keeps a sorted top-K (K = k rounded up to a power of two) in
//            registers while the block streams the cloud through shared memory in tiles. A cloud's queries
//            are split over several blocks of whole warps (down to one warp each) until the grid has a block
//            per SM (register_blocks.h).
//   sort     k > 32, N <= 4096: one block per query sorts all (distance, index) keys in shared memory.
//   select   k > 32, larger N: one block per query finds the k-th smallest key by radix selection (8 passes of
//            8 bits), keeps the k keys at or below it and sorts those (in shared memory when k <= 4096,
//            otherwise in place in the idx output, which has exactly k 64-bit slots per query).
// Keys are (distance bits << 32 | index): distances are non-negative, so unsigned order is (distance, index)
// order, and keys are unique, which makes selection exact without any tie handling.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <climits>
#include <string>
#include <tuple>

#include "../common/checks.h"
#include "../common/cuda_utils.cuh"
#include "register_blocks.h"

namespace {

using crossjepa::cuda::ceil_div;
using crossjepa::cuda::kFullMask;
using crossjepa::cuda::sq_dist;

using crossjepa::knn::kRegisterThreads;
using crossjepa::knn::register_threads;
constexpr int kTile = 512;
constexpr int kSortThreads = 256;
constexpr int kSortCap = 4096;  // keys sorted in shared memory: 32 KiB, under the default 48 KiB limit

// Insert (d, i) into the ascending list (td, ti); the caller checked d < td[K - 1]. Walking down from the top,
// slot j takes its left neighbour when that is larger than d, or d itself when d falls between them. Every
// index is a compile-time constant, so the list stays in registers. Strict comparisons keep equal distances in
// arrival (= index) order.
template <int K>
__device__ __forceinline__ void topk_insert(uint32_t (&td)[K], int (&ti)[K], uint32_t d, int i) {
#pragma unroll
  for (int j = K - 1; j > 0; --j) {
    const bool shift = td[j - 1] > d;
    const bool place = !shift && td[j] > d;
    td[j] = shift ? td[j - 1] : (place ? d : td[j]);
    ti[j] = shift ? ti[j - 1] : (place ? i : ti[j]);
  }
  if (td[0] > d) {
    td[0] = d;
    ti[0] = i;
  }
}

// Distances are kept as float bits compared as unsigned ints: same order for non-negative floats (+inf
// included), and the empty-slot sentinel 0xffffffff sorts after every real distance, so points at infinite
// distance are still kept, in index order.
template <typename scalar_t, int K>
__global__ void __launch_bounds__(kRegisterThreads)
    knn_register_kernel(const scalar_t* __restrict__ queries, const scalar_t* __restrict__ points,
                        const int64_t* __restrict__ lengths, float* __restrict__ sq, int64_t* __restrict__ idx,
                        int m, int n, int k, int query_blocks) {
  __shared__ float4 tile[kTile];
  const int b = blockIdx.x / query_blocks;
  const int q = (blockIdx.x - b * query_blocks) * blockDim.x + threadIdx.x;
  const bool active = q < m;
  const int64_t row = static_cast<int64_t>(b) * m + q;
  float qx = 0.f, qy = 0.f, qz = 0.f;
  if (active) {
    qx = static_cast<float>(queries[row * 3]);
    qy = static_cast<float>(queries[row * 3 + 1]);
    qz = static_cast<float>(queries[row * 3 + 2]);
  }
  uint32_t td[K];
  int ti[K];
#pragma unroll
  for (int j = 0; j < K; ++j) {
    td[j] = 0xffffffffu;
    ti[j] = -1;
  }
  const int len = static_cast<int>(lengths[b]);
  const scalar_t* p = points + static_cast<int64_t>(b) * n * 3;
  float* flat = reinterpret_cast<float*>(tile);
  for (int base = 0; base < len; base += kTile) {
    const int count = min(kTile, len - base);
    __syncthreads();  // the previous tile is fully consumed
    for (int e = threadIdx.x; e < 3 * count; e += blockDim.x) {
      const int i = e / 3;
      flat[4 * i + (e - 3 * i)] = static_cast<float>(p[3 * base + e]);
    }
    __syncthreads();
    if (active) {
      for (int t = 0; t < count; ++t) {
        const float4 v = tile[t];  // same address in every lane: a broadcast
        const uint32_t d = __float_as_uint(sq_dist(v.x, v.y, v.z, qx, qy, qz));
        if (d < td[K - 1]) {
          topk_insert<K>(td, ti, d, base + t);
        }
      }
    }
  }
  if (active) {
#pragma unroll
    for (int j = 0; j < K; ++j) {
      if (j < k) {
        const bool filled = ti[j] >= 0;  // only k > lengths[b] (rejected in Python) leaves a slot empty
        sq[row * k + j] = filled ? __uint_as_float(td[j]) : INFINITY;
        idx[row * k + j] = ti[j];
      }
    }
  }
}

// Ascending in-place sort of a[0, n) by the whole block (bitonic network in its "flip" form, where every
// compare-exchange puts the smaller key at the lower position). Positions >= n act as +inf, so pairs reaching
// past n are skipped and no padding is stored. Starts and ends with a barrier; `a` may be shared or global.
__device__ void block_bitonic_sort(uint64_t* a, int n) {
  __syncthreads();
  int p = 1;
  while (p < n) {
    p <<= 1;
  }
  for (int size = 2; size <= p; size <<= 1) {
    for (int h = size >> 1; h > 0; h >>= 1) {
      for (int t = threadIdx.x; t < (p >> 1); t += blockDim.x) {
        const int lo = ((t & ~(h - 1)) << 1) | (t & (h - 1));
        const int hi = h == (size >> 1) ? lo ^ (size - 1) : lo + h;
        if (hi < n) {
          const uint64_t x = a[lo];
          const uint64_t y = a[hi];
          if (x > y) {
            a[lo] = y;
            a[hi] = x;
          }
        }
      }
      __syncthreads();
    }
  }
}

// Key of point i for one query.
struct QueryKeys {
  float qx, qy, qz;

  template <typename scalar_t>
  __device__ __forceinline__ uint64_t key(const scalar_t* p, int i) const {
    const float d = sq_dist(static_cast<float>(p[3 * i]), static_cast<float>(p[3 * i + 1]),
                            static_cast<float>(p[3 * i + 2]), qx, qy, qz);
    return (static_cast<uint64_t>(__float_as_uint(d)) << 32) | static_cast<uint32_t>(i);
  }
};

// The rank-th smallest (1-based) of the unique keys of points [0, len): MSB-first radix selection, one 256-bin
// histogram per 8-bit digit over the keys that still match the chosen prefix.
template <typename scalar_t>
__device__ uint64_t block_radix_select(const QueryKeys& keys, const scalar_t* p, int len, uint32_t rank) {
  __shared__ uint32_t hist[256];
  __shared__ uint64_t s_prefix;
  __shared__ uint32_t s_rank;
  uint64_t prefix = 0, mask = 0;
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int t = threadIdx.x; t < 256; t += blockDim.x) {
      hist[t] = 0;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < len; i += blockDim.x) {
      const uint64_t key = keys.key(p, i);
      if ((key & mask) == prefix) {
        atomicAdd(&hist[(key >> shift) & 255], 1u);
      }
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      // Lane l owns bins [8l, 8l + 8): a warp prefix sum finds the lane, then the bin, holding the rank.
      const int lane = threadIdx.x;
      uint32_t c[8];
      uint32_t own = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        c[j] = hist[lane * 8 + j];
        own += c[j];
      }
      uint32_t incl = own;
#pragma unroll
      for (int off = 1; off < 32; off <<= 1) {
        const uint32_t v = __shfl_up_sync(kFullMask, incl, off);
        incl += lane >= off ? v : 0u;
      }
      const unsigned holders = __ballot_sync(kFullMask, incl >= rank);
      if (lane == __ffs(holders) - 1) {
        uint32_t r = rank - (incl - own);
        int bin = 7;
        bool found = false;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          if (!found && r <= c[j]) {
            bin = j;
            found = true;
          } else if (!found) {
            r -= c[j];
          }
        }
        s_prefix = prefix | (static_cast<uint64_t>(lane * 8 + bin) << shift);
        s_rank = r;
      }
    }
    __syncthreads();
    prefix = s_prefix;
    rank = s_rank;
    mask |= 0xffull << shift;
  }
  return prefix;
}

// One block per query (blockIdx.x = b * M + q). kSelect = false: sort all keys (len <= kSortCap, in shared
// memory). kSelect = true: radix-select the k-th key, gather the k keys <= it into `buf` (shared memory when
// smem_buf, else this query's k int64 idx slots), sort them.
template <typename scalar_t, bool kSelect>
__global__ void __launch_bounds__(kSortThreads)
    knn_sort_kernel(const scalar_t* __restrict__ queries, const scalar_t* __restrict__ points,
                    const int64_t* __restrict__ lengths, float* __restrict__ sq, int64_t* __restrict__ idx, int m,
                    int n, int k, bool smem_buf) {
  extern __shared__ uint64_t sbuf[];
  __shared__ uint32_t s_count;
  const int64_t row = blockIdx.x;
  const int b = static_cast<int>(row / m);
  const QueryKeys keys{static_cast<float>(queries[row * 3]), static_cast<float>(queries[row * 3 + 1]),
                       static_cast<float>(queries[row * 3 + 2])};
  const scalar_t* p = points + static_cast<int64_t>(b) * n * 3;
  const int len = static_cast<int>(lengths[b]);
  float* sq_row = sq + row * k;
  int64_t* idx_row = idx + row * k;
  uint64_t* buf = smem_buf ? sbuf : reinterpret_cast<uint64_t*>(idx_row);
  // k <= len is validated in Python; clamping keeps a violation memory-safe (missing slots: inf, -1).
  const int count = kSelect ? min(k, len) : len;
  if constexpr (kSelect) {
    const uint64_t kth = block_radix_select(keys, p, len, static_cast<uint32_t>(count));
    if (threadIdx.x == 0) {
      s_count = 0;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < len; i += blockDim.x) {
      const uint64_t key = keys.key(p, i);
      if (key <= kth) {
        buf[atomicAdd(&s_count, 1u)] = key;  // exactly `count` keys qualify; the sort fixes their order
      }
    }
  } else {
    for (int i = threadIdx.x; i < len; i += blockDim.x) {
      buf[i] = keys.key(p, i);
    }
  }
  block_bitonic_sort(buf, count);
  // When buf aliases idx_row, slot j is read and rewritten by the same thread only.
  for (int j = threadIdx.x; j < k; j += blockDim.x) {
    const uint64_t key = j < count ? buf[j] : 0ull;
    sq_row[j] = j < count ? __uint_as_float(static_cast<uint32_t>(key >> 32)) : INFINITY;
    idx_row[j] = j < count ? static_cast<int64_t>(static_cast<uint32_t>(key)) : -1;
  }
}

template <typename scalar_t>
void launch_register(const at::Tensor& qs, const at::Tensor& pts, const at::Tensor& len, at::Tensor& sq,
                     at::Tensor& idx, int batch, int m, int n, int k, int sms, cudaStream_t stream) {
  const int threads = register_threads(batch, m, sms);
  const int query_blocks = static_cast<int>(ceil_div(m, threads));
  const int64_t blocks = static_cast<int64_t>(batch) * query_blocks;
  TORCH_CHECK(blocks <= INT_MAX, "knn_cuda: too many queries for one launch (", blocks, " blocks)");
  const auto* q = qs.data_ptr<scalar_t>();
  const auto* p = pts.data_ptr<scalar_t>();
  const auto* l = len.data_ptr<int64_t>();
  auto* s = sq.data_ptr<float>();
  auto* o = idx.data_ptr<int64_t>();
  const int grid = static_cast<int>(blocks);
#define CROSSJEPA_KNN_REGISTER(K) \
  knn_register_kernel<scalar_t, K><<<grid, threads, 0, stream>>>(q, p, l, s, o, m, n, k, query_blocks)
  if (k <= 1) {
    CROSSJEPA_KNN_REGISTER(1);
  } else if (k <= 2) {
    CROSSJEPA_KNN_REGISTER(2);
  } else if (k <= 4) {
    CROSSJEPA_KNN_REGISTER(4);
  } else if (k <= 8) {
    CROSSJEPA_KNN_REGISTER(8);
  } else if (k <= 16) {
    CROSSJEPA_KNN_REGISTER(16);
  } else {
    CROSSJEPA_KNN_REGISTER(32);
  }
#undef CROSSJEPA_KNN_REGISTER
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
void launch_sort(const at::Tensor& qs, const at::Tensor& pts, const at::Tensor& len, at::Tensor& sq,
                 at::Tensor& idx, int batch, int m, int n, int k, bool select, cudaStream_t stream) {
  const int64_t blocks = static_cast<int64_t>(batch) * m;
  TORCH_CHECK(blocks <= INT_MAX, "knn_cuda: too many queries for one launch (", blocks, ")");
  const auto* q = qs.data_ptr<scalar_t>();
  const auto* p = pts.data_ptr<scalar_t>();
  const auto* l = len.data_ptr<int64_t>();
  auto* s = sq.data_ptr<float>();
  auto* o = idx.data_ptr<int64_t>();
  const int grid = static_cast<int>(blocks);
  if (select) {
    const bool smem_buf = k <= kSortCap;
    const size_t smem = smem_buf ? static_cast<size_t>(k) * sizeof(uint64_t) : 0;
    knn_sort_kernel<scalar_t, true><<<grid, kSortThreads, smem, stream>>>(q, p, l, s, o, m, n, k, smem_buf);
  } else {
    const size_t smem = static_cast<size_t>(n) * sizeof(uint64_t);
    knn_sort_kernel<scalar_t, false><<<grid, kSortThreads, smem, stream>>>(q, p, l, s, o, m, n, k, true);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> knn_cuda(const at::Tensor& queries, const at::Tensor& points,
                                            const at::Tensor& lengths, int64_t k, bool check_values) {
  TORCH_CHECK(points.is_cuda(), "knn_cuda: points must be a CUDA tensor, got ", points.device());
  c10::cuda::CUDAGuard guard(points.device());
  // Shapes, dtypes, devices, and lengths/k values (one host sync, skipped when the caller vouches for them
  // with check_values = false): nothing below reads out of bounds once this passes.
  crossjepa::check_knn_args(queries, points, lengths, k, check_values);
  const at::Tensor qs = queries.contiguous();
  const at::Tensor pts = points.contiguous();
  const at::Tensor len = lengths.contiguous();
  const int64_t batch = pts.size(0);
  const int64_t m = qs.size(1);
  const int64_t n = pts.size(1);
  TORCH_CHECK_VALUE(n <= INT_MAX / 3 && m <= INT_MAX && batch <= INT_MAX, "knn_cuda: input too large (", batch,
                    " clouds, ", m, " queries, ", n, " points)");
  at::Tensor sq = at::empty({batch, m, k}, pts.options().dtype(at::kFloat));
  at::Tensor idx = at::empty({batch, m, k}, pts.options().dtype(at::kLong));
  if (sq.numel() == 0) {
    return {sq, idx};
  }

  std::string path = crossjepa::cuda::path_override("CROSSJEPA_KNN_PATH");
  if (path.empty()) {
    path = k <= 32 ? "register" : (n <= kSortCap ? "sort" : "select");
  }
  TORCH_CHECK(path == "register" || path == "sort" || path == "select",
              "CROSSJEPA_KNN_PATH must be register, sort or select, got ", path);
  TORCH_CHECK(path != "register" || k <= 32, "CROSSJEPA_KNN_PATH=register needs k <= 32, got ", k);
  TORCH_CHECK(path != "sort" || n <= kSortCap, "CROSSJEPA_KNN_PATH=sort needs N <= ", kSortCap, ", got ", n);

  const int device = pts.get_device();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream(device);
  const int sms = crossjepa::cuda::device_limits(device).sms;
  const int b = static_cast<int>(batch);
  const int mi = static_cast<int>(m);
  const int ni = static_cast<int>(n);
  const int ki = static_cast<int>(k);
  CROSSJEPA_DISPATCH_POINT_TYPES(pts.scalar_type(), "knn_cuda",
                                  [&] {
                                    if (path == "register") {
                                      launch_register<scalar_t>(qs, pts, len, sq, idx, b, mi, ni, ki, sms, stream);
                                    } else {
                                      launch_sort<scalar_t>(qs, pts, len, sq, idx, b, mi, ni, ki,
                                                            path == "select", stream);
                                    }
                                  });
  return {sq, idx};
}
