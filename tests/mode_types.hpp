// The four modes as types, for TEMPLATE_TEST_CASE: TestType::value is the Mode.
#pragma once

#include <type_traits>

#include <flatring/mode.hpp>

namespace fr_test {
using Spsc = std::integral_constant<flatring::Mode, flatring::Mode::spsc>;
using Mpsc = std::integral_constant<flatring::Mode, flatring::Mode::mpsc>;
using Mpmc = std::integral_constant<flatring::Mode, flatring::Mode::mpmc>;
using Broadcast = std::integral_constant<flatring::Mode, flatring::Mode::broadcast>;
}  // namespace fr_test

/// Every mode, for TEMPLATE_TEST_CASE(name, tags, FR_ALL_MODES).
#define FR_ALL_MODES fr_test::Spsc, fr_test::Mpsc, fr_test::Mpmc, fr_test::Broadcast
