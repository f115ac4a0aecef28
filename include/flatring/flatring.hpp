// flatring: verified FlatBuffers records over a lock-free shared-memory ring.
//
//   layout.hpp     the shared-memory layout (a contract between separately built processes)
//   segment.hpp    naming, creating, opening and validating a segment; attaching to it (Ring)
//   endpoint.hpp   the endpoint skeleton every mode shares: Writer<M>, Reader<M>
//   wait.hpp       futex waiting and the sleep handshake's fences
//   wait_fd.hpp    WaitFd: a pollable descriptor per endpoint (epoll, poll, select, asyncio)
//   wait_set.hpp   WaitSet: one thread sleeps on many endpoints of any mode (futex_waitv)
//   spsc.hpp, broadcast.hpp, mpsc.hpp, mpmc.hpp   one policy per mode
//   schema.hpp     the ring's stored binary schema, compatibility, RecordVerifier
//   typed.hpp      Producer<Root, M>, Consumer<Root, M>: verified FlatBuffers records
//   dynamic.hpp    DynamicConsumer<M>: records verified against a binary schema, no generated code
#pragma once

#include "flatring/broadcast.hpp"   // IWYU pragma: export
#include "flatring/deprecated.hpp"  // IWYU pragma: export
#include "flatring/dynamic.hpp"     // IWYU pragma: export
#include "flatring/endpoint.hpp"    // IWYU pragma: export
#include "flatring/layout.hpp"      // IWYU pragma: export
#include "flatring/liveness.hpp"    // IWYU pragma: export
#include "flatring/mode.hpp"        // IWYU pragma: export
#include "flatring/mpmc.hpp"        // IWYU pragma: export
#include "flatring/mpsc.hpp"        // IWYU pragma: export
#include "flatring/schema.hpp"      // IWYU pragma: export
#include "flatring/segment.hpp"     // IWYU pragma: export
#include "flatring/spsc.hpp"        // IWYU pragma: export
#include "flatring/status.hpp"      // IWYU pragma: export
#include "flatring/typed.hpp"       // IWYU pragma: export
#include "flatring/wait.hpp"        // IWYU pragma: export
#include "flatring/wait_fd.hpp"     // IWYU pragma: export
#include "flatring/wait_set.hpp"    // IWYU pragma: export
