#include "format.hpp"

#include <algorithm>
#include <cstdio>
#include <pwd.h>

#include <fmt/format.h>

namespace flatring::tool {

std::string Table::str() const {
  std::vector<std::size_t> width;
  for (const auto& row : rows_) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      const bool last = c + 1 == row.size();
      const bool right = std::find(right_.begin(), right_.end(), c) != right_.end();
      const std::size_t pad = width[c] - row[c].size();
      if (right) line.append(pad, ' ');
      line += row[c];
      if (!last) line.append((right ? 0 : pad) + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

std::string human_size(std::uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes) / 1024.0;
  std::size_t u = 0;
  while (v >= 1024.0 && u + 1 < std::size(kUnits)) {
    v /= 1024.0;
    ++u;
  }
  return fmt::format("{:.1f} {}", v, kUnits[u]);
}

std::string permission_string(std::uint32_t mode) {
  std::string s(9, '-');
  static constexpr char kBits[] = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) {
    if ((mode >> (8 - i)) & 1u) s[static_cast<std::size_t>(i)] = kBits[i];
  }
  return s;
}

std::string octal_mode(std::uint32_t mode) { return fmt::format("0{:03o}", mode & 0777u); }

std::string user_name(std::uint32_t uid) {
  passwd pw{};
  passwd* found = nullptr;
  char buf[1024];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr)
    return found->pw_name;
  return std::to_string(uid);
}

bool print_line(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fputc('\n', stdout);
  return std::fflush(stdout) == 0 && std::ferror(stdout) == 0;
}

bool print_json(const nlohmann::json& j, bool pretty) {
  return print_line(j.dump(pretty ? 2 : -1));
}

void warn(const std::string& message) { std::fprintf(stderr, "flatring: %s\n", message.c_str()); }

}  // namespace flatring::tool
