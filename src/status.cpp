#include "flatring/status.hpp"

namespace flatring {

std::string_view to_string(Status s) noexcept {
  switch (s) {
    case Status::ok: return "ok";
    case Status::full: return "full";
    case Status::empty: return "empty";
    case Status::too_large: return "too_large";
    case Status::corrupt: return "corrupt";
    case Status::verify_failed: return "verify_failed";
    case Status::timed_out: return "timed_out";
    case Status::abandoned: return "abandoned";
    case Status::peer_dead: return "peer_dead";
    case Status::no_consumer: return "no_consumer";
    case Status::invalid_state: return "invalid_state";
    case Status::segment_lost: return "segment_lost";
  }
  return "unknown";
}

std::string_view to_string(Errc e) noexcept {
  switch (e) {
    case Errc::invalid_name: return "invalid_name";
    case Errc::invalid_options: return "invalid_options";
    case Errc::already_exists: return "already_exists";
    case Errc::not_found: return "not_found";
    case Errc::permission_denied: return "permission_denied";
    case Errc::not_flatring: return "not_flatring";
    case Errc::wrong_version: return "wrong_version";
    case Errc::wrong_schema: return "wrong_schema";
    case Errc::wrong_mode: return "wrong_mode";
    case Errc::size_mismatch: return "size_mismatch";
    case Errc::corrupt_header: return "corrupt_header";
    case Errc::corrupt_state: return "corrupt_state";
    case Errc::role_taken: return "role_taken";
    case Errc::no_free_slot: return "no_free_slot";
    case Errc::unsafe_owner: return "unsafe_owner";
    case Errc::unsafe_permissions: return "unsafe_permissions";
    case Errc::system_error: return "system_error";
    case Errc::invalid_schema: return "invalid_schema";
    case Errc::corrupt_schema: return "corrupt_schema";
    case Errc::schema_too_large: return "schema_too_large";
    case Errc::schema_too_deep: return "schema_too_deep";
    case Errc::schema_no_root: return "schema_no_root";
  }
  return "unknown";
}

}  // namespace flatring
