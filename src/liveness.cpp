#include "flatring/liveness.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace flatring {
namespace {

// Reads /proc/<pid>/stat and returns (state, starttime). The comm field may hold spaces and
// parentheses, so parsing starts after the last ')'.
bool read_stat(std::uint32_t pid, char& state, std::uint64_t& start_time) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%u/stat", pid);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return false;
  p += 2;
  state = *p;
  // After ')' come fields 3.. ; starttime is field 22, i.e. the 20th from `state`.
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return false;
    ++p;
  }
  char* end = nullptr;
  start_time = std::strtoull(p, &end, 10);
  return end != p;
}

}  // namespace

std::uint64_t process_start_time(std::uint32_t pid) noexcept {
  char state = 0;
  std::uint64_t start = 0;
  return read_stat(pid, state, start) ? start : 0;
}

ProcessToken self_process() noexcept {
  static thread_local ProcessToken cached{};
  auto pid = static_cast<std::uint32_t>(::getpid());
  if (cached.pid != pid) cached = ProcessToken{pid, process_start_time(pid)};
  return cached;
}

bool is_alive(const ProcessToken& token) noexcept {
  // pid 0 and values above pid_max are not processes; kill(0, 0) would test our process group.
  if (token.pid == 0 || token.pid > (1u << 22)) return false;
  if (::kill(static_cast<pid_t>(token.pid), 0) != 0 && errno == ESRCH) return false;
  char state = 0;
  std::uint64_t start = 0;
  if (!read_stat(token.pid, state, start)) return false;
  if (state == 'Z' || state == 'X') return false;
  return token.start_time == 0 || start == token.start_time;
}

}  // namespace flatring
