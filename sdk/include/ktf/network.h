// ktf/network.h — helpers for networks built on other networks (features, heads, stacks).
//
// A network whose constructor builds nested components for shapes it computes sets
// ctx.input_shape for each nested build; InputShapeScope puts the caller's shape back however the
// constructor ends, and infer_output_shape says what a built network produces:
//
//   MyNetImpl(const MyNetOptions& o, ktf::BuildContext& ctx) {
//     auto features = ctx.build(o.features);                 // for ctx.input_shape
//     auto shape = ktf::infer_output_shape(*features, ctx.input_shape);
//     ktf::InputShapeScope scope(ctx);
//     ctx.input_shape = shape;                               // the head sees the features' shape
//     auto head = ctx.build(o.head);
//     ...
//   }
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ktf/components.h"
#include "ktf/registry.h"

namespace ktf {

/// Restores ctx.input_shape when a nested build leaves the scope, normally or by an exception.
class InputShapeScope {
 public:
  explicit InputShapeScope(BuildContext& ctx) : ctx_(ctx), saved_(ctx.input_shape) {}
  ~InputShapeScope() { ctx_.input_shape = saved_; }
  InputShapeScope(const InputShapeScope&) = delete;
  InputShapeScope& operator=(const InputShapeScope&) = delete;

 private:
  BuildContext& ctx_;
  std::vector<int64_t> saved_;
};

/// "[1, 28, 28]".
std::string shape_str(const std::vector<int64_t>& shape);

/// The shape (no batch dimension) `net` produces for one example of `input_shape`: runs a forward
/// pass on a zero batch of one, without gradients and in eval mode (the mode is restored).
/// A libtorch error (input too small for a kernel, wrong rank...) becomes a ktf::Error.
std::vector<int64_t> infer_output_shape(Network& net, const std::vector<int64_t>& input_shape);

/// One example's input shape (no batch dimension): `given` when set (validated), else
/// ctx.input_shape. Throws ktf::Error when neither is known.
std::vector<int64_t> example_shape(const std::optional<std::vector<int64_t>>& given,
                                   const BuildContext& ctx);

}  // namespace ktf
