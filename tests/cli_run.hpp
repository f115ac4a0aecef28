// Running the flatring binary from the CLI tests: stdin from a string, stdout and stderr captured.
#pragma once

#include <catch2/catch.hpp>
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "helpers.hpp"

namespace fr_cli {

using nlohmann::json;

struct Output {
  int code = -1;
  std::string out;
  std::string err;
  [[nodiscard]] std::vector<std::string> lines() const {
    std::vector<std::string> v;
    std::istringstream in(out);
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
  }
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A run of the flatring binary with stdin from a string and stdout/stderr captured in files.
class Cli {
 public:
  explicit Cli(std::vector<std::string> args, const std::string& input = "") {
    dir_ = "/tmp/flatring-cli-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++);
    std::vector<char> tmpl(dir_.begin(), dir_.end());
    tmpl.insert(tmpl.end(), {'-', 'X', 'X', 'X', 'X', 'X', 'X', '\0'});
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl.data();
    std::ofstream(dir_ + "/in", std::ios::binary) << input;
    args.insert(args.begin(), FLATRING_CLI);
    std::fflush(nullptr);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      redirect(0, dir_ + "/in", O_RDONLY);
      redirect(1, dir_ + "/out", O_WRONLY | O_CREAT | O_TRUNC);
      redirect(2, dir_ + "/err", O_WRONLY | O_CREAT | O_TRUNC);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  Cli(const Cli&) = delete;
  Cli& operator=(const Cli&) = delete;
  ~Cli() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      fr_test::join(pid_);
    }
    std::system(("rm -rf '" + dir_ + "'").c_str());
  }

  Output wait() {
    Output o;
    o.code = fr_test::join(pid_);
    pid_ = -1;
    o.out = slurp(dir_ + "/out");
    o.err = slurp(dir_ + "/err");
    return o;
  }
  void signal(int sig) const { ::kill(pid_, sig); }
  /// Lines written to stdout so far, while it runs.
  [[nodiscard]] std::size_t lines_so_far() const {
    const std::string out = slurp(dir_ + "/out");
    return static_cast<std::size_t>(std::count(out.begin(), out.end(), '\n'));
  }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

 private:
  static void redirect(int fd, const std::string& path, int flags) {
    int f = ::open(path.c_str(), flags, 0600);
    if (f < 0 || ::dup2(f, fd) < 0) ::_exit(126);
    ::close(f);
  }
  static inline int counter_ = 0;
  std::string dir_;
  pid_t pid_ = -1;
};

inline Output run(std::vector<std::string> args, const std::string& input = "") {
  Cli cli(std::move(args), input);
  return cli.wait();
}

// One line, naming the problem: what the tests require of every error.
inline bool one_line_error(const Output& o, const std::string& needle) {
  const bool single = !o.err.empty() && o.err.find('\n') == o.err.size() - 1;
  const bool found = o.err.find(needle) != std::string::npos;
  if (!single || !found) UNSCOPED_INFO("stderr: " << o.err);
  return single && found && o.err.rfind("flatring: ", 0) == 0;
}

inline json find_ring(const json& list, const std::string& name) {
  for (const auto& r : list) {
    if (r.value("name", "") == name) return r;
  }
  return nullptr;
}

}  // namespace fr_cli
