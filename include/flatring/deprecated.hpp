// The endpoint names of flatring 0.1, kept for one release. Each maps to the one vocabulary
// (docs/api.md, "Names before 0.2"): the mode is a template argument, not a new family of names.
#pragma once

#include "flatring/endpoint.hpp"
#include "flatring/mode.hpp"
#include "flatring/typed.hpp"

namespace flatring {

using BroadcastWriter [[deprecated("use Writer<Mode::broadcast>")]] = Writer<Mode::broadcast>;
using BroadcastReader [[deprecated("use Reader<Mode::broadcast>")]] = Reader<Mode::broadcast>;
using MpscWriter [[deprecated("use Writer<Mode::mpsc>")]] = Writer<Mode::mpsc>;
using MpscReader [[deprecated("use Reader<Mode::mpsc>")]] = Reader<Mode::mpsc>;
using MpmcWriter [[deprecated("use Writer<Mode::mpmc>")]] = Writer<Mode::mpmc>;
using MpmcReader [[deprecated("use Reader<Mode::mpmc>")]] = Reader<Mode::mpmc>;

template <class Root>
using BroadcastProducer [[deprecated("use Producer<Root, Mode::broadcast>")]] =
    Producer<Root, Mode::broadcast>;
template <class Root>
using BroadcastConsumer [[deprecated("use Consumer<Root, Mode::broadcast>")]] =
    Consumer<Root, Mode::broadcast>;
template <class Root>
using MpscProducer [[deprecated("use Producer<Root, Mode::mpsc>")]] = Producer<Root, Mode::mpsc>;
template <class Root>
using MpscConsumer [[deprecated("use Consumer<Root, Mode::mpsc>")]] = Consumer<Root, Mode::mpsc>;
template <class Root>
using MpmcProducer [[deprecated("use Producer<Root, Mode::mpmc>")]] = Producer<Root, Mode::mpmc>;
template <class Root>
using MpmcConsumer [[deprecated("use Consumer<Root, Mode::mpmc>")]] = Consumer<Root, Mode::mpmc>;

}  // namespace flatring
