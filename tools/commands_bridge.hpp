// flatring bridge out|in|keygen (commands_bridge.cpp), registered by main.cpp when the bridge
// library is built.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace flatring::tool {

struct BridgeOptions {
  std::string ring;
  std::string to;                             // out
  std::string bind = "tcp://127.0.0.1:5790";  // in: loopback by default
  std::string key;                            // our .key
  std::string server_key;                     // out: the in's .pub
  std::vector<std::string> allow;             // in: client .pub files
  bool no_curve = false;
  bool raw = false;
  std::string state_file;
  std::uint32_t window = 4096;
  std::uint64_t window_bytes = 32u << 20;
  double timeout = 5.0;
  double status_interval = 1.0;
  bool json = false;
  std::string status_file;
  std::string base;  // keygen
};

struct BridgeCommands {
  CLI::App* out = nullptr;
  CLI::App* in = nullptr;
  CLI::App* keygen = nullptr;
  [[nodiscard]] bool selected() const { return *out || *in || *keygen; }
};

BridgeCommands add_bridge_commands(CLI::App& app, BridgeOptions& options);
/// \throws ToolError with the bridge's exit code.
void run_bridge(const BridgeCommands& c, const BridgeOptions& options);

}  // namespace flatring::tool
