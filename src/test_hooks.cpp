#include "test_hooks.hpp"

namespace flatring::test_hooks {

void (*after_claim)() = nullptr;
void (*mid_copy)() = nullptr;
void (*mid_release)() = nullptr;
void (*mid_unblock)() = nullptr;
void (*mid_verify)() = nullptr;

}  // namespace flatring::test_hooks
