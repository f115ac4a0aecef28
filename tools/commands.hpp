// The flatring tool's subcommands. main.cpp parses the command line into these options; each
// command returns normally on success and throws ToolError (or flatring::Error) on failure.
#pragma once

#include <cstdint>
#include <string>

namespace flatring::tool {

struct CreateOptions {
  std::string name;
  std::uint64_t capacity = 1u << 20;
  std::uint64_t max_record_size = 0;  // 0: the largest the capacity allows
  std::string schema;                 // .fbs or .bfbs, stored in the ring; empty: a raw ring
  std::string root_type;
  std::string mode = "spsc";
  std::string permissions = "0600";
  bool json = false;
};

struct LsOptions {
  bool json = false;
};

struct StatOptions {
  std::string name;
  bool watch = false;
  double interval = 1.0;    // seconds between samples with --watch
  std::uint64_t count = 0;  // samples with --watch; 0: until interrupted
  bool json = false;
};

struct RmOptions {
  std::string name;
  bool force = false;
  bool json = false;
};

struct GcOptions {
  std::string prefix;  // only rings whose names start with this
  bool dry_run = false;
  bool json = false;
};

struct SchemaOptions {
  std::string name;
  std::string bfbs;   // write the stored binary schema here ("-": stdout); empty: don't
  bool text = false;  // print the readable listing (the default without bfbs)
};

struct TailOptions {
  std::string name;
  std::string schema;  // .fbs or .bfbs; empty: the ring's stored schema
  std::string root_type;
  std::uint64_t last = 10;  // -n
  bool follow = false;
  std::uint64_t count = 0;  // stop after this many records; 0: no limit
  double poll = 0.01;       // seconds between polls while following
  bool consume = false;
  bool pretty = false;
  bool json = false;
};

struct SendOptions {
  std::string name;
  std::string schema;  // .fbs or .bfbs; empty: the ring's stored schema
  std::string root_type;
  std::string input;     // file, or "-" for stdin
  double timeout = 5.0;  // seconds to wait for space, per record
  bool quiet = false;
};

void run_create(const CreateOptions& o);
void run_ls(const LsOptions& o);
void run_stat(const StatOptions& o);
void run_rm(const RmOptions& o);
void run_gc(const GcOptions& o);
void run_schema(const SchemaOptions& o);
void run_tail(const TailOptions& o);
void run_send(const SendOptions& o);

/// Set by SIGINT/SIGTERM: long-running commands (stat --watch, tail --follow) stop cleanly,
/// releasing their peer slot.
bool stop_requested() noexcept;
/// Sleeps up to `seconds`, returning early when a stop is requested.
void sleep_for(double seconds) noexcept;

}  // namespace flatring::tool
