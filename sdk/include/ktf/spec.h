// ktf/spec.h — what a component is called and which arguments it takes.
//
// Every registered component carries a Spec: kind, config name, aliases, a one-line summary and
// its parameters (name, type, default or required, allowed values, one-line doc). The spec drives
// validation, `--describe`, `--list`, `--schema` and the component tables in docs/. Specs are
// never written by hand: they are derived from the component's options struct by ktf::define (see
// registry.h), so spec and code cannot drift. Allowed values (ranges, choices, non-empty lists)
// are declared with the parameter and checked for every cycle before anything is built:
//
//   .arg("dropout", &O::dropout, "dropout rate").min(0).below(1)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ktf/json.h"

namespace ktf {

/// The kinds of component a plugin can register.
enum class Kind {
  Dataset,
  Network,
  Loss,
  Optimizer,
  LrSchedule,
  Metric,
  Callback,
  TrainLoop,
  TrainStep,
  Transform
};
inline constexpr Kind kAllKinds[] = {
    Kind::Dataset, Kind::Network,  Kind::Loss,      Kind::Optimizer, Kind::LrSchedule,
    Kind::Metric,  Kind::Callback, Kind::TrainLoop, Kind::TrainStep, Kind::Transform};

/// "dataset", "network", "loss", "optimizer", "lr_schedule", "metric", "callback", "train_loop",
/// "train_step", "transform".
const char* kind_name(Kind kind);
std::optional<Kind> kind_from_name(std::string_view name);

enum class ParamType {
  Bool,
  Int,
  Float,
  String,
  IntList,
  FloatList,
  StringList,
  Component,      ///< a nested component of `component_kind`: {"<name>": {<args>}}
  ComponentList,  ///< a list of nested components of `component_kind`
  Size2,          ///< an integer or an [h, w] pair (ktf::Size2)
  Object,         ///< a JSON object interpreted by the component (ktf::JsonObject)
  Union,          ///< one of `alternatives` (std::variant): the first whose JSON type matches
  Any             ///< any JSON value, interpreted by the component
};
/// "bool", "int", "float", "string", "int[]", "float[]", "string[]", "<kind>", "<kind>[]",
/// "int|[h,w]", "object", "json". Unions are named by Param::type_name().
std::string param_type_name(ParamType type, Kind component_kind);

struct Param {
  std::string name;
  ParamType type = ParamType::Any;
  Kind component_kind = Kind::Network;  ///< for Component / ComponentList
  bool required = false;
  bool nullable = false;  ///< null is accepted (std::optional fields)
  Json default_value;     ///< used when the config omits the parameter (not for required ones)
  std::string doc;        ///< one line
  std::vector<std::string> choices;  ///< allowed strings, when not empty
  /// Allowed numbers (of a number, of each element of a list or of an [h, w] pair).
  std::optional<double> minimum, maximum;
  bool exclusive_minimum = false, exclusive_maximum = false;
  bool non_empty = false;           ///< lists and strings must not be empty
  std::vector<int64_t> list_sizes;  ///< allowed list lengths, when not empty (e.g. {0, 2})
  std::vector<Param> alternatives;  ///< Union: the accepted shapes, in order

  /// "int", "string|float", "float?"... as --describe shows it.
  std::string type_name() const;
  /// The allowed values in words ("> 0", "in [0, 1)", "one of: a, b", "not empty"), or "".
  std::string constraint_text() const;
  /// The numeric bounds alone ("> 0", "in [0, 1)"), or "".
  std::string bounds_text() const;
  /// Checks `value` (already of this parameter's type) against the declared bounds, choices and
  /// sizes. Returns the reason it is not allowed, or "" when it is.
  std::string check(const Json& value) const;
};

/// True for the types numeric bounds apply to: numbers, lists of numbers and [h, w] pairs.
bool is_numeric(ParamType type);

/// True when `value` has the JSON shape of `type` (the first step of validating it).
bool json_matches(ParamType type, const Json& value);

struct Spec {
  Kind kind = Kind::Network;
  std::string name;                  ///< dotted config name, e.g. "ktf.networks.MLP"
  std::vector<std::string> aliases;  ///< e.g. "tf.keras.optimizers.Adam", "torch.optim.Adam"
  std::string summary;               ///< one line
  std::vector<Param> params;
  Json example = Json::object();        ///< arguments that build a working instance (tests use it)
  std::vector<int64_t> example_input;   ///< networks: one example's input shape, e.g. {1, 28, 28}
  std::vector<int64_t> example_target;  ///< losses/metrics: per-example target shape ({} = class)
  std::string plugin;                   ///< name of the plugin that registered it (set by the host)
  std::string plugin_path;              ///< file it came from (set by the host)

  const Param* find_param(std::string_view name) const;
};

}  // namespace ktf
