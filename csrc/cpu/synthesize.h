// lsn_fast._C: fused synthesis kernel (synthesize.cpp); bindings registered into the module.
#pragma once
#include <pybind11/pybind11.h>

void register_synthesize(pybind11::module_& m);
