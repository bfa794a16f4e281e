// Helpers shared by the networks tests: build a network for an input shape, count parameters,
// and capture the text of a build error.
#pragma once

#include <gtest/gtest.h>
#include <ktf/components.h>
#include <ktf/error.h>

#include <string>
#include <vector>

#include "plugins_fixture.h"

namespace ktf::test {

/// Builds a network component (JSON text) for examples of `input_shape`.
inline std::shared_ptr<Network> make_network(const std::string& component,
                                             std::vector<int64_t> input_shape,
                                             int64_t num_classes = -1) {
  BuildContext ctx(plugins());
  ctx.input_shape = std::move(input_shape);
  ctx.num_classes = num_classes;
  return build<Network>(Json::parse(component, "test"), &ctx);
}

/// "path › to › arg: message" of the ktf::Error building `component` throws, or "no error".
inline std::string build_error(const std::string& component, std::vector<int64_t> input_shape) {
  try {
    make_network(component, std::move(input_shape));
  } catch (const Error& e) {
    return Error::format(e.path(), e.message());
  }
  return "no error";
}

/// gtest predicate: `text` contains `part`.
inline ::testing::AssertionResult contains(const char* text_expr, const char* part_expr,
                                           const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << text_expr << " does not contain " << part_expr
                                       << "\n  text: " << text << "\n  part: " << part;
}
#define EXPECT_CONTAINS(text, part) EXPECT_PRED_FORMAT2(::ktf::test::contains, text, part)

inline int64_t count_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

inline std::vector<int64_t> output_shape(Network& net, std::vector<int64_t> batch_shape) {
  torch::NoGradGuard no_grad;
  return net.forward(torch::randn(batch_shape)).sizes().vec();
}

}  // namespace ktf::test
