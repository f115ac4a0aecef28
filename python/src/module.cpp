// flatring._flatring: the C++ half of the flatring Python package (python/flatring/ is the
// rest). Rings, producers and consumers of every mode; records verified in C++.
#include <pthread.h>

#include <optional>
#include <string>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <flatring/flatring.hpp>

#include "consumer.hpp"
#include "errors.hpp"
#include "fast_methods.hpp"
#include "fork.hpp"
#include "producer.hpp"
#include "record_view.hpp"
#include "schema_arg.hpp"

namespace py = pybind11;
using namespace py::literals;

namespace flatring::python {

void install_fork_handler() {
  static const int installed = ::pthread_atfork(
      nullptr, nullptr, [] { detail::fork_generation.fetch_add(1, std::memory_order_relaxed); });
  (void)installed;
}

namespace {

/// flatring.Ring: a mapped ring segment (create/open), the factory of its endpoints.
struct RingHandle {
  Ring ring;
  std::optional<Schema> schema;  // the caller's, checked at open (None: the ring's own)
  bool created = false;
};

Mode mode_from(const std::string& s) {
  const std::optional<Mode> m = parse_mode(s);
  if (!m)
    throw py::value_error("mode must be 'spsc', 'mpsc', 'mpmc' or 'broadcast', not '" + s + "'");
  return *m;
}

py::object bfbs_or_none(const Schema& s) {
  if (s.empty()) return py::none();
  const auto b = s.bfbs();
  return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
}

py::object schema_state(const std::optional<Schema>& s) {
  return s ? bfbs_or_none(*s) : py::none();
}

std::optional<Schema> schema_from_state(py::handle h) { return schema_from_arg(h); }

const char* const kCounterNames[layout::kCounterCount] = {
    "records_written", "bytes_written",   "records_read",      "bytes_read",
    "verify_failures", "corrupt_records", "abandoned_records", "too_large",
    "full_waits",      "empty_waits",     "futex_sleeps",      "futex_wakes"};

/// The ring's statistics: the counters of every attached peer plus the retired totals. Values
/// come from shared memory: numbers only, and approximate while peers run.
py::dict ring_stats(const Ring& ring) {
  const layout::Control& c = ring.control();
  std::uint64_t sum[layout::kCounterCount] = {};
  for (std::uint32_t k = 0; k < layout::kCounterCount; ++k)
    sum[k] = c.retired.value[k].load(std::memory_order_relaxed);
  for (const layout::PeerSlot& s : c.peers) {
    const std::uint32_t pid = s.pid.load(std::memory_order_acquire);
    if (pid == 0 || pid == layout::kReaping) continue;
    for (std::uint32_t k = 0; k < layout::kCounterCount; ++k)
      sum[k] += s.counter[k].load(std::memory_order_relaxed);
  }
  py::dict d;
  for (std::uint32_t k = 0; k < layout::kCounterCount; ++k) d[kCounterNames[k]] = sum[k];
  return d;
}

py::list ring_peers(const Ring& ring) {
  py::list out;
  const layout::Control& c = ring.control();
  for (std::uint32_t i = 0; i < layout::kMaxPeers; ++i) {
    const layout::PeerSlot& s = c.peers[i];
    const std::uint32_t pid = s.pid.load(std::memory_order_acquire);
    if (pid == 0 || pid == layout::kReaping) continue;
    const auto role = static_cast<layout::Role>(s.role.load(std::memory_order_acquire));
    const char* r = role == layout::Role::producer   ? "producer"
                    : role == layout::Role::consumer ? "consumer"
                    : role == layout::Role::observer ? "observer"
                                                     : "none";
    const bool alive = is_alive(ProcessToken{pid, s.start_time.load(std::memory_order_relaxed)});
    out.append(py::dict("slot"_a = i, "pid"_a = pid, "role"_a = r, "alive"_a = alive));
  }
  return out;
}

std::unique_ptr<Producer> make_producer(const RingHandle& h, bool lazy) {
  auto p = std::make_unique<Producer>(h.ring, h.schema);
  if (!lazy) p->attach();
  return p;
}

std::unique_ptr<Consumer> make_consumer(const RingHandle& h, bool lazy, bool eof) {
  auto c = std::make_unique<Consumer>(h.ring, h.schema, eof);
  if (!lazy) c->attach();
  return c;
}

}  // namespace
}  // namespace flatring::python

using flatring::CreateOptions;
using flatring::Mode;
using flatring::Ring;
using flatring::RingOptions;
using flatring::Schema;
using flatring::SchemaId;
using flatring::SegmentInfo;
using flatring::to_string;
using flatring::python::Consumer;
using flatring::python::Producer;
using flatring::python::RingHandle;
namespace layout = flatring::layout;
namespace fp = flatring::python;

PYBIND11_MODULE(_flatring, m) {
  m.doc() = "flatring's C++ core: rings, producers and consumers (use the flatring package)";
  fp::install_fork_handler();
  fp::register_errors(m);
  fp::register_record_buffer(m);

  m.attr("MAX_PEERS") = layout::kMaxPeers;
  m.attr("DEFAULT_CAPACITY") = RingOptions{}.capacity;

  py::class_<RingHandle>(m, "Ring", "A mapped ring segment; create() or open() one.")
      .def_property_readonly("name", [](const RingHandle& h) { return h.ring.info().name; })
      .def_property_readonly(
          "mode", [](const RingHandle& h) { return std::string(to_string(h.ring.info().mode)); })
      .def_property_readonly("capacity", [](const RingHandle& h) { return h.ring.info().capacity; })
      .def_property_readonly("max_record_size",
                             [](const RingHandle& h) { return h.ring.info().max_record_size; })
      .def_property_readonly(
          "schema",
          [](const RingHandle& h) { return fp::bfbs_or_none(h.ring.info().stored_schema); },
          "The binary schema stored in the ring (bytes), or None.")
      .def_property_readonly(
          "root_type",
          [](const RingHandle& h) -> py::object {
            const Schema& s = h.schema ? *h.schema : h.ring.info().stored_schema;
            if (s.empty()) return py::none();
            return py::str(s.root_name());
          },
          "The root table's fully qualified name, e.g. 'app.Order', or None for a raw ring.")
      .def_property_readonly("file_identifier",
                             [](const RingHandle& h) { return h.ring.info().schema.identifier(); })
      .def_property_readonly("raw", [](const RingHandle& h) { return h.ring.info().schema.raw(); })
      .def_property_readonly(
          "created", [](const RingHandle& h) { return h.created; },
          "True when this handle created the ring (its `with` block removes it).")
      .def_property_readonly("creator_pid",
                             [](const RingHandle& h) { return h.ring.info().creator.pid; })
      .def(
          "producer", [](const RingHandle& h, bool lazy) { return fp::make_producer(h, lazy); },
          py::kw_only(), "lazy"_a = false, "A producer of this ring (attaches now unless lazy).")
      .def(
          "consumer",
          [](const RingHandle& h, bool lazy, bool eof) { return fp::make_consumer(h, lazy, eof); },
          py::kw_only(), "lazy"_a = false, "eof"_a = true,
          "A consumer of this ring (attaches now unless lazy). eof: a blocking receive raises "
          "PeerDead once every producer has gone and everything was received; without, it waits "
          "for producers still to come.")
      .def(
          "stats", [](const RingHandle& h) { return fp::ring_stats(h.ring); },
          "Counters summed over the ring's peers (approximate while they run).")
      .def(
          "peers", [](const RingHandle& h) { return fp::ring_peers(h.ring); },
          "The attached peers: slot, pid, role, alive.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__",
           [](const RingHandle& h, py::args) {
             if (h.created) Ring::remove(h.ring.info().name);
           })
      .def(
          "remove", [](const RingHandle& h) { return Ring::remove(h.ring.info().name); },
          "Removes the ring's name (mappings stay valid). False if it was gone.")
      .def(py::pickle(
          [](const RingHandle& h) {
            return py::make_tuple(h.ring.info().name, fp::schema_state(h.schema));
          },
          [](const py::tuple& t) {
            RingHandle h;
            h.schema = fp::schema_from_state(t[1]);
            h.ring = fp::open_ring(t[0].cast<std::string>(), h.schema);
            return h;
          }))
      .def("__repr__", [](const RingHandle& h) {
        const SegmentInfo& i = h.ring.info();
        return "<flatring.Ring '" + i.name + "' " + std::string(to_string(i.mode)) +
               " capacity=" + std::to_string(i.capacity) +
               (i.stored_schema.empty() ? std::string(i.schema.raw() ? " raw" : "")
                                        : " schema=" + i.stored_schema.root_name()) +
               ">";
      });

  m.def(
      "create",
      [](const std::string& name, std::uint64_t capacity, std::uint64_t max_record_size,
         const std::string& mode, py::handle schema, unsigned permissions, bool reclaim_stale,
         bool prefault) {
        RingOptions o;
        o.capacity = capacity;
        o.max_record_size = max_record_size;
        o.mode = fp::mode_from(mode);
        o.permissions = permissions;
        CreateOptions c;
        c.reclaim_stale = reclaim_stale;
        c.prefault = prefault;
        RingHandle h;
        h.schema = fp::schema_from_arg(schema);
        h.ring =
            h.schema ? Ring::create(name, o, *h.schema, c) : Ring::create(name, o, SchemaId{}, c);
        h.created = true;
        return h;
      },
      "name"_a, py::kw_only(), "capacity"_a = RingOptions{}.capacity, "max_record_size"_a = 0,
      "mode"_a = "spsc", "schema"_a = py::none(), "permissions"_a = 0600, "reclaim_stale"_a = false,
      "prefault"_a = true);
  m.def(
      "open",
      [](const std::string& name, py::handle schema, py::handle mode) {
        RingHandle h;
        h.schema = fp::schema_from_arg(schema);
        std::optional<Mode> want;
        if (!mode.is_none()) want = fp::mode_from(mode.cast<std::string>());
        h.ring = fp::open_ring(name, h.schema, want);
        return h;
      },
      "name"_a, py::kw_only(), "schema"_a = py::none(), "mode"_a = py::none());
  m.def(
      "remove", [](const std::string& name) { return Ring::remove(name); }, "name"_a);
  m.def(
      "exists", [](const std::string& name) { return Ring::exists(name); }, "name"_a);
  m.def("list_rings", [] { return Ring::list(); });
  m.def("fork_generation", [] { return fp::fork_generation(); });

  auto producer_class =
      py::class_<Producer>(m, "Producer", "Sends bytes-like records into a ring.")
          .def("send", &Producer::send, "data"_a, "timeout"_a = py::none())
          .def("try_send", &Producer::try_send, "data"_a)
          .def("send_many", &Producer::send_many, "items"_a, "timeout"_a = py::none())
          .def(
              "send_json",
              [](Producer& p, const std::string& json, py::handle timeout) {
                p.send_json(json, timeout);
              },
              "json"_a, "timeout"_a = py::none())
          .def("close", &Producer::close)
          .def_property_readonly("closed", &Producer::closed)
          .def_property_readonly("name", [](const Producer& p) { return p.ring().info().name; })
          .def_property_readonly("max_record_size", &Producer::max_record_size)
          .def_property_readonly("slot_pid", &Producer::slot_pid,
                                 "The pid in this endpoint's peer slot (0 until it attached).")
          .def("__enter__", [](py::object self) { return self; })
          .def("__exit__", [](Producer& p, py::args) { p.close(); })
          .def(py::pickle(
              [](const Producer& p) {
                return py::make_tuple(p.ring().info().name, fp::schema_state(p.schema()));
              },
              [](const py::tuple& t) {
                std::optional<Schema> s = fp::schema_from_state(t[1]);
                auto p = std::make_unique<Producer>(fp::open_ring(t[0].cast<std::string>(), s), s);
                p->attach();
                return p;
              }));

  auto consumer_class =
      py::class_<Consumer>(m, "Consumer", "Receives verified records from a ring.")
          .def("receive", &Consumer::receive, "timeout"_a = py::none())
          .def("try_receive", &Consumer::try_receive)
          .def(
              "receive_view",
              [](py::object self, py::handle timeout) {
                return self.cast<Consumer&>().receive_view(self, timeout, true);
              },
              "timeout"_a = py::none())
          .def("try_receive_view",
               [](py::object self) {
                 return self.cast<Consumer&>().receive_view(self, py::none(), false);
               })
          .def(
              "receive_many",
              [](Consumer& c, std::size_t max, py::handle timeout) {
                return c.receive_many(max, timeout, true);
              },
              "max"_a = 64, "timeout"_a = py::none())
          .def(
              "try_receive_many",
              [](Consumer& c, std::size_t max) { return c.receive_many(max, py::none(), false); },
              "max"_a = 64)
          .def("receive_into", &Consumer::receive_into, "buffer"_a, "offset"_a = 0,
               "timeout"_a = py::none())
          .def("receive_json", &Consumer::receive_json, "timeout"_a = py::none())
          .def("poll", &Consumer::poll, "timeout"_a = 0.0)
          .def("fileno", &Consumer::fileno,
               "A descriptor that is readable while a receive would not wait (for selectors, "
               "multiprocessing.connection.wait, asyncio add_reader).")
          .def("release", &Consumer::release)
          .def("recover", &Consumer::recover)
          .def("close", &Consumer::close)
          .def_property_readonly("closed", &Consumer::closed)
          .def_property_readonly("name", [](const Consumer& c) { return c.ring().info().name; })
          .def_property_readonly("verifies", &Consumer::verifies)
          .def_property_readonly("redelivered", &Consumer::redelivered)
          .def_property_readonly("abandoned", &Consumer::abandoned)
          .def_property_readonly("rejected", &Consumer::rejected)
          .def_property_readonly("slot_pid", &Consumer::slot_pid)
          .def("__enter__", [](py::object self) { return self; })
          .def("__exit__", [](Consumer& c, py::args) { c.close(); })
          .def(py::pickle(
              [](const Consumer& c) {
                return py::make_tuple(c.ring().info().name, fp::schema_state(c.schema()), c.eof());
              },
              [](const py::tuple& t) {
                std::optional<Schema> s = fp::schema_from_state(t[1]);
                auto c = std::make_unique<Consumer>(fp::open_ring(t[0].cast<std::string>(), s), s,
                                                    t[2].cast<bool>());
                c->attach();
                return c;
              }));
  fp::install_fast_methods(producer_class, consumer_class);
}
