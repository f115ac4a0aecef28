// create, ls, stat, rm, gc, schema: the segment as a whole. Nothing here attaches to a ring.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <flatring/segment.hpp>

#include "commands.hpp"
#include "exit_codes.hpp"
#include "format.hpp"
#include "inspect.hpp"
#include "schema_file.hpp"

namespace flatring::tool {

using nlohmann::json;

namespace {

// The identity in the header and, when the ring stores its binary schema, its root type and size.
json schema_json(const SegmentInfo& info) {
  const SchemaId& id = info.schema;
  if (id.raw()) return nullptr;
  const Schema& stored = info.stored_schema;
  return {{"file_identifier", id.identifier()},
          {"hash", fmt::format("{:016x}", id.hash)},
          {"root_type", stored.empty() ? json(nullptr) : json(stored.root_name())},
          {"binary_schema_size", stored.bfbs().size()}};
}

json root_type_json(const SegmentInfo& info) {
  const std::string root = root_type_of(info);
  return root.empty() ? json(nullptr) : json(root);
}

// The SCHEMA column: the root type when the ring stores its schema, else the identity.
std::string schema_text(const SegmentInfo& info) {
  const std::string root = root_type_of(info);
  return root.empty() ? describe(info.schema) : root;
}

json counts_json(const Counts& c) {
  json j = json::object();
  for (std::uint32_t i = 0; i < layout::kCounterCount; ++i) j[std::string(counter_name(i))] = c[i];
  return j;
}

json peer_json(const PeerRow& p, Mode mode) {
  json j = {{"slot", p.slot},
            {"pid", p.reaping ? json(nullptr) : json(p.pid)},
            {"role", role_name(p.role)},
            {"alive", p.alive},
            {"reaping", p.reaping}};
  if (mode == Mode::broadcast) j["cursor"] = p.cursor;
  return j;
}

std::string peer_text(const PeerRow& p) {
  if (p.reaping) return fmt::format("{} (being reaped)", role_name(p.role));
  return fmt::format("{} {} {}", role_name(p.role), p.pid, p.alive ? "alive" : "dead");
}

std::string peers_text(const Snapshot& s) {
  if (s.peers.empty()) return "-";
  std::string out;
  for (const auto& p : s.peers) {
    if (!out.empty()) out += ", ";
    out += peer_text(p);
  }
  return out;
}

std::string fill_text(const Snapshot& s) {
  if (!s.positions_valid) return "corrupt";
  return fmt::format("{} ({:.1f}%)", human_size(s.fill()),
                     100.0 * static_cast<double>(s.fill()) / static_cast<double>(s.info.capacity));
}

json snapshot_json(const Snapshot& s) {
  json peers = json::array();
  for (const auto& p : s.peers) peers.push_back(peer_json(p, s.info.mode));
  return {{"name", s.info.name},
          {"mode", to_string(s.info.mode)},
          {"permissions", octal_mode(s.info.file_mode)},
          {"owner", user_name(s.info.owner_uid)},
          {"owner_uid", s.info.owner_uid},
          {"schema", schema_json(s.info)},
          {"root_type", root_type_json(s.info)},
          {"capacity", s.info.capacity},
          {"max_record_size", s.info.max_record_size},
          {"head", s.head},
          {"tail", s.tail},
          {"positions_valid", s.positions_valid},
          {"fill", s.fill()},
          {"creator", {{"pid", s.info.creator.pid}, {"alive", s.creator_alive}}},
          {"created_unix_ns", s.info.created_unix_ns},
          {"peers", peers},
          {"stale", s.stale()}};
}

// What a library error says, without the "flatring " prefix the tool's own prefix repeats.
std::string message_of(const std::exception& e) {
  std::string_view m = e.what();
  if (m.substr(0, 9) == "flatring ") m.remove_prefix(9);
  return std::string(m);
}

Snapshot snapshot_of(const std::string& name) {
  if (!Ring::exists(name)) {
    Ring::validate_name(name);
    throw ToolError(Exit::not_found,
                    fmt::format("no ring named '{}' ({})", name, Ring::path_of(name)));
  }
  return snapshot(open_for_inspection(name));
}

}  // namespace

// ---------------------------------------------------------------- create

void run_create(const CreateOptions& o) {
  RingOptions ro;
  ro.capacity = o.capacity;
  ro.max_record_size = o.max_record_size;
  const auto mode = parse_mode(o.mode);
  if (!mode)
    throw ToolError(Exit::usage,
                    fmt::format("unknown mode '{}' (spsc, mpsc, mpmc, broadcast)", o.mode));
  ro.mode = *mode;
  std::size_t used = 0;
  unsigned long perm = 0;
  try {
    perm = std::stoul(o.permissions, &used, 8);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != o.permissions.size() || perm > 0777) {
    throw ToolError(Exit::usage,
                    fmt::format("permissions '{}' are not an octal mode like 0600", o.permissions));
  }
  ro.permissions = static_cast<unsigned>(perm);
  // With a schema, the ring stores its binary schema: tail and send need no --schema for it.
  const Schema schema = o.schema.empty() ? Schema{} : load_schema_file(o.schema, o.root_type);
  Ring ring = Ring::create(o.name, ro, schema);
  const SegmentInfo& info = ring.info();
  const std::string root = root_type_of(info);
  if (o.json) {
    print_json({{"name", info.name},
                {"mode", to_string(info.mode)},
                {"capacity", info.capacity},
                {"max_record_size", info.max_record_size},
                {"permissions", octal_mode(info.file_mode)},
                {"schema", schema_json(info)},
                {"root_type", root_type_json(info)},
                {"path", Ring::path_of(info.name)}});
    return;
  }
  print_line(fmt::format("created {}: {}, capacity {}, max record {}, schema {}{}, {}", info.name,
                         to_string(info.mode), human_size(info.capacity),
                         human_size(info.max_record_size), describe(info.schema),
                         root.empty() ? "" : " (" + root + ")", Ring::path_of(info.name)));
}

// ---------------------------------------------------------------- ls

void run_ls(const LsOptions& o) {
  json all = json::array();
  Table t({"NAME", "MODE", "PERMS", "OWNER", "SCHEMA", "CAPACITY", "FILL", "STALE", "PEERS"});
  for (const std::string& name : Ring::list()) {
    try {
      const Snapshot s = snapshot(open_for_inspection(name));
      all.push_back(snapshot_json(s));
      t.add({name, std::string(to_string(s.info.mode)), permission_string(s.info.file_mode),
             user_name(s.info.owner_uid), schema_text(s.info), human_size(s.info.capacity),
             fill_text(s), s.stale() ? "yes" : "no", peers_text(s)});
    } catch (const Error& e) {
      // Listed, not fatal: a foreign, unready or damaged segment is worth seeing.
      all.push_back(
          {{"name", name}, {"error", message_of(e)}, {"error_code", to_string(e.code())}});
      t.add({name, "?", "?", "?", "?", "?", "?", "?", "error: " + message_of(e)});
    }
  }
  if (o.json) {
    print_json(all);
  } else {
    std::fputs(t.str().c_str(), stdout);
  }
}

// ---------------------------------------------------------------- stat

namespace {

json wait_json(const WaitRow& w) {
  json armed = json::array();
  for (std::uint32_t i = 0; i < 32; ++i) {
    if ((w.notify >> i & 1u) != 0) armed.push_back(i);
  }
  return {{"waiters", w.waiters}, {"futex_sleepers", w.sleepers}, {"armed_wait_fd_slots", armed}};
}

std::string wait_text(const WaitRow& w) {
  std::string slots;
  for (std::uint32_t i = 0; i < 32; ++i) {
    if ((w.notify >> i & 1u) != 0) slots += fmt::format(" #{}", i);
  }
  return fmt::format("{} waiting ({} on the futex, WaitFds armed:{})", w.waiters, w.sleepers,
                     slots.empty() ? " none" : slots);
}

void print_stat(const Snapshot& s, bool json_out) {
  if (json_out) {
    json peers = json::array();
    for (const auto& p : s.peers) {
      json row = peer_json(p, s.info.mode);
      row["counters"] = counts_json(p.counts);
      peers.push_back(row);
    }
    print_json({{"name", s.info.name},
                {"mode", to_string(s.info.mode)},
                {"schema", schema_json(s.info)},
                {"root_type", root_type_json(s.info)},
                {"capacity", s.info.capacity},
                {"fill", s.fill()},
                {"positions_valid", s.positions_valid},
                {"totals", counts_json(s.totals())},
                {"retired", counts_json(s.retired)},
                {"waiting", {{"data", wait_json(s.data_wait)}, {"space", wait_json(s.space_wait)}}},
                {"peers", peers}});
    return;
  }
  std::vector<std::string> header{"COUNTER", "TOTAL", "RETIRED"};
  for (const auto& p : s.peers) {
    header.push_back(p.reaping ? fmt::format("#{} reaping", p.slot)
                               : fmt::format("#{} {} {}{}", p.slot, role_name(p.role), p.pid,
                                             p.alive ? "" : " dead"));
  }
  Table t(std::move(header));
  for (std::size_t c = 1; c < 3 + s.peers.size(); ++c) t.align_right(c);
  const Counts totals = s.totals();
  for (std::uint32_t i = 0; i < layout::kCounterCount; ++i) {
    std::vector<std::string> row{std::string(counter_name(i)), std::to_string(totals[i]),
                                 std::to_string(s.retired[i])};
    for (const auto& p : s.peers) row.push_back(std::to_string(p.counts[i]));
    t.add(std::move(row));
  }
  std::string out =
      fmt::format("{} ({}, schema {}, capacity {}, fill {})\n", s.info.name, to_string(s.info.mode),
                  schema_text(s.info), human_size(s.info.capacity), fill_text(s));
  out += fmt::format("consumers: {}\nproducers: {}\n", wait_text(s.data_wait),
                     wait_text(s.space_wait));
  out += t.str();
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
}

// --watch: totals and their rates per second between two samples. Counters are untrusted and
// move from a slot to the retired totals when a peer detaches, so a total that went down shows a
// rate of 0 rather than a negative one.
bool print_rates(const Snapshot& s, const Counts& prev, double dt, std::uint64_t sample,
                 bool json_out, bool in_place) {
  const Counts now = s.totals();
  std::vector<double> rates(layout::kCounterCount, 0.0);
  for (std::uint32_t i = 0; i < layout::kCounterCount; ++i) {
    if (sample > 0 && dt > 0 && now[i] >= prev[i])
      rates[i] = static_cast<double>(now[i] - prev[i]) / dt;
  }
  if (json_out) {
    json r = json::object();
    for (std::uint32_t i = 0; i < layout::kCounterCount; ++i)
      r[std::string(counter_name(i))] = rates[i];
    return print_json({{"name", s.info.name},
                       {"sample", sample},
                       {"interval_s", sample > 0 ? dt : 0.0},
                       {"fill", s.fill()},
                       {"live_peers", s.live_peers()},
                       {"totals", counts_json(now)},
                       {"rates", r}},
                      false);
  }
  Table t({"COUNTER", "TOTAL", "PER SECOND"});
  t.align_right(1);
  t.align_right(2);
  for (std::uint32_t i = 0; i < layout::kCounterCount; ++i) {
    t.add({std::string(counter_name(i)), std::to_string(now[i]),
           sample > 0 ? fmt::format("{:.1f}", rates[i]) : "-"});
  }
  std::string out = in_place ? "\033[H\033[2J" : (sample > 0 ? "\n" : "");
  out += fmt::format("{} ({}, fill {}, {} live peers) sample {}\n", s.info.name,
                     to_string(s.info.mode), fill_text(s), s.live_peers(), sample);
  out += t.str();
  std::fputs(out.c_str(), stdout);
  return std::fflush(stdout) == 0 && std::ferror(stdout) == 0;
}

}  // namespace

void run_stat(const StatOptions& o) {
  if (!o.watch) {
    print_stat(snapshot_of(o.name), o.json);
    return;
  }
  if (!Ring::exists(o.name)) snapshot_of(o.name);  // throws not_found with the usual message
  const Ring ring = open_for_inspection(o.name);
  const bool in_place = !o.json && ::isatty(STDOUT_FILENO) == 1;
  Counts prev{};
  auto last = std::chrono::steady_clock::now();
  for (std::uint64_t sample = 0; o.count == 0 || sample < o.count; ++sample) {
    if (sample > 0) {
      sleep_for(o.interval);
      if (stop_requested()) break;
    }
    const auto now = std::chrono::steady_clock::now();
    const Snapshot s = snapshot(ring);
    if (!print_rates(s, prev, std::chrono::duration<double>(now - last).count(), sample, o.json,
                     in_place)) {
      break;
    }
    prev = s.totals();
    last = now;
  }
}

// ---------------------------------------------------------------- rm

void run_rm(const RmOptions& o) {
  Ring::validate_name(o.name);
  if (!Ring::exists(o.name)) {
    throw ToolError(Exit::not_found,
                    fmt::format("no ring named '{}' ({})", o.name, Ring::path_of(o.name)));
  }
  std::uint32_t live = 0;
  try {
    const Snapshot s = snapshot(open_for_inspection(o.name));
    live = s.live_peers();
    if (live != 0 && !o.force) {
      std::string who;
      for (const auto& p : s.peers) {
        if (!p.alive) continue;
        who += fmt::format("{}{} pid {}", who.empty() ? "" : ", ", role_name(p.role), p.pid);
      }
      throw ToolError(
          Exit::busy,
          fmt::format("ring '{}' has {} live peer{} ({}); not removed (--force removes it anyway)",
                      o.name, live, live == 1 ? "" : "s", who));
    }
  } catch (const Error& e) {
    if (!o.force) {
      throw ToolError(
          exit_for(e.code()),
          fmt::format("cannot inspect ring '{}': {}; not removed (--force removes it anyway)",
                      o.name, message_of(e)));
    }
  }
  if (!Ring::remove(o.name)) {
    throw ToolError(Exit::failure,
                    fmt::format("could not remove ring '{}' ({})", o.name, Ring::path_of(o.name)));
  }
  if (o.json) {
    print_json({{"removed", o.name}, {"live_peers", live}});
  } else {
    print_line(live != 0 ? fmt::format("removed {} ({} live peer{} keep{} the mapping)", o.name,
                                       live, live == 1 ? "" : "s", live == 1 ? "s" : "")
                         : fmt::format("removed {}", o.name));
  }
}

// ---------------------------------------------------------------- gc

void run_gc(const GcOptions& o) {
  json removed = json::array();
  json kept = json::array();
  json errors = json::array();
  for (const std::string& name : Ring::list()) {
    if (name.rfind(o.prefix, 0) != 0) continue;
    try {
      const Snapshot s = snapshot(open_for_inspection(name));
      if (!s.stale()) {
        kept.push_back(name);
        continue;
      }
      // Between the check and the unlink a process may open it; it keeps its mapping, like after
      // any rm, and a later creator gets a fresh segment.
      if (!o.dry_run && !Ring::remove(name)) {
        errors.push_back({{"name", name}, {"error", "could not remove"}});
        continue;
      }
      removed.push_back({{"name", name}, {"creator_pid", s.info.creator.pid}});
      if (!o.json) {
        print_line(fmt::format("{} {} (creator {} dead, no live peers)",
                               o.dry_run ? "would remove" : "removed", name, s.info.creator.pid));
      }
    } catch (const Error& e) {
      // Not flatring's, not yet initialized, or damaged: never removed by gc.
      errors.push_back({{"name", name}, {"error", message_of(e)}});
    }
  }
  if (o.json) {
    print_json({{"removed", removed}, {"kept", kept}, {"skipped", errors}, {"dry_run", o.dry_run}});
    return;
  }
  for (const auto& e : errors) {
    warn(fmt::format("gc: left {}: {}", e["name"].get<std::string>(),
                     e["error"].get<std::string>()));
  }
  print_line(fmt::format("{} stale ring{} {}, {} kept", removed.size(),
                         removed.size() == 1 ? "" : "s", o.dry_run ? "found" : "removed",
                         kept.size()));
}

}  // namespace flatring::tool

namespace flatring::tool {

// ---------------------------------------------------------------- schema

void run_schema(const SchemaOptions& o) {
  if (o.bfbs == "-" && o.text) {
    throw ToolError(Exit::usage,
                    "--bfbs - and --text would both write to stdout; give --bfbs a file");
  }
  Ring::validate_name(o.name);
  if (!Ring::exists(o.name)) {
    throw ToolError(Exit::not_found,
                    fmt::format("no ring named '{}' ({})", o.name, Ring::path_of(o.name)));
  }
  // Only reads: the stored schema was length-capped, hash-checked and verified at open.
  const Ring ring = open_for_inspection(o.name);
  const SegmentInfo& info = ring.info();
  const Schema& stored = info.stored_schema;
  if (stored.empty()) {
    throw ToolError(Exit::schema,
                    info.schema.raw()
                        ? fmt::format("ring '{}' is a raw ring: it has no schema", o.name)
                        : fmt::format("ring '{}' stores no binary schema, only its identity {} (it "
                                      "was created without one)",
                                      o.name, describe(info.schema)));
  }
  const auto bytes = stored.bfbs();
  if (o.bfbs == "-") {
    if (std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size() ||
        std::fflush(stdout) != 0) {
      throw ToolError(Exit::failure, "could not write the binary schema to stdout");
    }
  } else if (!o.bfbs.empty()) {
    std::ofstream out(o.bfbs, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) throw ToolError(Exit::failure, fmt::format("could not write '{}'", o.bfbs));
    if (!o.text) {
      print_line(fmt::format("wrote the binary schema of ring {} ({}, {} bytes) to {}", o.name,
                             stored.root_name(), bytes.size(), o.bfbs));
    }
  }
  if (o.text || o.bfbs.empty()) {
    const std::string text = stored.describe();
    if (std::fputs(text.c_str(), stdout) < 0 || std::fflush(stdout) != 0) {
      throw ToolError(Exit::failure, "could not write to stdout");
    }
  }
}

}  // namespace flatring::tool
