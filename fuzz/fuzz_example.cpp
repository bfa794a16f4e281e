// tf.train.Example parser. Property: what parses serializes to bytes that parse to the same
// serialization (the parser and writer agree on every value it accepts).
#include <ktf/example.h>

#include "fuzz_common.h"

KTF_FUZZ_TARGET(fuzz_example)(const uint8_t* data, size_t size) {
  using namespace ktf;
  std::map<std::string, Feature> features;
  try {
    features = parse_example({reinterpret_cast<const char*>(data), size}, "fuzz");
  } catch (const Error&) {
    return 0;
  }
  const std::string once = serialize_example(features);
  std::string twice;
  fuzz::expect_clean([&] { twice = serialize_example(parse_example(once, "reserialized")); });
  if (once != twice) {
    std::fprintf(stderr, "ktf fuzz: serialize(parse(serialize(x))) != serialize(x)\n");
    std::abort();
  }
  return 0;
}
