// Compiled and linked with `pkg-config --cflags --libs flatring` only: the .pc file is complete.
#include <cstdio>

#include <flatring/flatring.hpp>

int main() {
  const flatring::SchemaId id = flatring::SchemaId::of("pkg.Greeting", "PKGT");
  std::printf("pkg-config test: flatring links, schema %s\n", id.identifier().c_str());
  return id.raw() ? 1 : 0;
}
