// Block size of kNN's register path (knn_cuda.cu). Host code in plain C++, so a test compiles it without CUDA.
#pragma once

#include <algorithm>
#include <cstdint>

namespace crossjepa::knn {

constexpr int kWarp = 32;
constexpr int kRegisterThreads = 128;  // the kernel's __launch_bounds__

// Threads per block of the register path: one thread per query, up to kRegisterThreads queries of one cloud per
// block, always whole warps. While the grid would leave SMs without a block (e.g. 64 clouds of 128 queries on a
// 132-SM GPU) the block halves, rounded up to whole warps (4 -> 2 -> 1 warps, 3 -> 2 -> 1), down to one warp. Each
// query is still scanned by one thread over the same points in the same order, so results do not depend on it.
inline int register_threads(int64_t batch, int64_t m, int sms) {
  int warps = static_cast<int>(std::min<int64_t>(kRegisterThreads / kWarp, (m + kWarp - 1) / kWarp));
  const auto blocks = [&](int w) { return batch * ((m + int64_t{kWarp} * w - 1) / (int64_t{kWarp} * w)); };
  while (warps > 1 && blocks(warps) < sms) {
    warps = (warps + 1) / 2;
  }
  return kWarp * warps;
}

}  // namespace crossjepa::knn
