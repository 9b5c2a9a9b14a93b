// pybind11 module lsn_fast._C: C++17 + OpenMP kernels. Kernels take raw pointers and shapes;
// the Python API layer (lsn_fast/) validates every argument before calling in.
#include <pybind11/pybind11.h>

#include "synthesize.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

static int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "lsn_fast CPU kernels (C++17, OpenMP)";
  m.def("max_threads", &max_threads, "OpenMP threads available to the kernels");
  m.attr("has_openmp") =
#ifdef _OPENMP
      true;
#else
      false;
#endif
  register_synthesize(m);  // synthesize, philox4x32, synthesize_isa (synthesize.cpp)
}
