#include "schema_arg.hpp"

#include <string>

#include <flatbuffers/idl.h>

#include <flatring/status.hpp>

namespace py = pybind11;

namespace flatring::python {

std::optional<Schema> schema_from_arg(py::handle arg) {
  if (arg.is_none()) return std::nullopt;
  if (py::isinstance<py::str>(arg) || py::hasattr(arg, "__fspath__")) {
    const std::string path = py::str(py::module_::import("os").attr("fspath")(arg));
    return Schema::from_file(path);
  }
  if (PyObject_CheckBuffer(arg.ptr()) != 0) {
    py::buffer_info info = py::reinterpret_borrow<py::buffer>(arg).request();
    if (info.ndim > 1 && !info.strides.empty() && info.strides.back() != info.itemsize)
      throw py::type_error("schema: a binary schema must be a contiguous bytes-like object");
    const auto* p = static_cast<const std::uint8_t*>(info.ptr);
    return Schema::from_bfbs(
        std::span<const std::uint8_t>(p, static_cast<std::size_t>(info.size * info.itemsize)));
  }
  throw py::type_error(
      "schema: expected None, a path to a .fbs or .bfbs file, or the bytes of a binary schema");
}

JsonCodec::JsonCodec(const Schema& schema) {
  flatbuffers::IDLOptions opts;
  opts.strict_json = true;
  parser_ = std::make_unique<flatbuffers::Parser>(opts);
  const auto bfbs = schema.bfbs();
  if (!parser_->Deserialize(bfbs.data(), bfbs.size())) {
    throw Error(Errc::invalid_schema, "flatring: FlatBuffers could not load the binary schema of " +
                                          schema.root_name() + " for JSON: " + parser_->error_);
  }
}

JsonCodec::~JsonCodec() = default;

std::span<const std::byte> JsonCodec::parse(std::string_view json) {
  const std::string text(json);  // the parser wants a NUL-terminated string
  if (!parser_->ParseJson(text.c_str())) {
    std::string why = parser_->error_;
    parser_->error_.clear();
    throw py::value_error("flatring: the JSON does not describe a record of the schema: " + why);
  }
  return {reinterpret_cast<const std::byte*>(parser_->builder_.GetBufferPointer()),
          parser_->builder_.GetSize()};
}

std::string JsonCodec::generate(std::span<const std::byte> record) {
  std::string out;
  if (!flatbuffers::GenerateText(*parser_, record.data(), &out))
    throw py::value_error("flatring: FlatBuffers could not generate JSON for the record");
  return out;
}

}  // namespace flatring::python
