// tail and send: records as JSON, through the ring's stored schema or a --schema file.
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <flatring/flatring.hpp>
#include <flatring/typed.hpp>

#include "commands.hpp"
#include "exit_codes.hpp"
#include "format.hpp"
#include "inspect.hpp"
#include "observer.hpp"
#include "schema_file.hpp"

namespace flatring::tool {

using nlohmann::json;

namespace {

Ring open_existing(const std::string& name) {
  Ring::validate_name(name);
  if (!Ring::exists(name)) {
    throw ToolError(Exit::not_found,
                    fmt::format("no ring named '{}' ({})", name, Ring::path_of(name)));
  }
  return Ring::open(name);
}

std::chrono::nanoseconds seconds(double s) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s));
}

// Prints one verified record. False when stdout is gone.
bool print_record(const SchemaFile& schema, std::uint64_t position,
                  std::span<const std::byte> bytes, const TailOptions& o, std::uint64_t& failures) {
  std::string text;
  std::string why;
  if (!schema.to_json(bytes, text, why)) {
    ++failures;
    warn(fmt::format("tail: record at position {} ({} bytes) skipped: {}", position, bytes.size(),
                     why));
    return true;
  }
  if (!o.json) return print_line(text);
  return print_json({{"position", position}, {"size", bytes.size()}, {"record", json::parse(text)}},
                    o.pretty);
}

struct TailCounts {
  std::uint64_t printed = 0;
  std::uint64_t failures = 0;
  std::uint64_t skipped_bytes = 0;
};

bool done(const TailOptions& o, const TailCounts& n) {
  return o.count != 0 && n.printed >= o.count;
}

// Watches without consuming (see observer.hpp).
void tail_observe(Ring ring, const SchemaFile& schema, const TailOptions& o, TailCounts& n) {
  Observer obs(std::move(ring));
  obs.start_at_last(o.last);
  while (!done(o, n) && !stop_requested()) {
    const Observed r = obs.next();
    switch (r.kind) {
      case Observed::Kind::record:
        if (!print_record(schema, r.position, r.bytes, o, n.failures)) return;
        ++n.printed;
        break;
      case Observed::Kind::skipped:
        n.skipped_bytes += r.end - r.position;
        warn(fmt::format(
            "tail: the consumer released positions {} to {} before they could be copied; "
            "those records are not shown",
            r.position, r.end));
        break;
      case Observed::Kind::corrupt:
        throw ToolError(Exit::bad_ring,
                        fmt::format("ring '{}': impossible shared state at position {}; stopped",
                                    o.name, r.position));
      case Observed::Kind::not_yet:
        if (!o.follow) return;
        sleep_for(o.poll);  // polling: an observer never adds a wake-up syscall to the producer
        break;
    }
  }
}

// Takes the consumer role (spsc, mpsc) or joins as one more consumer (broadcast, mpmc): every
// record shown is consumed.
template <Mode M>
void tail_consume(Ring ring, const SchemaFile& schema, const TailOptions& o, TailCounts& n) {
  Reader<M> reader(std::move(ring));
  flatring::detail::AlignedBuffer copy;
  while (!done(o, n) && !stop_requested()) {
    auto r = o.follow ? reader.read(seconds(std::max(o.poll, 0.1))) : reader.try_read();
    if (!r) {
      if (r.status() == Status::empty || r.status() == Status::timed_out) {
        if (!o.follow) return;
        continue;
      }
      if (r.status() == Status::peer_dead) continue;  // the producer died; a new one may come
      if (r.status() == Status::abandoned) {          // mpsc: a dead producer's claim was skipped
        warn(fmt::format("tail: a claim of a producer that died was skipped at position {}",
                         reader.position()));
        continue;
      }
      throw ToolError(Exit::bad_ring, fmt::format("ring '{}': {} at position {}; stopped", o.name,
                                                  to_string(r.status()), reader.position()));
    }
    const std::uint64_t position = r->position;
    const std::size_t size = r->bytes.size();
    std::byte* mine = copy.get(size == 0 ? 1 : size);
    std::memcpy(mine, r->bytes.data(), size);
    reader.release();  // the copy is ours: verify and print it at leisure
    const std::uint64_t before = n.failures;
    if (!print_record(schema, position, {mine, size}, o, n.failures)) return;
    if (n.failures != before) {
      reader.attachment().count(layout::verify_failures);
    } else {
      ++n.printed;
    }
  }
}

}  // namespace

void run_tail(const TailOptions& o) {
  Ring ring = open_existing(o.name);
  SchemaFile schema(schema_for_ring(ring.info(), o.schema, o.root_type, "tail"), o.pretty);
  TailCounts n;
  if (o.consume) {
    visit_mode(ring.info().mode,
               [&](auto mode) { tail_consume<mode()>(std::move(ring), schema, o, n); });
  } else {
    tail_observe(std::move(ring), schema, o, n);
  }
  if (n.failures != 0 || n.skipped_bytes != 0) {
    warn(fmt::format("tail: {} record{} shown, {} failed verification, {} bytes skipped", n.printed,
                     n.printed == 1 ? "" : "s", n.failures, n.skipped_bytes));
  }
}

// ---------------------------------------------------------------- send

namespace {

struct InputRecord {
  std::string json;
  std::string where;  // "line 3" or "element 2", for messages
};

std::string read_input(const std::string& path) {
  if (path == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ToolError(Exit::bad_input, fmt::format("cannot read JSON input '{}'", path));
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string json_message(const json::exception& e) {
  std::string_view m = e.what();  // "[json.exception.parse_error.101] parse error at ..."
  if (const auto p = m.find("] "); !m.empty() && m.front() == '[' && p != std::string_view::npos) {
    m.remove_prefix(p + 2);
  }
  return std::string(m);
}

// A JSON array of objects, or newline-delimited objects (blank lines ignored).
std::vector<InputRecord> split_records(const std::string& text) {
  std::vector<InputRecord> out;
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return out;
  if (text[first] == '[') {
    json all;
    try {
      all = json::parse(text);
    } catch (const json::exception& e) {
      throw ToolError(Exit::bad_input, fmt::format("malformed JSON: {}", json_message(e)));
    }
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (!all[i].is_object()) {
        throw ToolError(Exit::bad_input,
                        fmt::format("element {}: a record must be a JSON object", i + 1));
      }
      out.push_back({all[i].dump(-1, ' ', false), fmt::format("element {}", i + 1)});
    }
    return out;
  }
  std::istringstream lines(text);
  std::string line;
  for (std::size_t no = 1; std::getline(lines, line); ++no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      throw ToolError(Exit::bad_input,
                      fmt::format("malformed JSON on line {}: {}", no, json_message(e)));
    }
    if (!j.is_object()) {
      throw ToolError(Exit::bad_input, fmt::format("line {}: a record must be a JSON object", no));
    }
    out.push_back({j.dump(-1, ' ', false), fmt::format("line {}", no)});
  }
  return out;
}

std::string_view why_not_sent(Status s) {
  switch (s) {
    case Status::timed_out: return "the ring stayed full until the timeout";
    case Status::no_consumer: return "the ring is full and no consumer is attached";
    case Status::peer_dead: return "the ring is full and its consumer died";
    default: return to_string(s);
  }
}

// Takes the producer role (spsc, broadcast) or a producer slot (mpsc, mpmc) and sends every
// record.
template <Mode M>
void send_all(const Ring& ring, const std::vector<std::vector<std::uint8_t>>& records,
              const SendOptions& o) {
  Writer<M> writer(ring);
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    const Status s =
        writer.write({reinterpret_cast<const std::byte*>(r.data()), r.size()}, seconds(o.timeout));
    if (s != Status::ok) {
      throw ToolError(Exit::not_delivered, fmt::format("record {} of {} not sent: {} ({} sent)",
                                                       i + 1, records.size(), why_not_sent(s), i));
    }
  }
}

}  // namespace

void run_send(const SendOptions& o) {
  Ring ring = open_existing(o.name);
  SchemaFile schema(schema_for_ring(ring.info(), o.schema, o.root_type, "send"), false);

  // Everything is parsed and built before anything is sent: bad input sends nothing.
  std::vector<std::vector<std::uint8_t>> records;
  for (const InputRecord& in : split_records(read_input(o.input))) {
    std::vector<std::uint8_t> fb;
    try {
      fb = schema.from_json(in.json);
    } catch (const ToolError& e) {
      throw ToolError(Exit::bad_input, fmt::format("{}: does not fit {}: {}", in.where,
                                                   schema.root_name(), e.what()));
    }
    if (fb.size() > ring.info().max_record_size) {
      throw ToolError(Exit::bad_input,
                      fmt::format("{}: the record is {} bytes; ring '{}' takes at most {}",
                                  in.where, fb.size(), o.name, ring.info().max_record_size));
    }
    records.push_back(std::move(fb));
  }

  visit_mode(ring.info().mode, [&](auto mode) { send_all<mode()>(ring, records, o); });
  if (!o.quiet) {
    print_line(fmt::format("sent {} record{} to {}", records.size(), records.size() == 1 ? "" : "s",
                           o.name));
  }
}

}  // namespace flatring::tool
