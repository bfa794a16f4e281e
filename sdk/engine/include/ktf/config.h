// ktf/config.h — the config engine: cycles, inheritance, overrides, validation, schema.
//
//   ktf::Json raw = ktf::Json::parse_file("configs/fashion_mnist_cnn.json");
//   ktf::apply_override(raw, "/0/optimizer/ktf.optimizers.Adam/learning_rate=0.0001");
//   ktf::Json cycles = ktf::resolve_config(raw, ktf::Registry::global());
//
// resolve_config validates every cycle and nested component against the registered specs before
// anything is built, applies inheritance (a key a cycle omits comes from the cycle before) and
// fills defaults. Errors carry the config path: "cycle 2 › model › ktf.models.OneHeadNet ›
// base_model › ktf.networks.MobileNetV2 › alpah: unknown parameter (did you mean 'alpha'?)".
// Cycles are numbered from 1 in messages; JSON Pointers count from 0 as RFC 6901 says.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ktf/json.h"
#include "ktf/registry.h"

namespace ktf {

/// The built-in cycle keys and the kind each holds.
struct CycleKeyInfo {
  const char* name;
  Kind kind;
  bool is_list;
  const char* doc;
};
const std::vector<CycleKeyInfo>& builtin_cycle_keys();

/// Applies "POINTER=JSON" (RFC 6901 pointer; the value is JSON, or a bare string when it does not
/// parse). Missing intermediate objects are created. Throws ktf::Error naming the pointer.
void apply_override(Json& config, const std::string& assignment);

/// Validates one component config {"<name>": {...}} of `kind` and returns it with defaults filled
/// and the name canonicalised (aliases kept as written). `path` prefixes errors.
Json resolve_component(const Json& component, Kind kind, const Registry& registry,
                       const std::vector<std::string>& path);

/// Validates the whole config and returns the list of resolved cycles.
Json resolve_config(const Json& config, const Registry& registry);

/// One difference between two JSON documents, at an RFC 6901 pointer ("/1/optimizer/..."). A
/// value only one side has is missing (std::nullopt) on the other.
struct JsonChange {
  std::string pointer;
  std::optional<Json> before, after;
};
/// Every leaf that differs between `before` and `after` (objects by key, arrays by index), in
/// document order.
std::vector<JsonChange> json_diff(const Json& before, const Json& after);
/// "  /0/loss/...: 1 -> 2" lines (values shortened to `max_value` characters).
std::string format_changes(const std::vector<JsonChange>& changes, size_t max_value = 80);

/// JSON Schema (draft-04) of configs accepted by the loaded components.
Json json_schema(const Registry& registry);

/// Markdown tables of every registered component's parameters (types, defaults, allowed values,
/// docs), as docs/components.md holds them for the in-tree plugins.
std::string markdown_reference(const Registry& registry);

}  // namespace ktf
