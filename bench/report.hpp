// Output of flatring-bench: the stdout table, the --json file and the --plot PNG.
#pragma once

#include "common.hpp"

#include <string>
#include <vector>

namespace bench {

struct MachineInfo {
  std::string cpu;     // "model name" from /proc/cpuinfo
  unsigned cores = 0;  // std::thread::hardware_concurrency()
  std::string kernel;  // uname: sysname release
};

MachineInfo machine_info();

// `order` lists the transports in registry order (rows of the table, series of the plot).
// Every cell shows the value and the transport's ratio to `flatring` at the same size
// (throughput: msgs/s ratio, latency: p50 ratio).
std::string render_table(const std::vector<CaseResult>& results,
                         const std::vector<std::string>& order);

// Writes the JSON report; returns false (and prints why on stderr) on failure.
bool write_json(const std::string& path, const MachineInfo& m,
                const std::vector<CaseResult>& results);

// Renders FILE.png with gnuplot: top panel throughput (MB/s) against payload size, log-log, one
// line per transport and memcpy as a dashed ceiling; bottom panel the p50 round-trip latency as a
// clustered bar chart (log scale). Returns false (and prints why on stderr) on failure.
bool write_plot(const std::string& png_path, const MachineInfo& m,
                const std::vector<CaseResult>& results, const std::vector<std::string>& order);

}  // namespace bench
