// flatring-bench: flatring against the usual IPC peers, two real processes, every message checked.
// See docs/benchmarks.md for what each row measures and how to read the output.
//
// Exit status: 0 all cases ran (or were skipped with a reason); 1 usage error or a --json/--plot
// output failed; 2 a case failed (a wrong message, a dead peer, a failing call); 3 watchdog.
#include "common.hpp"
#include "harness.hpp"
#include "report.hpp"
#include "transport.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using namespace bench;

TransportList all_transports() {
  TransportList t;
  add_flatring_transports(t);
  add_flatring_wait_transports(t);
  add_stream_transports(t);
  add_mq_transports(t);
  add_reference_transports(t);
  add_raw_ring_transports(t);
#ifdef FLATRING_BENCH_HAVE_BRIDGE
  add_zmq_transports(t);
#endif
  return t;
}

std::string progress_line(const CaseResult& r) {
  std::string head = fmt::format("{:<20} {:<10} {:>7}  ", r.transport, to_string(r.pattern),
                                 format_size(r.payload));
  if (r.skipped) return head + "skipped: " + *r.skipped;
  if (r.pattern == Pattern::throughput)
    return head + fmt::format("{:>12.4g} msgs/s {:>10.1f} MB/s   ({} messages in {:.3f} s)",
                              r.msgs_per_s(), r.mb_per_s(), r.tp.messages, r.tp.seconds);
  return head + fmt::format("rtt p50 {} ns, p99 {} ns, p99.9 {} ns   ({} round trips)",
                            r.lat.p50_ns, r.lat.p99_ns, r.lat.p999_ns, r.lat.round_trips);
}

}  // namespace

#ifndef FLATRING_BENCH_HAVE_CORE
namespace bench {
void add_flatring_transports(TransportList&) {}  // built without the flatring library
void add_flatring_wait_transports(TransportList&) {}
int run_idle_cpu(double) { return 1; }
}  // namespace bench
#endif

int main(int argc, char** argv) {
  CLI::App app{"flatring-bench: flatring against pipes, sockets and message queues (two processes, "
               "every message checked)"};
  bool quick = false, list = false, as_given = false;
  std::vector<std::string> transport_args, size_args, pattern_args;
  std::string json_path, plot_path;
  double budget = 0;
  app.add_flag("--quick", quick,
               "Short run: sizes 64 B..1 MiB, ~0.35 s per timed round (< 60 s in all)");
  app.add_option("--transport", transport_args,
                 "Transports to run (repeatable or comma list; default all)")
      ->delimiter(',');
  app.add_option("--size", size_args,
                 "Payload sizes, e.g. 64,1KiB,64K,1MiB (default 64 B, 1 KiB, 64 KiB, 1 MiB, +16 "
                 "MiB without --quick)")
      ->delimiter(',');
  app.add_option("--pattern", pattern_args, "throughput and/or latency (default both)")
      ->delimiter(',');
  app.add_option("--json", json_path, "Write the results as JSON to FILE");
  app.add_option("--plot", plot_path,
                 "Render FILE.png with gnuplot (throughput and latency panels)");
  app.add_option("--budget", budget,
                 "Seconds aimed at for each timed round (default 0.35 with --quick, 1.5 otherwise)")
      ->check(CLI::Range(0.01, 60.0));
  app.add_flag("--list", list, "List the transports and exit");
  app.add_flag("--as-given", as_given,
               "Run the --transport rows in the order given (default: the registry order, "
               "flatring first); scripts/bench_rounds.py alternates it between rounds");
  double idle_seconds = 0;
  app.add_option("--idle-cpu", idle_seconds,
                 "Only print the idle-CPU table: CPU time and wake-ups per second of receivers "
                 "blocked SECONDS on an empty ring (getrusage), then exit");
  std::uint64_t fault_seq = ~std::uint64_t(0);
  app.add_option("--inject-fault", fault_seq,
                 "Self-test: corrupt the message with this sequence number; the run must fail")
      ->group("");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (idle_seconds > 0) {
    try {
      return run_idle_cpu(idle_seconds);
    } catch (const std::exception& e) {
      fmt::print(stderr, "flatring-bench: FAILED: {}\n", e.what());
      return 2;
    }
  }

  TransportList transports = all_transports();
  if (list) {
    for (const auto& t : transports) fmt::print("{}\n", t->name());
    return 0;
  }

  // Selection.
  std::vector<Transport*> selected;
  if (transport_args.empty()) {
    for (auto& t : transports) selected.push_back(t.get());
  } else {
    for (const auto& name : transport_args) {
      auto it = std::find_if(transports.begin(), transports.end(),
                             [&](auto& t) { return t->name() == name; });
      if (it == transports.end()) {
        std::string known;
        for (auto& t : transports) known += (known.empty() ? "" : ", ") + t->name();
        fmt::print(stderr, "flatring-bench: unknown transport '{}' (known: {})\n", name, known);
        return 1;
      }
      if (std::find(selected.begin(), selected.end(), it->get()) == selected.end())
        selected.push_back(it->get());
    }
    // Keep the registry order (flatring first) whatever the command line order, unless asked.
    if (!as_given) {
      std::vector<Transport*> ordered;
      for (auto& t : transports)
        if (std::find(selected.begin(), selected.end(), t.get()) != selected.end())
          ordered.push_back(t.get());
      selected = ordered;
    }
  }
  std::vector<std::size_t> sizes;
  if (size_args.empty()) {
    sizes = {64, 1024, 64 * 1024, 1024 * 1024};
    if (!quick) sizes.push_back(16 * 1024 * 1024);
  } else {
    for (const auto& s : size_args) {
      auto v = parse_size(s);
      if (!v || *v < min_payload || *v > (64u << 20)) {
        fmt::print(
            stderr,
            "flatring-bench: bad --size '{}' (between {} B and 64 MiB, e.g. 64, 1KiB, 1MiB)\n", s,
            min_payload);
        return 1;
      }
      if (std::find(sizes.begin(), sizes.end(), *v) == sizes.end()) sizes.push_back(*v);
    }
    std::sort(sizes.begin(), sizes.end());
  }
  std::vector<Pattern> patterns;
  if (pattern_args.empty()) {
    patterns = {Pattern::throughput, Pattern::latency};
  } else {
    for (const auto& s : pattern_args) {
      auto p = parse_pattern(s);
      if (!p) {
        fmt::print(stderr, "flatring-bench: bad --pattern '{}' (throughput or latency)\n", s);
        return 1;
      }
      if (std::find(patterns.begin(), patterns.end(), *p) == patterns.end()) patterns.push_back(*p);
    }
  }

  g_fault_seq = fault_seq;
  install_signal_handlers();
  const CpuPair cpus = pick_cpus();
  const MachineInfo machine = machine_info();
  CaseSpec base;
  base.budget_s = budget > 0 ? budget : (quick ? 0.35 : 1.5);
  base.warmup_s = quick ? 0.05 : 0.25;
  base.watchdog_s = 20 + 10 * (base.budget_s + base.warmup_s);
  base.producer_cpu = cpus.producer;
  base.consumer_cpu = cpus.consumer;
  fmt::print(stderr, "flatring-bench: {} ({} cores), {}; {}; {:.2f} s per timed round\n",
             machine.cpu, machine.cores, machine.kernel,
             cpus.producer >= 0 ? fmt::format("producer on CPU {}, consumer on CPU {}",
                                              cpus.producer, cpus.consumer)
                                : std::string("fewer than 2 CPUs: not pinned"),
             base.budget_s);

  struct Case {
    Pattern pattern;
    std::size_t size;
    Transport* t;
  };
  std::vector<Case> cases;
  for (Pattern pattern : patterns)
    for (std::size_t size : sizes)
      for (Transport* t : selected)
        // Reference rows exist for one pattern (and cacheline-pingpong for one size): leave the
        // other cells out quietly instead of reporting them as skipped.
        if (!(t->reference() && t->unsupported(size, pattern))) cases.push_back({pattern, size, t});

  std::vector<CaseResult> results;
  std::size_t done = 0;
  for (const Case& c : cases) {
    CaseResult r;
    r.transport = c.t->name();
    r.pattern = c.pattern;
    r.payload = c.size;
    ++done;
    if (auto why = c.t->unsupported(c.size, c.pattern)) {
      r.skipped = *why;
    } else {
      CaseSpec spec = base;
      spec.payload = c.size;
      spec.pattern = c.pattern;
      try {
        if (c.pattern == Pattern::throughput) r.tp = c.t->run_throughput(spec);
        else r.lat = c.t->run_latency(spec);
      } catch (const SkipCase& e) {
        r.skipped = e.what();
      } catch (const std::exception& e) {
        fmt::print(stderr, "[{:>3}/{}] {:<20} {:<10} {:>7}  FAILED: {}\n", done, cases.size(),
                   c.t->name(), to_string(c.pattern), format_size(c.size), e.what());
        fmt::print(stderr, "flatring-bench: FAILED\n");
        return 2;
      }
    }
    fmt::print(stderr, "[{:>3}/{}] {}\n", done, cases.size(), progress_line(r));
    results.push_back(std::move(r));
  }

  std::vector<std::string> order;
  for (Transport* t : selected) order.push_back(t->name());
  fmt::print("{}", render_table(results, order));
  std::fflush(stdout);

  int rc = 0;
  if (!json_path.empty()) {
    if (write_json(json_path, machine, results))
      fmt::print(stderr, "flatring-bench: wrote {}\n", json_path);
    else rc = 1;
  }
  if (!plot_path.empty()) {
    if (write_plot(plot_path, machine, results, order))
      fmt::print(stderr, "flatring-bench: wrote {}\n", plot_path);
    else rc = 1;
  }
  return rc;
}
