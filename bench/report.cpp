#include "report.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

extern char** environ;

namespace bench {

// ---------------------------------------------------------------- machine

MachineInfo machine_info() {
  MachineInfo m;
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
    if (key == "model name" || key == "Model" || key == "cpu model") {
      std::string v = line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      m.cpu = v;
      break;
    }
  }
  if (m.cpu.empty()) m.cpu = "unknown";
  m.cores = std::thread::hardware_concurrency();
  utsname u{};
  if (uname(&u) == 0) m.kernel = fmt::format("{} {}", u.sysname, u.release);
  else m.kernel = "unknown";
  return m;
}

// ---------------------------------------------------------------- table

namespace {

// Three significant digits without exponent notation.
std::string sig3(double v) {
  if (v >= 100) return fmt::format("{:.0f}", v);
  if (v >= 10) return fmt::format("{:.1f}", v);
  return fmt::format("{:.2f}", v);
}

std::string si(double v) {
  if (v >= 1e9) return sig3(v / 1e9) + "G";
  if (v >= 1e6) return sig3(v / 1e6) + "M";
  if (v >= 1e3) return sig3(v / 1e3) + "k";
  return sig3(v);
}

std::string ns(std::uint64_t v) {
  if (v >= 1'000'000'000) return sig3(double(v) / 1e9) + " s";
  if (v >= 1'000'000) return sig3(double(v) / 1e6) + " ms";
  if (v >= 10'000) return sig3(double(v) / 1e3) + " us";
  return fmt::format("{} ns", v);
}

std::string ratio(double r) {
  if (!(r > 0)) return "";
  if (r >= 100) return fmt::format("{:.0f}x", r);
  if (r >= 10) return fmt::format("{:.1f}x", r);
  if (r >= 0.1) return fmt::format("{:.2f}x", r);
  if (r >= 0.01) return fmt::format("{:.3f}x", r);
  return fmt::format("{:.2g}x", r);
}

const CaseResult* find(const std::vector<CaseResult>& rs, const std::string& t, Pattern p,
                       std::size_t size) {
  for (const auto& r : rs)
    if (r.transport == t && r.pattern == p && r.payload == size) return &r;
  return nullptr;
}

std::vector<std::size_t> sizes_of(const std::vector<CaseResult>& rs) {
  std::set<std::size_t> s;
  for (const auto& r : rs) s.insert(r.payload);
  return {s.begin(), s.end()};
}

}  // namespace

std::string render_table(const std::vector<CaseResult>& results,
                         const std::vector<std::string>& order) {
  const auto sizes = sizes_of(results);
  std::string out;
  for (Pattern p : {Pattern::throughput, Pattern::latency}) {
    std::vector<std::string> rows;
    for (const auto& t : order) {
      bool any = false;
      for (auto s : sizes) {
        const CaseResult* r = find(results, t, p, s);
        any = any || (r && !r->skipped);
      }
      if (any) rows.push_back(t);
    }
    if (rows.empty()) continue;
    std::size_t name_w = 9;
    for (const auto& t : rows) name_w = std::max(name_w, t.size());
    const std::size_t cell_w = 18;
    out +=
        p == Pattern::throughput
            ? "throughput: messages per second, and the ratio to flatring's msgs/s at that size\n"
            : "latency: round-trip p50, and the ratio to flatring's p50 at that size\n";
    out += fmt::format("{:<{}}", "transport", name_w);
    for (auto s : sizes) out += fmt::format("  {:>{}}", format_size(s), cell_w);
    out += '\n';
    for (const auto& t : rows) {
      out += fmt::format("{:<{}}", t, name_w);
      for (auto s : sizes) {
        const CaseResult* r = find(results, t, p, s);
        const CaseResult* base = find(results, "flatring", p, s);
        std::string cell;
        if (!r) {
          cell = "-";
        } else if (r->skipped) {
          cell = "skipped";
        } else if (p == Pattern::throughput) {
          cell = si(r->msgs_per_s()) + "/s";
          if (base && !base->skipped && base->msgs_per_s() > 0)
            cell += " " + ratio(r->msgs_per_s() / base->msgs_per_s());
        } else {
          cell = ns(r->lat.p50_ns);
          if (base && !base->skipped && base->lat.p50_ns > 0)
            cell += " " + ratio(double(r->lat.p50_ns) / double(base->lat.p50_ns));
        }
        out += fmt::format("  {:>{}}", cell, cell_w);
      }
      out += '\n';
    }
    out += '\n';
  }
  return out;
}

// ---------------------------------------------------------------- json

bool write_json(const std::string& path, const MachineInfo& m,
                const std::vector<CaseResult>& results) {
  nlohmann::ordered_json j;
  j["machine"] = {{"cpu", m.cpu}, {"cores", m.cores}, {"kernel", m.kernel}};
  auto arr = nlohmann::ordered_json::array();
  for (const auto& r : results) {
    if (r.skipped) continue;
    nlohmann::ordered_json e;
    e["transport"] = r.transport;
    e["pattern"] = std::string(to_string(r.pattern));
    e["payload_bytes"] = r.payload;
    if (r.pattern == Pattern::throughput) {
      e["messages"] = r.tp.messages;
      e["seconds"] = r.tp.seconds;
      e["msgs_per_s"] = r.msgs_per_s();
      e["mb_per_s"] = r.mb_per_s();
    } else {
      e["round_trips"] = r.lat.round_trips;
      e["rtt_p50_ns"] = r.lat.p50_ns;
      e["rtt_p99_ns"] = r.lat.p99_ns;
      e["rtt_p999_ns"] = r.lat.p999_ns;
    }
    arr.push_back(std::move(e));
  }
  j["results"] = std::move(arr);
  std::ofstream f(path, std::ios::trunc);
  if (!f) {
    fmt::print(stderr, "flatring-bench: error: cannot open {} for writing\n", path);
    return false;
  }
  f << j.dump(2) << '\n';
  f.close();
  if (!f) {
    fmt::print(stderr, "flatring-bench: error: writing {} failed\n", path);
    return false;
  }
  return true;
}

// ---------------------------------------------------------------- plot

namespace {

// Runs argv[0] (PATH lookup) with stdout and stderr to `log`; returns the exit status or -1.
int run_program(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// One colour per transport, the same in both panels (registry order).
const char* colour(std::size_t i) {
  // As many as there are rows (memcpy is drawn in black), so no two rows share a colour.
  static const char* const palette[] = {
      "#d62728", "#ff7f0e", "#8c564b", "#e377c2", "#1f77b4", "#17becf", "#2ca02c", "#9467bd",
      "#7f7f7f", "#bcbd22", "#393b79", "#637939", "#843c39", "#7b4173", "#e7969c", "#6b6ecf"};
  return palette[i % (sizeof palette / sizeof palette[0])];
}

// A gnuplot single-quoted string literal ('' stands for ').
std::string gp_str(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

}  // namespace

bool write_plot(const std::string& png_path, const MachineInfo& m,
                const std::vector<CaseResult>& results, const std::vector<std::string>& order) {
  auto fail = [](const std::string& why) {
    fmt::print(stderr, "flatring-bench: error: plot failed: {}\n", why);
    return false;
  };
  namespace fs = std::filesystem;
  char tmpl[] = "/tmp/flatring-bench-plot-XXXXXX";
  if (!mkdtemp(tmpl)) return fail(std::string("mkdtemp: ") + std::strerror(errno));
  const std::string dir = tmpl;
  const std::string log = dir + "/gnuplot.log";

  // Which PNG terminal this gnuplot has: pngcairo (gnuplot-nox has it) or the libgd png.
  if (run_program({"gnuplot", "-e", "set terminal"}, log) != 0)
    return fail("cannot run gnuplot (is it installed? apt-get install gnuplot-nox); data left in " +
                dir);
  const std::string terms = slurp(log);
  std::string terminal;
  if (terms.find("pngcairo") != std::string::npos)
    terminal = "pngcairo size 1200,1100 font 'sans,10'";
  else if (terms.find(" png ") != std::string::npos) terminal = "png size 1200,1100";
  else return fail("this gnuplot has neither the pngcairo nor the png terminal");

  const auto sizes = sizes_of(results);
  auto has = [&](const std::string& t, Pattern p) {
    for (const auto& r : results)
      if (r.transport == t && r.pattern == p && !r.skipped) return true;
    return false;
  };
  auto index_of = [&](const std::string& t) {
    return std::size_t(std::find(order.begin(), order.end(), t) - order.begin());
  };
  std::vector<std::string> tp_series, lat_series;
  bool have_memcpy = false;
  for (const auto& t : order) {
    if (t == "memcpy") {
      have_memcpy = has(t, Pattern::throughput);
      continue;
    }
    if (has(t, Pattern::throughput)) tp_series.push_back(t);
    if (has(t, Pattern::latency)) lat_series.push_back(t);
  }
  if (tp_series.empty() && lat_series.empty() && !have_memcpy) return fail("no results to plot");

  // Data: one row per size, one column per transport, "-" where there is no value.
  {
    std::ofstream tp(dir + "/throughput.dat"), lat(dir + "/latency.dat");
    tp << "\"bytes\" \"label\"";
    for (const auto& t : tp_series) tp << " \"" << t << "\"";
    tp << " \"memcpy\"\n";
    lat << "\"label\"";
    for (const auto& t : lat_series) lat << " \"" << t << "\"";
    lat << '\n';
    for (auto s : sizes) {
      tp << s << " \"" << format_size(s) << "\"";
      lat << '"' << format_size(s) << '"';
      for (const auto& t : tp_series) {
        const CaseResult* r = find(results, t, Pattern::throughput, s);
        if (r && !r->skipped) tp << ' ' << fmt::format("{:.6g}", r->mb_per_s());
        else tp << " -";
      }
      const CaseResult* mc = find(results, "memcpy", Pattern::throughput, s);
      if (mc && !mc->skipped) tp << ' ' << fmt::format("{:.6g}", mc->mb_per_s());
      else tp << " -";
      tp << '\n';
      for (const auto& t : lat_series) {
        const CaseResult* r = find(results, t, Pattern::latency, s);
        if (r && !r->skipped) lat << ' ' << fmt::format("{:.6g}", double(r->lat.p50_ns) / 1000.0);
        else lat << " -";
      }
      lat << '\n';
    }
    if (!tp || !lat) return fail("cannot write the data files in " + dir);
  }

  // Bars start at the decade below the smallest p50, so the smallest bar stays visible.
  double lat_floor_us = 1e9;
  for (const auto& r : results)
    if (r.pattern == Pattern::latency && !r.skipped && r.lat.p50_ns > 0)
      lat_floor_us = std::min(lat_floor_us, double(r.lat.p50_ns) / 1000.0);
  lat_floor_us =
      lat_floor_us < 1e9 ? std::pow(10.0, std::floor(std::log10(lat_floor_us / 2))) : 0.01;

  std::string xt;
  for (auto s : sizes) xt += fmt::format("{}\"{}\" {}", xt.empty() ? "" : ", ", format_size(s), s);

  std::ostringstream gp;
  gp << "set terminal " << terminal << "\n"
     << "set output " << gp_str(png_path) << "\n"
     << "set datafile missing '-'\n"
     << "set key outside right top\n"
     << "set grid\n"
     << "set multiplot layout 2,1 title "
     << gp_str(fmt::format("flatring-bench — {} ({} cores), {}", m.cpu, m.cores, m.kernel)) << "\n";
  // Panel 1: throughput.
  gp << "set title 'throughput (one producer and one consumer process; the multi-party rows as "
        "named)'\n"
     << "set logscale xy\n"
     << "set xlabel 'payload size'\nset ylabel 'MB/s (10^6 bytes)'\n"
     << "set xtics (" << xt << ")\n"
     << "set xrange [" << double(sizes.front()) / 1.5 << ":" << double(sizes.back()) * 1.5 << "]\n";
  {
    std::vector<std::string> parts;
    for (std::size_t i = 0; i < tp_series.size(); ++i)
      parts.push_back(fmt::format("'{}/throughput.dat' using 1:{} with linespoints lw {} pt 7 lc "
                                  "rgb '{}' title columnheader({})",
                                  dir, i + 3, tp_series[i].rfind("flatring", 0) == 0 ? 3 : 2,
                                  colour(index_of(tp_series[i])), i + 3));
    if (have_memcpy)
      parts.push_back(fmt::format("'{}/throughput.dat' using 1:{} with lines dt 2 lw 3 lc rgb "
                                  "'black' title 'memcpy (ceiling)'",
                                  dir, tp_series.size() + 3));
    gp << "plot ";
    for (std::size_t i = 0; i < parts.size(); ++i) gp << (i ? ", \\\n     " : "") << parts[i];
    gp << "\n";
  }
  // Panel 2: latency bars.
  gp << "unset logscale\nunset xrange\nset xtics auto\n"
     << "set title 'round trip p50 (ping-pong; the mpmc rows: a request to a pool of workers and "
        "the reply)'\n"
     << "set logscale y\n"
     << "set yrange [" << lat_floor_us << ":*]\n"
     << "set xlabel 'payload size'\nset ylabel 'round trip p50 (microseconds)'\n"
     << "set style data histograms\nset style histogram clustered gap 1\n"
     << "set style fill solid 0.85 border -1\nset boxwidth 0.9\n";
  if (lat_series.empty()) {
    gp << "set label 1 'no latency results' at screen 0.5, 0.25 center\nunset key\n"
       << "plot [0:1] [1:10] NaN notitle\n";
  } else {
    gp << "plot ";
    for (std::size_t i = 0; i < lat_series.size(); ++i)
      gp << (i ? ", \\\n     " : "")
         << fmt::format("'{}/latency.dat' using {}:xtic(1) lc rgb '{}' title columnheader({})", dir,
                        i + 2, colour(index_of(lat_series[i])), i + 2);
    gp << "\n";
  }
  gp << "unset multiplot\n";
  {
    std::ofstream f(dir + "/plot.gp");
    f << gp.str();
    if (!f) return fail("cannot write " + dir + "/plot.gp");
  }
  std::error_code ec;
  fs::remove(png_path, ec);
  const int rc = run_program({"gnuplot", dir + "/plot.gp"}, log);
  const std::string out = slurp(log);
  if (rc != 0 || !fs::exists(png_path) || fs::file_size(png_path) == 0)
    return fail(
        fmt::format("gnuplot exited with {}; script and data kept in {}\n{}", rc, dir, out));
  fs::remove_all(dir, ec);
  return true;
}

}  // namespace bench
