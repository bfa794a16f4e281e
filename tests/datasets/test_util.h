// Helpers shared by the datasets tests.
#pragma once

#include <gtest/gtest.h>
#include <ktf/components.h>
#include <ktf/error.h>

#include <fstream>
#include <stdexcept>
#include <string>

#include "plugins_fixture.h"

namespace ktf::test {

inline std::shared_ptr<Dataset> dataset(const std::string& json) {
  return build<Dataset>(Json::parse(json, "test"));
}

/// All batches of one epoch of `stream`, concatenated.
inline Batch epoch(BatchStream& stream, int64_t e = 0) {
  std::vector<torch::Tensor> xs, ys;
  stream.start_epoch(e);
  while (auto b = stream.next()) {
    xs.push_back(b->input);
    ys.push_back(b->target);
  }
  return {torch::cat(xs), torch::cat(ys)};
}

/// The bytes of a file; a missing or unreadable file throws (tests index into the result).
inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read test input '" + path + "'");
  return std::string(std::istreambuf_iterator<char>(f), {});
}
inline void spit(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

/// The message of the ktf::Error thrown by `f` (fails the test if none is thrown).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected ktf::Error, got " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected ktf::Error, nothing was thrown";
  return "";
}

}  // namespace ktf::test
