// Outcomes as Python exceptions: flatring::Error (set-up) and Status (the hot path) map onto the
// classes of flatring/_errors.py, so Python code catches flatring.NotFound or FileNotFoundError,
// flatring.PeerDead or EOFError, flatring.Timeout or TimeoutError.
#pragma once

#include <string>
#include <string_view>

#include <pybind11/pybind11.h>

#include <flatring/status.hpp>

namespace flatring::python {

/// Imports flatring._errors and registers the translator of flatring::Error. Once, at import.
void register_errors(pybind11::module_& m);

/// Raises the exception for `s` (not ok, full or empty: those are results, not errors), its
/// message naming the ring and the outcome.
[[noreturn]] void raise_status(Status s, std::string_view ring, std::string_view detail = {});

/// Sets the Python error for a flatring::Error (as the registered translator does).
void set_error_for(const Error& e);

/// Raises flatring.<cls>(message) with `.code` set to `code`.
[[noreturn]] void raise_error(const char* cls, std::string_view code, const std::string& message);

}  // namespace flatring::python
