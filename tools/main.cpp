// flatring: list, inspect, remove, read and write rings from the shell.
#include <csignal>
#include <cstdio>
#include <ctime>

#include <CLI/CLI.hpp>

#include <flatring/status.hpp>

#include "commands.hpp"
#include "exit_codes.hpp"
#ifdef FLATRING_HAVE_BRIDGE
#include "commands_bridge.hpp"
#endif

namespace flatring::tool {

namespace {

volatile std::sig_atomic_t g_stop = 0;

extern "C" void on_stop_signal(int) { g_stop = 1; }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a sleeping nanosleep returns at once
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  // A closed pipe shows up as a failed write, which ends the command cleanly and releases its
  // peer slot, instead of killing the process with the slot still held.
  std::signal(SIGPIPE, SIG_IGN);
}

std::string message_of(const std::exception& e) {
  std::string m = e.what();
  if (m.rfind("flatring ", 0) == 0) m.erase(0, 9);
  for (char& c : m) {
    if (c == '\n') c = ' ';
  }
  return m;
}

}  // namespace

bool stop_requested() noexcept { return g_stop != 0; }

void sleep_for(double seconds) noexcept {
  if (seconds <= 0 || g_stop != 0) return;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(seconds);
  ts.tv_nsec = static_cast<long>((seconds - static_cast<double>(ts.tv_sec)) * 1e9);
  ::nanosleep(&ts, nullptr);  // EINTR on a stop signal is what we want
}

Exit exit_for(Errc e) noexcept {
  switch (e) {
    case Errc::invalid_name:
    case Errc::invalid_options: return Exit::usage;
    case Errc::not_found: return Exit::not_found;
    case Errc::wrong_schema:
    case Errc::invalid_schema: return Exit::schema;
    case Errc::wrong_mode: return Exit::unsupported;
    case Errc::already_exists:
    case Errc::role_taken:
    case Errc::no_free_slot: return Exit::busy;
    case Errc::permission_denied:
    case Errc::not_flatring:
    case Errc::wrong_version:
    case Errc::size_mismatch:
    case Errc::corrupt_header:
    case Errc::corrupt_state:
    case Errc::unsafe_owner:
    case Errc::unsafe_permissions:
    case Errc::corrupt_schema:
    case Errc::schema_too_large:
    case Errc::schema_too_deep:
    case Errc::schema_no_root: return Exit::bad_ring;
    case Errc::system_error: return Exit::failure;
  }
  return Exit::failure;
}

namespace {

int run(int argc, char** argv) {
  CLI::App app{"flatring: inspect and use flatring shared-memory rings (/dev/shm/flatring.<name>)",
               "flatring"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "flatring 0.1.0");
  app.footer(
      "Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 bad ring, 5 schema, 6 bad input, "
      "7 busy, 8 not delivered, 9 unsupported, 10 refused. See docs/cli.md.");

  CreateOptions create;
  auto* c = app.add_subcommand("create", "Create a ring (exclusively; fails if the name exists)");
  c->add_option("name", create.name, "Ring name: 1-200 of [A-Za-z0-9._-]")->required();
  c->add_option("--capacity", create.capacity,
                "Record area size, a power of two >= 4096 (e.g. 1MiB)")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  c->add_option("--max-record-size", create.max_record_size,
                "Largest record payload (default: the largest the capacity allows)")
      ->transform(CLI::AsSizeValue(false));
  c->add_option("--schema", create.schema,
                "Store this schema (.fbs or .bfbs) and its root type as the ring's schema")
      ->check(CLI::ExistingFile);
  c->add_option("--root-type", create.root_type,
                "Root table, when the .fbs declares none or another");
  c->add_option("--mode", create.mode, "spsc, mpsc, mpmc or broadcast")->capture_default_str();
  c->add_option("--permissions", create.permissions, "Octal file mode; must include 0600")
      ->capture_default_str();
  c->add_flag("--json", create.json, "Print the result as JSON");

  LsOptions ls;
  auto* l =
      app.add_subcommand("ls", "List rings: mode, permissions, owner, schema, fill, peers, stale");
  l->add_flag("--json", ls.json, "Print a JSON array");

  SchemaOptions schema;
  auto* m = app.add_subcommand(
      "schema", "Print the schema a ring stores (readable), or write its binary schema (.bfbs)");
  m->add_option("name", schema.name, "Ring name")->required();
  m->add_option(
      "--bfbs", schema.bfbs,
      "Write the stored binary schema to this file (- for stdout), e.g. for flatc --cpp FILE.bfbs");
  m->add_flag("--text", schema.text,
              "Print the schema as a readable .fbs-like listing (the default without --bfbs)");

  StatOptions stat;
  auto* s = app.add_subcommand("stat", "Show a ring's counters: totals, retired, and per peer");
  s->add_option("name", stat.name, "Ring name")->required();
  s->add_flag("--watch,-w", stat.watch,
              "Sample repeatedly and show rates per second, refreshed in place");
  s->add_option("--interval,-i", stat.interval, "Seconds between samples with --watch")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  s->add_option("--count,-c", stat.count, "Samples to take with --watch (0: until Ctrl-C)")
      ->capture_default_str();
  s->add_flag("--json", stat.json, "JSON; with --watch one object per sample, one per line");

  RmOptions rm;
  auto* r = app.add_subcommand("rm", "Remove a ring; refuses while live peers are attached");
  r->add_option("name", rm.name, "Ring name")->required();
  r->add_flag("--force,-f", rm.force,
              "Remove even with live peers, or when the ring cannot be inspected");
  r->add_flag("--json", rm.json, "Print the result as JSON");

  GcOptions gc;
  auto* g = app.add_subcommand("gc", "Remove stale rings: creator dead and no live peer attached");
  g->add_option("--prefix", gc.prefix, "Only rings whose names start with this");
  g->add_flag("--dry-run,-n", gc.dry_run, "Only list what would be removed");
  g->add_flag("--json", gc.json, "Print the result as JSON");

  TailOptions tail;
  auto* t = app.add_subcommand(
      "tail",
      "Print the records in a ring as JSON, verified against its schema, without consuming them");
  t->add_option("name", tail.name, "Ring name")->required();
  t->add_option("--schema", tail.schema,
                "Verify and print with this .fbs or .bfbs (checked for compatibility with the "
                "ring's); default: the schema the ring stores")
      ->check(CLI::ExistingFile);
  t->add_option("--root-type", tail.root_type,
                "Root table, when the .fbs declares none or another");
  t->add_option("-n,--lines", tail.last, "Start with the last N records still in the ring")
      ->capture_default_str();
  t->add_flag("--follow,-f", tail.follow, "Keep printing records as they are committed");
  t->add_option("--count,-c", tail.count, "Stop after printing this many records (0: no limit)");
  t->add_option("--poll", tail.poll, "Seconds between polls while following")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  t->add_flag(
      "--consume", tail.consume,
      "Take the consumer role instead of observing (records are consumed; needs no live consumer)");
  t->add_flag("--pretty", tail.pretty, "Indent the JSON");
  t->add_flag("--json", tail.json, "Wrap each record as {\"position\", \"size\", \"record\"}");

  SendOptions send;
  auto* d = app.add_subcommand("send", "Send records given as JSON, built with the ring's schema");
  d->add_option("name", send.name, "Ring name")->required();
  d->add_option("--schema", send.schema,
                "Build records with this .fbs or .bfbs (checked for compatibility with the "
                "ring's); default: the schema the ring stores")
      ->check(CLI::ExistingFile);
  d->add_option("--root-type", send.root_type,
                "Root table, when the .fbs declares none or another");
  d->add_option("--json", send.input,
                "JSON input file, or - for stdin: a JSON array of objects, or one object per line")
      ->required();
  d->add_option("--timeout", send.timeout, "Seconds to wait for space, per record")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  d->add_flag("--quiet,-q", send.quiet, "Print nothing on success");

#ifdef FLATRING_HAVE_BRIDGE
  BridgeOptions bridge;
  const BridgeCommands bridge_commands = add_bridge_commands(app, bridge);
#endif

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "flatring: %s (see --help)\n", e.what());
    return static_cast<int>(Exit::usage);
  }

  install_signal_handlers();
  try {
    if (*c) run_create(create);
    else if (*l) run_ls(ls);
    else if (*s) run_stat(stat);
    else if (*r) run_rm(rm);
    else if (*g) run_gc(gc);
    else if (*m) run_schema(schema);
    else if (*t) run_tail(tail);
    else if (*d) run_send(send);
#ifdef FLATRING_HAVE_BRIDGE
    else if (bridge_commands.selected()) run_bridge(bridge_commands, bridge);
#endif
    return 0;
  } catch (const ToolError& e) {
    std::fprintf(stderr, "flatring: %s\n", message_of(e).c_str());
    return static_cast<int>(e.code());
  } catch (const Error& e) {
    std::fprintf(stderr, "flatring: %s\n", message_of(e).c_str());
    return static_cast<int>(exit_for(e.code()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flatring: %s\n", message_of(e).c_str());
    return static_cast<int>(Exit::failure);
  }
}

}  // namespace
}  // namespace flatring::tool

int main(int argc, char** argv) { return flatring::tool::run(argc, argv); }
