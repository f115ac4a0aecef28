// Terminal output: aligned tables and human-readable sizes. JSON output goes through
// nlohmann::json; these helpers are for people.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace flatring::tool {

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  /// Right-aligns column `c` (for numbers).
  void align_right(std::size_t c) { right_.push_back(c); }
  [[nodiscard]] std::string str() const;

 private:
  std::vector<std::vector<std::string>> rows_;
  std::vector<std::size_t> right_;
};

/// 1536 -> "1.5 KiB"; below 1 KiB, "512 B".
[[nodiscard]] std::string human_size(std::uint64_t bytes);
/// 0640 -> "rw-r-----"
[[nodiscard]] std::string permission_string(std::uint32_t mode);
/// 0640 -> "0640"
[[nodiscard]] std::string octal_mode(std::uint32_t mode);
/// The user name for `uid`, or the number when there is none.
[[nodiscard]] std::string user_name(std::uint32_t uid);

/// Writes `s` and a newline to stdout and flushes. Returns false when stdout is gone (a closed
/// pipe): the caller stops instead of being killed by SIGPIPE.
bool print_line(const std::string& s);
/// Prints `j` as one line, or indented when `pretty`.
bool print_json(const nlohmann::json& j, bool pretty = true);
/// "flatring: <message>" on stderr.
void warn(const std::string& message);

}  // namespace flatring::tool
