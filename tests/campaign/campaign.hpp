// flatring-campaign: the long-running parts of scripts/campaign.sh (soak, chaos, scribble), one
// subcommand each. Each prints progress to stderr and one JSON object (its figures and verdict) on
// stdout, and exits 0 only if every check passed.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <sys/types.h>

#include "test_msg_generated.h"
#include <flatring/flatring.hpp>

FLATRING_SCHEMA(flatring::test::Msg, flatring::test::MsgIdentifier());

namespace campaign {

/// --key value / --flag arguments of one subcommand.
class Args {
 public:
  Args(int argc, char** argv);  // argv[0] is the subcommand
  [[nodiscard]] std::uint64_t num(const std::string& key, std::uint64_t fallback) const;
  [[nodiscard]] std::string str(const std::string& key, const std::string& fallback) const;
  [[nodiscard]] bool flag(const std::string& key) const { return values_.count(key) != 0; }
  [[nodiscard]] flatring::Mode mode() const;  // --mode, required

 private:
  std::map<std::string, std::string> values_;
};

/// `v` as a JSON string literal.
std::string json_string(std::string_view v);

/// One JSON object, fields in insertion order.
class Json {
 public:
  Json& add(std::string_view key, std::uint64_t v);
  Json& add(std::string_view key, std::int64_t v) { return add_raw(key, std::to_string(v)); }
  Json& add(std::string_view key, int v) { return add(key, std::int64_t{v}); }
  Json& add(std::string_view key, double v);
  Json& add(std::string_view key, bool v) { return add_raw(key, v ? "true" : "false"); }
  Json& add(std::string_view key, std::string_view v);
  Json& add(std::string_view key, const char* v) { return add(key, std::string_view(v)); }
  Json& add_raw(std::string_view key, const std::string& json);
  [[nodiscard]] std::string str() const { return "{" + body_ + "}"; }

 private:
  std::string body_;
};

/// Runs `body` in a forked child that exits with its return value (99 on an exception).
pid_t spawn(const std::function<int()>& body);
/// Waits for `pid`: its exit code, or 128 + signal.
int join(pid_t pid);
/// 0 while `pid` runs; once it stopped: 1000 + exit code, or 128 + signal.
int exited(pid_t pid);
/// waitpid with a deadline: -1 if the child still ran after `limit` (it is then SIGKILLed).
int join_within(pid_t pid, std::chrono::milliseconds limit);

/// A ring name no other run uses; removes the ring when destroyed.
class RingName {
 public:
  explicit RingName(const std::string& tag);
  RingName(const RingName&) = delete;
  RingName& operator=(const RingName&) = delete;
  ~RingName();
  [[nodiscard]] const std::string& str() const noexcept { return name_; }

 private:
  std::string name_;
};

/// Seconds since `start`, as a double.
double seconds_since(std::chrono::steady_clock::time_point start);

/// An object in an anonymous MAP_SHARED mapping made before fork (zero-filled): parent and
/// children see the same ledger.
void* map_shared_zeroed(std::size_t size);
template <class T>
T* shared_zeroed() {
  return static_cast<T*>(map_shared_zeroed(sizeof(T)));  // zero pages: atomics start at 0
}
void release_shared(void* p, std::size_t size);

int soak_main(const Args& args);
int chaos_main(const Args& args);
int scribble_main(const Args& args);

}  // namespace campaign
