// Farthest-point sampling on CUDA.
//
// Semantics (same as crossjepa/ops/reference.py): running minimum squared distance per point in float32; each
// iteration picks the largest, ties to the lowest index. The chosen point's distance becomes -1 and padding
// (index >= lengths[b]) starts at -inf, so neither can win again and indices stay unique for M <= length.
//
// The argmax is a max over packed 64-bit keys: high word = distance bits (non-negative floats order like their
// bits), low word = ~index (so equal distances prefer the lower index). Key 0 means "nothing eligible".
//
// Paths (CROSSJEPA_FPS_PATH=warp|block|global forces one, for tests and benchmarks):
//   warp   N <= 1024: one warp per cloud, several clouds per block, points in registers, no block barrier.
//   block  N <= 8192: one block per cloud, points in registers, one barrier per iteration.
//   global any N: one block per cloud, points and running distances in global memory (strided loop).
// The warp and block paths also keep a float copy of the cloud in shared memory, so that every thread fetches the
// newly chosen point's coordinates with one broadcast load instead of a dynamic register index.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <climits>
#include <string>

#include "../common/checks.h"
#include "../common/cuda_utils.cuh"

namespace {

using crossjepa::cuda::ceil_div;
using crossjepa::cuda::sq_dist;
using crossjepa::cuda::warp_max_key;

constexpr int kWarpsPerBlockMax = 4;
constexpr int kWarpPathMaxN = 1024;
constexpr int kBlockPathMaxN = 8192;
constexpr int kMaxThreads = 1024;

// Index encoded in a winning key; 0 only if no point was eligible (impossible for M <= length and
// finite input), mapped to index 0 so that a bad key can never address memory outside the cloud.
__device__ __forceinline__ int key_index(uint64_t key) {
  return key == 0 ? 0 : static_cast<int>(~static_cast<uint32_t>(key));
}

// Best (distance, index) of a thread as the two key words; points are visited in increasing index order and
// only a strictly larger distance replaces the best, so the lowest index wins ties.
__device__ __forceinline__ void best_to_key(float best, int best_i, uint32_t& hi, uint32_t& lo) {
  const bool eligible = best >= 0.f;
  hi = eligible ? __float_as_uint(best) : 0u;
  lo = eligible ? ~static_cast<uint32_t>(best_i) : 0u;
}

// One iteration for the P points a thread holds in registers (indices first + j * stride): fold the newly
// chosen point `sel` into the running minima and return this thread's best as key words.
template <int P>
__device__ __forceinline__ void update_registers(const float (&x)[P], const float (&y)[P], const float (&z)[P],
                                                 float (&d)[P], int first, int stride, int sel, float cx,
                                                 float cy, float cz, uint32_t& hi, uint32_t& lo) {
  float best = -1.f;
  int best_i = 0;
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int i = first + j * stride;
    // fminf keeps -1 (chosen) and -inf (padding) below every real distance.
    const float nd = i == sel ? -1.f : fminf(d[j], sq_dist(x[j], y[j], z[j], cx, cy, cz));
    d[j] = nd;
    if (nd > best) {
      best = nd;
      best_i = i;
    }
  }
  best_to_key(best, best_i, hi, lo);
}

// Registers <- shared-memory copy of the cloud; +inf for real points, -inf for padding.
template <int P>
__device__ __forceinline__ void init_registers(const float* sx, const float* sy, const float* sz, int len,
                                               int first, int stride, float (&x)[P], float (&y)[P],
                                               float (&z)[P], float (&d)[P]) {
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int i = first + j * stride;
    x[j] = 0.f;
    y[j] = 0.f;
    z[j] = 0.f;
    d[j] = -INFINITY;
    if (i < len) {
      x[j] = sx[i];
      y[j] = sy[i];
      z[j] = sz[i];
      d[j] = INFINITY;
    }
  }
}

// Warp path: warp w of the block owns cloud blockIdx.x * warps + w; lane l holds points l, l + 32, ...
// Shared memory: per warp 3 * N floats.
template <typename scalar_t, int P>
__global__ void __launch_bounds__(kWarpsPerBlockMax * 32)
    fps_warp_kernel(const scalar_t* __restrict__ points, const int64_t* __restrict__ lengths,
                    const int64_t* __restrict__ start, int64_t* __restrict__ out, int batch, int n, int m) {
  extern __shared__ float smem[];
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int b = blockIdx.x * (blockDim.x >> 5) + warp;
  if (b >= batch) {
    return;  // warps never synchronise with each other, so an idle warp may leave early
  }
  float* sx = smem + static_cast<int64_t>(warp) * 3 * n;
  float* sy = sx + n;
  float* sz = sy + n;
  const int len = static_cast<int>(lengths[b]);
  crossjepa::cuda::load_cloud_soa(points + static_cast<int64_t>(b) * n * 3, len, sx, sy, sz, lane, 32);
  __syncwarp();

  float x[P], y[P], z[P], d[P];
  init_registers<P>(sx, sy, sz, len, lane, 32, x, y, z, d);
  int64_t* o = out + static_cast<int64_t>(b) * m;
  int sel = static_cast<int>(start[b]);
  for (int it = 0;; ++it) {
    if (lane == 0) {
      o[it] = sel;
    }
    if (it + 1 == m) {
      break;
    }
    uint32_t hi, lo;
    update_registers<P>(x, y, z, d, lane, 32, sel, sx[sel], sy[sel], sz[sel], hi, lo);
    sel = key_index(warp_max_key(hi, lo));
  }
}

// Warp maxima -> block maximum. Slots are double-buffered by iteration parity: a warp can only overwrite a
// buffer two iterations later, after the next barrier, which every warp reaches only after reading it.
__device__ __forceinline__ int block_argmax(uint64_t (*slots)[32], int it, uint32_t hi, uint32_t lo) {
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  uint64_t* buf = slots[it & 1];
  const uint64_t key = warp_max_key(hi, lo);
  if (lane == 0) {
    buf[warp] = key;
  }
  __syncthreads();
  const uint64_t mine = lane < static_cast<int>(blockDim.x >> 5) ? buf[lane] : 0ull;
  return key_index(warp_max_key(static_cast<uint32_t>(mine >> 32), static_cast<uint32_t>(mine)));
}

// Block path: one cloud per block, thread t holds points t, t + blockDim.x, ... in registers.
// Dynamic shared memory: 3 * N floats.
template <typename scalar_t, int P>
__global__ void __launch_bounds__(kMaxThreads)
    fps_block_kernel(const scalar_t* __restrict__ points, const int64_t* __restrict__ lengths,
                     const int64_t* __restrict__ start, int64_t* __restrict__ out, int n, int m) {
  extern __shared__ float smem[];
  __shared__ uint64_t slots[2][32];
  const int b = blockIdx.x;
  float* sx = smem;
  float* sy = sx + n;
  float* sz = sy + n;
  const int len = static_cast<int>(lengths[b]);
  crossjepa::cuda::load_cloud_soa(points + static_cast<int64_t>(b) * n * 3, len, sx, sy, sz, threadIdx.x,
                                  blockDim.x);
  __syncthreads();

  float x[P], y[P], z[P], d[P];
  init_registers<P>(sx, sy, sz, len, threadIdx.x, blockDim.x, x, y, z, d);
  int64_t* o = out + static_cast<int64_t>(b) * m;
  int sel = static_cast<int>(start[b]);
  for (int it = 0;; ++it) {
    if (threadIdx.x == 0) {
      o[it] = sel;
    }
    if (it + 1 == m) {
      break;
    }
    uint32_t hi, lo;
    update_registers<P>(x, y, z, d, threadIdx.x, blockDim.x, sel, sx[sel], sy[sel], sz[sel], hi, lo);
    sel = block_argmax(slots, it, hi, lo);
  }
}

// Global path for clouds too large for registers: running distances live in `dist` (B, N), each thread
// touching only its own strided indices, so no synchronisation is needed on them.
template <typename scalar_t>
__global__ void __launch_bounds__(kMaxThreads)
    fps_global_kernel(const scalar_t* __restrict__ points, const int64_t* __restrict__ lengths,
                      const int64_t* __restrict__ start, int64_t* __restrict__ out, float* __restrict__ dist,
                      int n, int m) {
  __shared__ uint64_t slots[2][32];
  const int b = blockIdx.x;
  const scalar_t* p = points + static_cast<int64_t>(b) * n * 3;
  float* dd = dist + static_cast<int64_t>(b) * n;
  const int len = static_cast<int>(lengths[b]);
  for (int i = threadIdx.x; i < len; i += blockDim.x) {
    dd[i] = INFINITY;
  }
  int64_t* o = out + static_cast<int64_t>(b) * m;
  int sel = static_cast<int>(start[b]);
  for (int it = 0;; ++it) {
    if (threadIdx.x == 0) {
      o[it] = sel;
    }
    if (it + 1 == m) {
      break;
    }
    const float cx = static_cast<float>(p[3 * sel]);
    const float cy = static_cast<float>(p[3 * sel + 1]);
    const float cz = static_cast<float>(p[3 * sel + 2]);
    float best = -1.f;
    int best_i = 0;
    for (int i = threadIdx.x; i < len; i += blockDim.x) {
      const float px = static_cast<float>(p[3 * i]);
      const float py = static_cast<float>(p[3 * i + 1]);
      const float pz = static_cast<float>(p[3 * i + 2]);
      const float nd = i == sel ? -1.f : fminf(dd[i], sq_dist(px, py, pz, cx, cy, cz));
      dd[i] = nd;
      if (nd > best) {
        best = nd;
        best_i = i;
      }
    }
    uint32_t hi, lo;
    best_to_key(best, best_i, hi, lo);
    sel = block_argmax(slots, it, hi, lo);
  }
}

int round_up_warp(int64_t threads) { return static_cast<int>(ceil_div(threads, 32) * 32); }

template <typename scalar_t>
void launch_warp(const at::Tensor& pts, const at::Tensor& len, const at::Tensor& st, at::Tensor& out, int batch,
                 int n, int m, int sms, cudaStream_t stream) {
  // Several clouds per block only once there are enough clouds to give every SM a block anyway.
  const int warps = batch >= kWarpsPerBlockMax * sms ? kWarpsPerBlockMax : (batch >= 2 * sms ? 2 : 1);
  const size_t smem = static_cast<size_t>(warps) * 3 * n * sizeof(float);
  const int blocks = static_cast<int>(ceil_div(batch, warps));
  const int per_lane = static_cast<int>(ceil_div(n, 32));
  const auto* p = pts.data_ptr<scalar_t>();
  const auto* l = len.data_ptr<int64_t>();
  const auto* s = st.data_ptr<int64_t>();
  auto* o = out.data_ptr<int64_t>();
#define CROSSJEPA_FPS_WARP(P) \
  fps_warp_kernel<scalar_t, P><<<blocks, warps * 32, smem, stream>>>(p, l, s, o, batch, n, m)
  if (per_lane <= 4) {
    CROSSJEPA_FPS_WARP(4);
  } else if (per_lane <= 8) {
    CROSSJEPA_FPS_WARP(8);
  } else if (per_lane <= 16) {
    CROSSJEPA_FPS_WARP(16);
  } else {
    CROSSJEPA_FPS_WARP(32);
  }
#undef CROSSJEPA_FPS_WARP
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
void launch_block(const at::Tensor& pts, const at::Tensor& len, const at::Tensor& st, at::Tensor& out, int batch,
                  int n, int m, int device, cudaStream_t stream) {
  const size_t smem = static_cast<size_t>(3) * n * sizeof(float);
  const auto* p = pts.data_ptr<scalar_t>();
  const auto* l = len.data_ptr<int64_t>();
  const auto* s = st.data_ptr<int64_t>();
  auto* o = out.data_ptr<int64_t>();
  if (n <= 4 * kMaxThreads) {
    const int threads = std::max(32, round_up_warp(ceil_div(n, 4)));
    crossjepa::cuda::allow_max_dynamic_smem<fps_block_kernel<scalar_t, 4>>(device);
    fps_block_kernel<scalar_t, 4><<<batch, threads, smem, stream>>>(p, l, s, o, n, m);
  } else {
    const int threads = round_up_warp(ceil_div(n, 8));
    crossjepa::cuda::allow_max_dynamic_smem<fps_block_kernel<scalar_t, 8>>(device);
    fps_block_kernel<scalar_t, 8><<<batch, threads, smem, stream>>>(p, l, s, o, n, m);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
void launch_global(const at::Tensor& pts, const at::Tensor& len, const at::Tensor& st, at::Tensor& out, int batch,
                   int n, int m, cudaStream_t stream) {
  at::Tensor dist = at::empty({batch, n}, pts.options().dtype(at::kFloat));
  const int threads = std::min(kMaxThreads, std::max(32, round_up_warp(n)));
  fps_global_kernel<scalar_t><<<batch, threads, 0, stream>>>(
      pts.data_ptr<scalar_t>(), len.data_ptr<int64_t>(), st.data_ptr<int64_t>(), out.data_ptr<int64_t>(),
      dist.data_ptr<float>(), n, m);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

at::Tensor fps_cuda(const at::Tensor& points, const at::Tensor& lengths, const at::Tensor& start,
                    int64_t num_samples, bool check_values) {
  TORCH_CHECK(points.is_cuda(), "fps_cuda: points must be a CUDA tensor, got ", points.device());
  c10::cuda::CUDAGuard guard(points.device());
  // Shapes, dtypes, devices, and lengths/start/num_samples values (one host sync, skipped when the caller
  // vouches for them with check_values = false): nothing below reads out of bounds once this passes.
  crossjepa::check_fps_args(points, lengths, start, num_samples, check_values);
  const at::Tensor pts = points.contiguous();
  const at::Tensor len = lengths.contiguous();
  const at::Tensor st = start.contiguous();
  const int64_t batch = pts.size(0);
  const int64_t n = pts.size(1);
  TORCH_CHECK_VALUE(n <= INT_MAX / 3 && batch <= INT_MAX, "fps_cuda: at most ", INT_MAX / 3,
                    " points per cloud and ", INT_MAX, " clouds, got ", batch, " x ", n);
  at::Tensor out = at::empty({batch, num_samples}, pts.options().dtype(at::kLong));
  if (batch == 0) {
    return out;
  }

  const int device = pts.get_device();
  const crossjepa::cuda::DeviceLimits& limits = crossjepa::cuda::device_limits(device);
  const int sms = limits.sms;
  const int64_t smem_optin = limits.smem_optin;
  const bool block_fits = n <= kBlockPathMaxN && 3 * n * static_cast<int64_t>(sizeof(float)) + 512 <= smem_optin;
  std::string path = crossjepa::cuda::path_override("CROSSJEPA_FPS_PATH");
  if (path.empty()) {
    // Warp path when it is cheap per cloud (small N) or when there are enough clouds to fill the GPU;
    // otherwise spreading one cloud over a block gives lower latency per iteration.
    if (n <= kWarpPathMaxN && (n <= 256 || batch >= 2 * sms)) {
      path = "warp";
    } else {
      path = block_fits ? "block" : "global";
    }
  }
  TORCH_CHECK(path == "warp" || path == "block" || path == "global",
              "CROSSJEPA_FPS_PATH must be warp, block or global, got ", path);
  TORCH_CHECK(path != "warp" || n <= kWarpPathMaxN, "CROSSJEPA_FPS_PATH=warp needs N <= ", kWarpPathMaxN,
              ", got ", n);
  TORCH_CHECK(path != "block" || block_fits, "CROSSJEPA_FPS_PATH=block needs N <= ", kBlockPathMaxN,
              " and 12*N bytes of shared memory, got N=", n);

  const cudaStream_t stream = at::cuda::getCurrentCUDAStream(device);
  const int b = static_cast<int>(batch);
  const int ni = static_cast<int>(n);
  const int m = static_cast<int>(num_samples);
  CROSSJEPA_DISPATCH_POINT_TYPES(pts.scalar_type(), "fps_cuda",
                                  [&] {
                                    if (path == "warp") {
                                      launch_warp<scalar_t>(pts, len, st, out, b, ni, m, sms, stream);
                                    } else if (path == "block") {
                                      launch_block<scalar_t>(pts, len, st, out, b, ni, m, device, stream);
                                    } else {
                                      launch_global<scalar_t>(pts, len, st, out, b, ni, m, stream);
                                    }
                                  });
  return out;
}
