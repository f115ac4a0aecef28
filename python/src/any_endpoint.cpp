// The per-mode instantiations behind AnyWriter and AnyReader.
#include "any_endpoint.hpp"

namespace flatring::python {
namespace {

template <Mode M>
class WriterOf final : public AnyWriter {
 public:
  WriterOf(const Ring& ring, const WaitOptions& wait) : w_(ring, wait) {}
  Status try_write(std::span<const std::byte> p) noexcept override { return w_.try_write(p); }
  Status write(std::span<const std::byte> p, std::chrono::nanoseconds t) override {
    return w_.write(p, t);
  }
  Result<std::span<std::byte>> try_reserve(std::size_t n) noexcept override {
    return w_.try_reserve(n);
  }
  Result<std::span<std::byte>> reserve(std::size_t n, std::chrono::nanoseconds t) override {
    return w_.reserve(n, t);
  }
  Status commit(std::size_t used) noexcept override { return w_.commit(used); }
  void abort() noexcept override { w_.abort(); }
  const Attachment& attachment() const noexcept override { return w_.attachment(); }
  std::uint64_t max_record_size() const noexcept override { return w_.max_record_size(); }

 private:
  Writer<M> w_;
};

template <Mode M>
class ReaderOf final : public AnyReader {
 public:
  ReaderOf(const Ring& ring, const WaitOptions& wait) : r_(ring, wait) {}
  Result<RecordView> try_read() noexcept override { return r_.try_read(); }
  Result<RecordView> read(std::chrono::nanoseconds t) override { return r_.read(t); }
  void release() noexcept override { r_.release(); }
  Status recover() noexcept override { return r_.recover(); }
  const Attachment& attachment() const noexcept override { return r_.attachment(); }
  std::unique_ptr<WaitFd> wait_fd() override { return std::make_unique<WaitFd>(r_); }

 private:
  Reader<M> r_;
};

}  // namespace

std::unique_ptr<AnyWriter> AnyWriter::attach(const Ring& ring, const WaitOptions& wait) {
  return visit_mode(ring.info().mode, [&](auto mode) -> std::unique_ptr<AnyWriter> {
    return std::make_unique<WriterOf<mode()>>(ring, wait);
  });
}

std::unique_ptr<AnyReader> AnyReader::attach(const Ring& ring, const WaitOptions& wait) {
  return visit_mode(ring.info().mode, [&](auto mode) -> std::unique_ptr<AnyReader> {
    return std::make_unique<ReaderOf<mode()>>(ring, wait);
  });
}

}  // namespace flatring::python
