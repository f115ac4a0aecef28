// The multi-party ring modes and their typed endpoints. See docs/design-mp.md.
//   broadcast  one producer, many consumers, every consumer sees every record (broadcast.hpp)
#pragma once

#include "flatring/broadcast.hpp"  // IWYU pragma: export
#include "flatring/typed.hpp"      // IWYU pragma: export

namespace flatring {

/// Typed endpoints of a broadcast ring.
template <class Root>
using BroadcastProducer = Producer<Root, BroadcastWriter>;
template <class Root>
using BroadcastConsumer = Consumer<Root, BroadcastReader>;

}  // namespace flatring
