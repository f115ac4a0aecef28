// flatring: verified FlatBuffers records over a lock-free shared-memory ring.
#pragma once

#include "flatring/layout.hpp"    // IWYU pragma: export
#include "flatring/liveness.hpp"  // IWYU pragma: export
#include "flatring/mp.hpp"        // IWYU pragma: export
#include "flatring/ring.hpp"      // IWYU pragma: export
#include "flatring/segment.hpp"   // IWYU pragma: export
#include "flatring/status.hpp"    // IWYU pragma: export
#include "flatring/typed.hpp"     // IWYU pragma: export
#include "flatring/wait.hpp"      // IWYU pragma: export
