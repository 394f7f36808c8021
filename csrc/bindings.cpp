// The crossjepa._C extension: Python bindings of the point ops. Every kernel entry checks shapes, dtypes,
// devices and the values it indexes with (lengths, start, k, idx) before launching (common/checks.h), so a
// direct call with bad arguments raises ValueError or TypeError and never reads out of bounds. crossjepa.ops,
// which validates in Python first, passes check_values=False to skip the value checks (a host sync on CUDA).
#include <torch/extension.h>

#include "common/checks.h"
#include "fps/fps.h"
#include "group/group.h"
#include "knn/knn.h"

namespace py = pybind11;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "crossjepa point ops (farthest-point sampling, kNN, grouping): CPU and CUDA kernels";
  m.def("fps", &fps, "Farthest-point sampling -> (B, num_samples) int64", py::arg("points"), py::arg("lengths"),
        py::arg("start"), py::arg("num_samples"), py::kw_only(), py::arg("check_values") = true,
        py::call_guard<py::gil_scoped_release>());
  m.def("knn", &knn, "k nearest neighbours -> (sq_dists float32 (B,M,k), idx int64 (B,M,k))", py::arg("queries"),
        py::arg("points"), py::arg("lengths"), py::arg("k"), py::kw_only(), py::arg("check_values") = true,
        py::call_guard<py::gil_scoped_release>());
  m.def("group_gather", &group_gather, "points[idx] - centers -> (B,M,k,3)", py::arg("points"), py::arg("centers"),
        py::arg("idx"), py::kw_only(), py::arg("check_values") = true, py::call_guard<py::gil_scoped_release>());
  m.def("value_check_count", &crossjepa::value_check_count,
        "How many host-side value checks (skipped with check_values=False) have run in this process");
  m.def("with_cuda", [] {
#ifdef WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "Whether the CUDA kernels were compiled in");
}
