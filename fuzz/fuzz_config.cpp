// Config parser (Hjson, strict JSON) and validation against every in-tree component's spec.
// Properties: parse errors are ktf::Errors; a parsed value dumps to JSON that parses back equal;
// resolve_config either refuses with a ktf::Error or returns cycles that resolve again unchanged.
#include "fuzz_common.h"

KTF_FUZZ_TARGET(fuzz_config)(const uint8_t* data, size_t size) {
  using namespace ktf;
  const std::string text(reinterpret_cast<const char*>(data), size);
  Json config;
  try {
    config = Json::parse(text, "fuzz.hjson");
  } catch (const Error&) {
    return 0;
  }
  const std::string dumped = config.dump();
  Json again;
  try {
    again = Json::parse(dumped, "dumped.json");
  } catch (const Error& e) {
    std::fprintf(stderr, "ktf fuzz: a parsed config dumps to JSON that does not parse: %s\n",
                 e.what());
    std::abort();
  }
  if (!(again == config)) {
    std::fprintf(stderr, "ktf fuzz: parse(dump(x)) != x for %s\n", dumped.c_str());
    std::abort();
  }
  fuzz::expect_clean([&] {
    Json cycles = resolve_config(config, fuzz::registry());
    if (!(resolve_config(cycles, fuzz::registry()) == cycles)) {
      std::fprintf(stderr, "ktf fuzz: resolving a resolved config changed it\n");
      std::abort();
    }
  });
  return 0;
}
