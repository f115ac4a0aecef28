// Test seams: stops inside the library at which a crash test SIGKILLs a process. Private to the
// library's .cpp files and the crash tests (which add src/ to their include path); never in an
// installed header. Each hook is a function pointer that is null outside those tests: a stop costs
// one load and a predicted branch, on the multi-party paths and in RecordVerifier::verify only.
#pragma once

namespace flatring::test_hooks {

extern void (*after_claim)();  // producer: after the tail CAS, before the claim header is written
extern void (*mid_copy)();     // producer: half the payload copied (try_write / write)
extern void (*mid_release)();  // mpmc consumer: record marked releasing, not yet zeroed
extern void (*mid_unblock)();  // mpmc recovery: a dead producer's claim taken on `next`, not marked
extern void (*mid_verify)();   // RecordVerifier::verify: identifier checked, tables not yet

}  // namespace flatring::test_hooks

#define FLATRING_TEST_HOOK(name)                                \
  do {                                                          \
    if (::flatring::test_hooks::name != nullptr) [[unlikely]] { \
      ::flatring::test_hooks::name();                           \
    }                                                           \
  } while (0)
