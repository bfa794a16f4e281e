// ktf/spec.h — what a component is called and which arguments it takes.
//
// Every registered component carries a Spec: kind, config name, aliases, a one-line summary and
// its parameters (name, type, default or required, one-line doc). The spec drives validation,
// `--describe`, `--list` and `--schema`. Specs are never written by hand: they are derived from the
// component's options struct by ktf::define (see registry.h), so spec and code cannot drift.
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
  Any             ///< any JSON value, interpreted by the component
};
/// "bool", "int", "float", "string", "int[]", "float[]", "string[]", "<kind>", "<kind>[]", "json".
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
};

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
