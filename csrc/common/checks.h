// Argument checks shared by the CPU and CUDA entry points of every op (fps_cpu/fps_cuda, knn_*,
// group_gather_*), run on the host before any kernel launch: a direct call of crossjepa._C with bad
// arguments raises (TypeError for dtypes, ValueError otherwise; messages name the argument) and never
// reads out of bounds. Host-only code (compiled by the C++ compiler), so the .cu files only need this
// declaration.
//
// Values that live on the device (lengths, start, idx) are reduced there to a few numbers (min/max) that are
// copied back in one transfer: one host sync per call on CUDA. Chosen over clamping in the kernels with a
// device-side error flag, which needs the same sync to raise anything, and over device asserts, which leave
// the CUDA context unusable. check_values = false skips only these value checks (shapes, dtypes and devices
// cost no sync and are always checked): crossjepa.ops passes it, having validated in Python every value it
// did not build itself, so a training step makes no host sync.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace crossjepa {

// points (B,N,3) float32/float16/bfloat16; lengths (B,) int64 in [1, N] and start (B,) int64 with
// 0 <= start[b] < lengths[b], both on the points' device; 1 <= num_samples <= min(lengths).
void check_fps_args(const at::Tensor& points, const at::Tensor& lengths, const at::Tensor& start,
                    int64_t num_samples, bool check_values);

// queries (B,M,3) and points (B,N,3) of one dtype (float32/float16/bfloat16) and device; lengths (B,) int64
// in [1, N] on that device; 1 <= k <= min(lengths).
void check_knn_args(const at::Tensor& queries, const at::Tensor& points, const at::Tensor& lengths, int64_t k,
                    bool check_values);

// points (B,N,3) and centers (B,M,3) of one dtype (float32/float16/bfloat16) and device; idx (B,M,k) int64 on
// that device with every value in [0, N).
void check_group_args(const at::Tensor& points, const at::Tensor& centers, const at::Tensor& idx,
                      bool check_values);

// How many value checks (the part check_values = false skips) have run in this process: lets the tests prove
// that a code path makes none.
int64_t value_check_count();

}  // namespace crossjepa
