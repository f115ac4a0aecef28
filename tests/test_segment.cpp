// The segment: names, exclusive create, permissions, header validation, removal, roles.
#include <catch2/catch.hpp>

#include <csignal>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include "helpers.hpp"

using namespace flatring;
using fr_test::error_code;
using fr_test::unique_name;

namespace {

// Rewrites bytes of the segment file directly, as a hostile or buggy peer could.
void poke(const std::string& name, off_t offset, const void* bytes, std::size_t n) {
  int fd = ::open(Ring::path_of(name).c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  REQUIRE(::pwrite(fd, bytes, n, offset) == static_cast<ssize_t>(n));
  ::close(fd);
}

}  // namespace

TEST_CASE("names are validated", "[segment]") {
  for (const char* bad : {"", ".hidden", "a/b", "sp ace", "semi;colon", "uni\xc3\xa9"}) {
    CAPTURE(bad);
    CHECK(error_code([&] { (void)Ring::create(bad, {.capacity = 4096}); }) == Errc::invalid_name);
  }
  CHECK(error_code([&] { (void)Ring::create(std::string(201, 'a'), {.capacity = 4096}); }) ==
        Errc::invalid_name);
  CHECK_NOTHROW(Ring::validate_name("orders.v2_A-1"));
  CHECK(Ring::path_of("orders") == "/dev/shm/flatring.orders");
}

TEST_CASE("options are validated", "[segment]") {
  auto name = unique_name("opts");
  CHECK(error_code([&] { (void)Ring::create(name, {.capacity = 3000}); }) == Errc::invalid_options);
  CHECK(error_code([&] { (void)Ring::create(name, {.capacity = 4096 + 16}); }) ==
        Errc::invalid_options);
  CHECK(error_code([&] {
          (void)Ring::create(name, {.capacity = 4096, .max_record_size = 4096 / 2 - 63});
        }) == Errc::invalid_options);
  CHECK(error_code([&] { (void)Ring::create(name, {.capacity = 4096, .permissions = 0400}); }) ==
        Errc::invalid_options);
  CHECK_FALSE(Ring::exists(name));
}

TEST_CASE("create is exclusive, 0600 by default, and remove leaves nothing", "[segment]") {
  auto name = unique_name("create");
  {
    RemoveGuard guard(name);
    auto ring = Ring::create(name, {.capacity = 1 << 16});
    CHECK(ring.info().max_record_size == (1u << 16) / 2 - 64);
    struct stat st {};
    REQUIRE(::stat(Ring::path_of(name).c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(static_cast<std::uint64_t>(st.st_size) == layout::kRingOffset + (1u << 16));
    CHECK(error_code([&] { (void)Ring::create(name, {.capacity = 1 << 16}); }) ==
          Errc::already_exists);
    auto names = Ring::list();
    CHECK(std::find(names.begin(), names.end(), name) != names.end());
  }
  CHECK_FALSE(Ring::exists(name));
  struct stat st {};
  CHECK(::stat(Ring::path_of(name).c_str(), &st) != 0);
  CHECK_FALSE(Ring::remove(name));
}

TEST_CASE("permissions can be widened explicitly, and open refuses writable ones unless allowed",
          "[segment]") {
  auto name = unique_name("perm");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .permissions = 0660});
  struct stat st {};
  REQUIRE(::stat(Ring::path_of(name).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0660);
  CHECK(error_code([&] { (void)Ring::open(name); }) == Errc::unsafe_permissions);
  CHECK_NOTHROW(Ring::open(name, {.allow_shared_write = true}));
}

TEST_CASE("open checks the header and names what is wrong", "[segment]") {
  auto name = unique_name("hdr");
  RemoveGuard guard(name);
  SchemaId schema = SchemaId::of("app.Order", "ORDR");
  { auto ring = Ring::create(name, {.capacity = 8192, .max_record_size = 1000}, schema); }

  SECTION("a good header opens and is copied out") {
    auto ring = Ring::open(name, {.expect_schema = schema, .expect_mode = Mode::spsc});
    CHECK(ring.info().capacity == 8192);
    CHECK(ring.info().max_record_size == 1000);
    CHECK(ring.info().schema == schema);
    CHECK(ring.info().schema.identifier() == "ORDR");
    CHECK(ring.info().creator.pid == static_cast<std::uint32_t>(::getpid()));
  }
  SECTION("missing") {
    CHECK(error_code([&] { (void)Ring::open(unique_name("nope")); }) == Errc::not_found);
  }
  SECTION("wrong schema") {
    CHECK(error_code([&] {
            (void)Ring::open(name, {.expect_schema = SchemaId::of("app.Other", "ORDR")});
          }) == Errc::wrong_schema);
    CHECK(error_code([&] { (void)Ring::open(name, {.expect_schema = SchemaId{}}); }) ==
          Errc::wrong_schema);
  }
  SECTION("wrong mode") {
    CHECK(error_code([&] { (void)Ring::open(name, {.expect_mode = Mode::mpmc}); }) ==
          Errc::wrong_mode);
  }
  SECTION("wrong version") {
    std::uint32_t v = 99;
    poke(name, offsetof(layout::SegmentHeader, version), &v, 4);
    CHECK(error_code([&] { (void)Ring::open(name); }) == Errc::wrong_version);
  }
  SECTION("foreign magic") {
    std::uint64_t m = 0x1234;
    poke(name, 0, &m, 8);
    CHECK(error_code([&] { (void)Ring::open(name); }) == Errc::not_flatring);
  }
  SECTION("capacity not a power of two") {
    std::uint64_t c = 8192 + 16;
    poke(name, offsetof(layout::SegmentHeader, capacity), &c, 8);
    CHECK(error_code([&] { (void)Ring::open(name); }) == Errc::corrupt_header);
  }
  SECTION("max record size too large for the capacity") {
    std::uint64_t c = 8192;
    poke(name, offsetof(layout::SegmentHeader, max_record_size), &c, 8);
    CHECK(error_code([&] { (void)Ring::open(name); }) == Errc::corrupt_header);
  }
  SECTION("unknown mode") {
    std::uint32_t mode = 7;
    poke(name, offsetof(layout::SegmentHeader, mode), &mode, 4);
    CHECK(error_code([&] { (void)Ring::open(name); }) == Errc::corrupt_header);
  }
  SECTION("truncated segment") {
    REQUIRE(::truncate(Ring::path_of(name).c_str(), layout::kRingOffset + 4096) == 0);
    CHECK(error_code([&] { (void)Ring::open(name); }) == Errc::size_mismatch);
  }
  SECTION("truncated inside the header") {
    REQUIRE(::truncate(Ring::path_of(name).c_str(), 100) == 0);
    CHECK(error_code([&] { (void)Ring::open(name); }) == Errc::size_mismatch);
  }
  SECTION("grown segment") {
    REQUIRE(::truncate(Ring::path_of(name).c_str(), layout::kRingOffset + 8192 * 2) == 0);
    CHECK(error_code([&] { (void)Ring::open(name); }) == Errc::size_mismatch);
  }
  SECTION("empty file") {
    REQUIRE(::truncate(Ring::path_of(name).c_str(), 0) == 0);
    CHECK(error_code([&] { (void)Ring::open(name); }) == Errc::not_flatring);
  }
}

TEST_CASE("a foreign shared memory object is not a flatring segment", "[segment]") {
  auto name = unique_name("foreign");
  RemoveGuard guard(name);
  int fd = ::shm_open(("/flatring." + name).c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  REQUIRE(fd >= 0);
  std::vector<char> junk(20000, 'x');
  REQUIRE(::write(fd, junk.data(), junk.size()) == static_cast<ssize_t>(junk.size()));
  ::close(fd);
  CHECK(error_code([&] { (void)Ring::open(name); }) == Errc::not_flatring);
}

TEST_CASE("a symbolic link in place of a segment is refused", "[segment]") {
  auto name = unique_name("link");
  auto target = unique_name("target");
  RemoveGuard g1(name), g2(target);
  auto ring = Ring::create(target, {.capacity = 4096});
  REQUIRE(::symlink(Ring::path_of(target).c_str(), Ring::path_of(name).c_str()) == 0);
  const auto e = error_code([&] { (void)Ring::open(name); });
  REQUIRE(e.has_value());
  CHECK((*e == Errc::unsafe_permissions || *e == Errc::permission_denied ||
         *e == Errc::system_error));
  ::unlink(Ring::path_of(name).c_str());
}

TEST_CASE("spsc roles are exclusive while their holder lives", "[segment]") {
  auto name = unique_name("roles");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096});
  Writer<> w(ring);
  CHECK(error_code([&] { Writer<> second(ring); }) == Errc::role_taken);
  Reader<> r(ring);
  CHECK(error_code([&] { Reader<> second(ring); }) == Errc::role_taken);
  CHECK(census(ring, layout::Role::producer).alive == 1);
  CHECK(census(ring, layout::Role::consumer).alive == 1);
}

TEST_CASE("a dead process's role is taken over and its counters are kept", "[segment]") {
  auto name = unique_name("takeover");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096});
  pid_t child = fr_test::spawn([&] {
    Writer<> w(ring);
    std::byte b[8]{};
    (void)w.try_write(b);
    ::raise(SIGKILL);  // dies holding the producer role
    return 0;
  });
  CHECK(fr_test::join(child) == 128 + SIGKILL);
  CHECK(census(ring, layout::Role::producer).dead == 1);
  Writer<> w(ring);
  CHECK(w.took_over());
  CHECK(w.position() == layout::frame_size(8));
  CHECK(ring.control().retired.value[layout::records_written].load() == 1);
  CHECK(census(ring, layout::Role::producer).dead == 0);
}

TEST_CASE("process liveness uses pid and start time", "[segment]") {
  ProcessToken self = self_process();
  CHECK(is_alive(self));
  CHECK_FALSE(is_alive(ProcessToken{self.pid, self.start_time + 1}));
  CHECK_FALSE(is_alive(ProcessToken{0, 0}));
  CHECK_FALSE(is_alive(ProcessToken{0xFFFFFFFFu, 0}));
  pid_t child = fr_test::spawn([] { return 0; });
  fr_test::join(child);
  CHECK_FALSE(is_alive(ProcessToken{static_cast<std::uint32_t>(child), 0}));
}

namespace {
// How many pages of [p, p + n) are resident (mincore).
std::size_t resident_pages(const void* p, std::size_t n) {
  std::vector<unsigned char> v((n + layout::kPageSize - 1) / layout::kPageSize);
  REQUIRE(::mincore(const_cast<void*>(p), n, v.data()) == 0);
  std::size_t k = 0;
  for (unsigned char c : v) k += c & 1;
  return k;
}
}  // namespace

TEST_CASE("an endpoint prefaults the record area when it attaches, unless told not to",
          "[segment]") {
  const auto name = fr_test::unique_name("prefault");
  RemoveGuard guard(name);
  constexpr std::uint64_t kCap = 1u << 24;  // 16 MiB: 4096 pages, none touched yet
  constexpr std::size_t kPages = kCap / layout::kPageSize;
  Ring created = Ring::create(name, {.capacity = kCap}, SchemaId{}, {.prefault = false});
  {
    Ring opened = Ring::open(name, {.prefault = false});
    Reader<> r(opened);
    CHECK(resident_pages(opened.data(), kCap) < kPages / 2);  // faulted in only as used
  }
  {
    Ring opened = Ring::open(name);  // prefault by default
    Reader<> r(opened);
    CHECK(resident_pages(opened.data(), kCap) == kPages);
    Writer<> w(opened);
    CHECK(resident_pages(opened.writable_data(), kCap) == kPages);
  }
}
