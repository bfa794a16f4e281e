#include "ktf/spec.h"

#include "ktf/components.h"

namespace ktf {

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::Dataset:
      return "dataset";
    case Kind::Network:
      return "network";
    case Kind::Loss:
      return "loss";
    case Kind::Optimizer:
      return "optimizer";
    case Kind::LrSchedule:
      return "lr_schedule";
    case Kind::Metric:
      return "metric";
    case Kind::Callback:
      return "callback";
    case Kind::TrainLoop:
      return "train_loop";
    case Kind::TrainStep:
      return "train_step";
    case Kind::Transform:
      return "transform";
  }
  return "?";
}

std::optional<Kind> kind_from_name(std::string_view name) {
  for (Kind k : kAllKinds)
    if (name == kind_name(k)) return k;
  return std::nullopt;
}

std::string param_type_name(ParamType type, Kind component_kind) {
  switch (type) {
    case ParamType::Bool:
      return "bool";
    case ParamType::Int:
      return "int";
    case ParamType::Float:
      return "float";
    case ParamType::String:
      return "string";
    case ParamType::IntList:
      return "int[]";
    case ParamType::FloatList:
      return "float[]";
    case ParamType::StringList:
      return "string[]";
    case ParamType::Component:
      return kind_name(component_kind);
    case ParamType::ComponentList:
      return std::string(kind_name(component_kind)) + "[]";
    case ParamType::Any:
      return "json";
  }
  return "?";
}

const Param* Spec::find_param(std::string_view param) const {
  for (const auto& p : params)
    if (p.name == param) return &p;
  return nullptr;
}

std::optional<double> find_log(const Logs& logs, const std::string& key) {
  for (const auto& [k, v] : logs)
    if (k == key) return v;
  return std::nullopt;
}

void set_log(Logs& logs, const std::string& key, double value) {
  for (auto& [k, v] : logs) {
    if (k == key) {
      v = value;
      return;
    }
  }
  logs.emplace_back(key, value);
}

}  // namespace ktf
