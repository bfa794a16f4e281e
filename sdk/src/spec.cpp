#include "ktf/spec.h"

#include "ktf/components.h"

#include <algorithm>
#include <cmath>

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
    case ParamType::Size2:
      return "int|[h,w]";
    case ParamType::Object:
      return "object";
    case ParamType::Union:
      return "union";
    case ParamType::Any:
      return "json";
  }
  return "?";
}

bool json_matches(ParamType type, const Json& v) {
  switch (type) {
    case ParamType::Bool:
      return v.is_bool();
    case ParamType::Int:
      return v.is_int() ||
             (v.type() == Json::Type::Float && std::isfinite(v.as_number()) &&
              v.as_number() == std::floor(v.as_number()) && std::fabs(v.as_number()) < 9.2e18);
    case ParamType::Float:
      return v.is_number();
    case ParamType::String:
      return v.is_string();
    case ParamType::IntList:
    case ParamType::FloatList:
    case ParamType::StringList:
    case ParamType::ComponentList:
      return v.is_array();
    case ParamType::Component:
    case ParamType::Object:
      return v.is_object();
    case ParamType::Size2:
      return json_matches(ParamType::Int, v) || v.is_array();
    case ParamType::Union:
    case ParamType::Any:
      return true;
  }
  return false;
}

bool is_numeric(ParamType t) {
  return t == ParamType::Int || t == ParamType::Float || t == ParamType::IntList ||
         t == ParamType::FloatList || t == ParamType::Size2;
}

std::string Param::type_name() const {
  std::string out;
  if (type == ParamType::Union) {
    for (const auto& a : alternatives) out += (out.empty() ? "" : "|") + a.type_name();
  } else {
    out = param_type_name(type, component_kind);
  }
  return nullable ? out + "?" : out;
}

namespace {

std::string number_text(double v) {
  Json j = v == std::floor(v) && std::fabs(v) < 1e15 ? Json(static_cast<int64_t>(v)) : Json(v);
  return j.dump();
}

std::string sizes_text(const std::vector<int64_t>& sizes) {
  std::string c = "length ";
  for (size_t i = 0; i < sizes.size(); ++i)
    c += (i ? (i + 1 == sizes.size() ? " or " : ", ") : "") + std::to_string(sizes[i]);
  return c;
}

}  // namespace

std::string Param::bounds_text() const {
  if (minimum && maximum)
    return std::string("in ") + (exclusive_minimum ? "(" : "[") + number_text(*minimum) + ", " +
           number_text(*maximum) + (exclusive_maximum ? ")" : "]");
  if (minimum) return (exclusive_minimum ? "> " : ">= ") + number_text(*minimum);
  if (maximum) return (exclusive_maximum ? "< " : "<= ") + number_text(*maximum);
  return "";
}

std::string Param::constraint_text() const {
  std::vector<std::string> parts;
  if (minimum || maximum) parts.push_back(bounds_text());
  if (!choices.empty()) {
    std::string c = "one of: ";
    for (size_t i = 0; i < choices.size(); ++i) c += (i ? ", " : "") + choices[i];
    parts.push_back(c);
  }
  if (non_empty) parts.push_back("not empty");
  if (!list_sizes.empty()) parts.push_back(sizes_text(list_sizes));
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "; ") + p;
  return out;
}

std::string Param::check(const Json& v) const {
  if (v.is_null()) return "";
  if (type == ParamType::Union) {
    for (const auto& a : alternatives)
      if (json_matches(a.type, v)) return a.check(v);
    return "";
  }
  auto check_number = [&](double x) -> std::string {
    if (!std::isfinite(x)) return "must be a finite number, got " + Json(x).dump();
    bool low = minimum && (exclusive_minimum ? !(x > *minimum) : !(x >= *minimum));
    bool high = maximum && (exclusive_maximum ? !(x < *maximum) : !(x <= *maximum));
    if (low || high) return "must be " + bounds_text() + ", got " + number_text(x);
    return "";
  };
  auto check_string = [&](const std::string& s) -> std::string {
    if (non_empty && s.empty()) return "must not be empty";
    if (!choices.empty() && std::find(choices.begin(), choices.end(), s) == choices.end()) {
      std::string allowed;
      for (const auto& c : choices) allowed += (allowed.empty() ? "'" : ", '") + c + "'";
      return "'" + s + "' is not one of " + allowed;
    }
    return "";
  };
  if (v.is_number() && is_numeric(type)) return check_number(v.as_number());
  if (v.is_string() && (type == ParamType::String || type == ParamType::StringList))
    return check_string(v.as_string());
  if (v.is_array()) {
    if (non_empty && v.size() == 0) return "must not be empty";
    if (!list_sizes.empty() && std::find(list_sizes.begin(), list_sizes.end(),
                                         static_cast<int64_t>(v.size())) == list_sizes.end())
      return "must have " + sizes_text(list_sizes) + ", got " + std::to_string(v.size()) +
             " element(s)";
    if (type == ParamType::Size2 && v.size() != 2)
      return "must be an integer or [h, w], got a list of " + std::to_string(v.size());
    size_t i = 0;
    for (const auto& x : v.as_array()) {
      std::string why = x.is_number() && is_numeric(type) ? check_number(x.as_number())
                        : x.is_string()                   ? check_string(x.as_string())
                                                          : std::string();
      if (!why.empty()) return "[" + std::to_string(i) + "] " + why;
      ++i;
    }
  }
  return "";
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

Json LogValue::to_json() const {
  if (is_int_) return Json(static_cast<int64_t>(value_));
  return Json(value_);
}

void set_log(Logs& logs, const std::string& key, LogValue value) {
  for (auto& [k, v] : logs) {
    if (k == key) {
      v = value;
      return;
    }
  }
  logs.emplace_back(key, value);
}

}  // namespace ktf
