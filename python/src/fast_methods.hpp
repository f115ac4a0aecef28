// The hot methods (send, try_send, receive, try_receive) as plain METH_FASTCALL methods, bypassing
// pybind11's generic dispatcher: at 64-byte messages the dispatcher's argument vectors and
// loaders cost more than the ring operation itself (see docs/benchmarks.md, Python section).
#pragma once

#include <pybind11/pybind11.h>

namespace flatring::python {

/// Replaces the pybind11 definitions of the hot methods on the Producer and Consumer classes by
/// fast ones with the same signatures and behaviour. Once, at import.
void install_fast_methods(pybind11::handle producer_class, pybind11::handle consumer_class);

}  // namespace flatring::python
