// Shared by the libFuzzer targets (scripts/fuzz.sh): the in-tree plugins loaded once, inputs
// written to a per-process scratch file, and the rule every target enforces: bad input may only
// end in a ktf::Error (the documented clear message), never another exception, a crash or a hang.
#pragma once

// Replayed in the suite (tests/datasets), the plugins are the build's in-tree ones.
#if defined(KTF_FUZZ_REPLAY) && !defined(KTF_FUZZ_PLUGIN_DIR)
#include "paths.h"
#define KTF_FUZZ_PLUGIN_DIR KTF_TEST_PLUGIN_DIR
#endif

#include <ktf/components.h>
#include <ktf/config.h>
#include <ktf/error.h>
#include <ktf/json.h>
#include <ktf/plugin_loader.h>
#include <ktf/registry.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace ktf::fuzz {

/// A target's entry point: LLVMFuzzerTestOneInput in the fuzz build; with KTF_FUZZ_REPLAY (the
/// test suite's ktf_fuzz_replay_tests) a function in targets(), which replays every committed
/// corpus and regression input through it.
using Target = int (*)(const uint8_t*, size_t);
inline std::map<std::string, Target>& targets() {
  static std::map<std::string, Target> all;
  return all;
}
inline bool add_target(const char* name, Target t) {
  targets()[name] = t;
  return true;
}
#ifdef KTF_FUZZ_REPLAY
#define KTF_FUZZ_TARGET(name)                                                                   \
  static int name##_one(const uint8_t*, size_t);                                                \
  [[maybe_unused]] static const bool name##_added = ::ktf::fuzz::add_target(#name, name##_one); \
  static int name##_one
#else
#define KTF_FUZZ_TARGET(name) extern "C" int LLVMFuzzerTestOneInput
#endif

/// The global registry with every plugin of the fuzz build loaded (KTF_FUZZ_PLUGIN_DIR).
inline Registry& registry() {
  static std::once_flag once;
  std::call_once(once, [] {
    static PluginLoader loader(Registry::global());
    loader.load_all({KTF_FUZZ_PLUGIN_DIR});
  });
  return Registry::global();
}

/// A directory of this process under /dev/shm (or $TMPDIR) for the files a target reads.
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    auto d = base / ("ktf-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] { std::filesystem::remove_all(scratch()); });
    return d;
  }();
  return dir;
}

/// Writes `data` to scratch()/name and returns the path.
inline std::string write_file(const std::string& name, std::string_view data) {
  auto path = (scratch() / name).string();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  return path;
}

/// Splits an input in two: the first byte pair gives the first part's length (modulo the rest).
inline std::pair<std::string_view, std::string_view> split(std::string_view in) {
  if (in.size() < 2) return {in, {}};
  size_t n = (static_cast<unsigned char>(in[0]) | static_cast<unsigned char>(in[1]) << 8);
  in.remove_prefix(2);
  n = in.empty() ? 0 : n % (in.size() + 1);
  return {in.substr(0, n), in.substr(n)};
}

/// Runs `f`; a ktf::Error is the expected outcome of bad input, anything else is a finding.
template <class F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ktf fuzz: an exception other than ktf::Error escaped: %s\n", e.what());
    std::abort();
  }
}

/// Builds the dataset `name` from `args` as the host does (validated, defaults filled; no prefetch
/// thread) and reads at most `batches` batches of each split.
inline void build_and_read(const std::string& name, Json args, int batches = 2) {
  args.set("prefetch", 0);
  Json resolved =
      resolve_component(Json::object({{name, std::move(args)}}), Kind::Dataset, registry(), {});
  auto [resolved_name, resolved_args] = split_component(resolved);
  BuildContext ctx(registry());
  auto dataset = std::static_pointer_cast<Dataset>(
      ctx.build_any(Kind::Dataset, resolved_name, resolved_args, {resolved_name}));
  for (auto stream : {dataset->train(), dataset->valid()}) {
    if (!stream) continue;
    stream->start_epoch(0);
    for (int i = 0; i < batches; ++i)
      if (!stream->next()) break;
  }
}

}  // namespace ktf::fuzz
