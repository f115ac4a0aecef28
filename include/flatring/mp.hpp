// The multi-party ring modes and their typed endpoints. See docs/design-mp.md.
//   broadcast  one producer, many consumers, every consumer sees every record (broadcast.hpp)
//   mpsc       many producers, one consumer (mpsc.hpp)
//   mpmc       many producers, many consumers, each record to exactly one consumer (mpmc.hpp)
#pragma once

#include "flatring/broadcast.hpp"  // IWYU pragma: export
#include "flatring/mpmc.hpp"       // IWYU pragma: export
#include "flatring/mpsc.hpp"       // IWYU pragma: export
#include "flatring/typed.hpp"      // IWYU pragma: export

namespace flatring {

/// Typed endpoints of a broadcast ring.
template <class Root>
using BroadcastProducer = Producer<Root, BroadcastWriter>;
template <class Root>
using BroadcastConsumer = Consumer<Root, BroadcastReader>;

/// Typed endpoints of an mpsc ring.
template <class Root>
using MpscProducer = Producer<Root, MpscWriter>;
template <class Root>
using MpscConsumer = Consumer<Root, MpscReader>;

/// Typed endpoints of an mpmc ring.
template <class Root>
using MpmcProducer = Producer<Root, MpmcWriter>;
template <class Root>
using MpmcConsumer = Consumer<Root, MpmcReader>;

}  // namespace flatring
