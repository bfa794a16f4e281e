#include "ktf/config.h"

#include "ktf/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

namespace ktf {
namespace {

using Path = std::vector<std::string>;
/// The engine's own cycle key (checkpoint settings, not a component).
constexpr const char* kCheckpointKey = "checkpoint";

Path extend(Path p, const std::string& segment) {
  p.push_back(segment);
  return p;
}

std::string suggestion(std::string_view name, const std::vector<std::string>& candidates) {
  auto near = closest_names(name, candidates, 1, true);
  return near.empty() ? "" : " (did you mean '" + near.front() + "'?)";
}

std::string cycle_label(size_t index) { return "cycle " + std::to_string(index + 1); }

Json resolve_value(const Param& p, const Json& v, const Registry& registry, const Path& path);

Json check_list(const Param& p, const Json& v, const Registry& registry, const Path& path,
                ParamType element, const char* element_name) {
  if (!v.is_array())
    throw Error(std::string("expected a list of ") + element_name + ", got " + describe_value(v),
                path);
  Json::Array out;
  Param ep = p;
  ep.type = element;
  ep.nullable = false;
  ep.non_empty = false;
  ep.list_sizes.clear();
  for (size_t i = 0; i < v.size(); ++i)
    out.push_back(
        resolve_value(ep, v.as_array()[i], registry, extend(path, "[" + std::to_string(i) + "]")));
  return Json(std::move(out));
}

Json resolve_typed(const Param& p, const Json& v, const Registry& registry, const Path& path) {
  auto mismatch = [&](const std::string& want) {
    throw Error("expected " + want + ", got " + describe_value(v), path);
  };
  switch (p.type) {
    case ParamType::Bool:
      if (!v.is_bool()) mismatch("a boolean");
      return v;
    case ParamType::Int:
      if (!json_matches(ParamType::Int, v)) mismatch("an integer");
      return Json(v.as_int());
    case ParamType::Float:
      if (!v.is_number()) mismatch("a number");
      if (!std::isfinite(v.as_number())) mismatch("a finite number");
      return Json(v.as_number());
    case ParamType::String:
      if (!v.is_string()) mismatch("a string");
      return v;
    case ParamType::IntList:
      return check_list(p, v, registry, path, ParamType::Int, "integers");
    case ParamType::FloatList:
      return check_list(p, v, registry, path, ParamType::Float, "numbers");
    case ParamType::StringList:
      return check_list(p, v, registry, path, ParamType::String, "strings");
    case ParamType::Component:
      return resolve_component(v, p.component_kind, registry, path);
    case ParamType::ComponentList:
      return check_list(p, v, registry, path, ParamType::Component,
                        (std::string(kind_name(p.component_kind)) + " components").c_str());
    case ParamType::Size2: {
      if (json_matches(ParamType::Int, v)) return Json(v.as_int());
      if (!v.is_array() || v.size() != 2) mismatch("an integer or [h, w]");
      return check_list(p, v, registry, path, ParamType::Int, "integers");
    }
    case ParamType::Object:
      if (!v.is_object()) mismatch("an object");
      return v;
    case ParamType::Union: {
      for (const auto& a : p.alternatives)
        if (json_matches(a.type, v)) return resolve_value(a, v, registry, path);
      std::string want;
      for (size_t i = 0; i < p.alternatives.size(); ++i)
        want += (i ? (i + 1 == p.alternatives.size() ? " or " : ", ") : "") +
                p.alternatives[i].type_name();
      mismatch(want);
      return v;
    }
    case ParamType::Any:
      return v;
  }
  return v;
}

Json resolve_value(const Param& p, const Json& v, const Registry& registry, const Path& path) {
  if (v.is_null() && (p.nullable || p.type == ParamType::Any)) return v;
  Json out = resolve_typed(p, v, registry, path);
  std::string why = p.check(out);
  if (!why.empty()) {
    if (!p.choices.empty() && out.is_string()) why += suggestion(out.as_string(), p.choices);
    throw Error(why, path);
  }
  return out;
}

}  // namespace

const std::vector<CycleKeyInfo>& builtin_cycle_keys() {
  static const std::vector<CycleKeyInfo> keys{
      {"datasets", Kind::Dataset, false, "the train and validation data"},
      {"model", Kind::Network, false, "the network to train; persists across cycles"},
      {"loss", Kind::Loss, false, "the loss to minimise"},
      {"metrics", Kind::Metric, true, "metrics computed on train and validation data"},
      {"optimizer", Kind::Optimizer, false,
       "the optimizer (default: the one a loaded plugin declares)"},
      {"lr_schedule", Kind::LrSchedule, false, "a learning-rate schedule (default none)"},
      {"train_loop", Kind::TrainLoop, false,
       "the train loop (default: the one a loaded plugin declares)"},
  };
  return keys;
}

void apply_override(Json& config, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos)
    throw Error("--set '" + assignment + "': expected POINTER=VALUE, e.g. /0/loss/name/arg=1");
  std::string pointer = assignment.substr(0, eq);
  std::string text = assignment.substr(eq + 1);
  Json value;
  try {
    value = Json::parse(text, "--set " + pointer);
  } catch (const Error&) {
    value = Json(text);  // a bare word is a string
  }
  if (pointer.empty()) {
    config = std::move(value);
    return;
  }
  if (pointer[0] != '/')
    throw Error("--set '" + pointer + "': a JSON Pointer starts with '/' (RFC 6901)");
  std::vector<std::string> tokens;
  size_t pos = 1;
  while (true) {
    size_t next = pointer.find('/', pos);
    std::string token = pointer.substr(pos, next == std::string::npos ? next : next - pos);
    std::string decoded;
    for (size_t i = 0; i < token.size(); ++i) {
      if (token[i] == '~' && i + 1 < token.size() && (token[i + 1] == '0' || token[i + 1] == '1')) {
        decoded += token[i + 1] == '0' ? '~' : '/';
        ++i;
      } else {
        decoded += token[i];
      }
    }
    tokens.push_back(decoded);
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  Json* node = &config;
  std::string walked;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    bool last = i + 1 == tokens.size();
    if (node->is_null()) *node = Json::object();
    if (node->is_array()) {
      auto& arr = node->as_array();
      size_t index = arr.size();
      if (t != "-") {
        if (t.empty() || t.find_first_not_of("0123456789") != std::string::npos)
          throw Error("--set '" + pointer + "': '" + t + "' is not an index into the list at '" +
                      (walked.empty() ? "/" : walked) + "'");
        index = std::stoul(t);
      }
      if (index > arr.size())
        throw Error("--set '" + pointer + "': index " + t + " is past the end of the list at '" +
                    (walked.empty() ? "/" : walked) + "' (" + std::to_string(arr.size()) +
                    " elements)");
      if (index == arr.size()) arr.push_back(last ? value : Json::object());
      node = &arr[index];
    } else if (node->is_object()) {
      if (last) {
        node->set(t, value);
        return;
      }
      node = &(*node)[t];
    } else {
      throw Error("--set '" + pointer + "': '" + (walked.empty() ? "/" : walked) + "' is " +
                  describe_value(*node) + ", not an object or list");
    }
    walked += "/" + t;
    if (last) *node = value;
  }
}

static Json resolve_args(const Spec& spec, const Json& args, const Registry& registry,
                         const Path& here);

/// Checks `args` (an object) against `spec`'s parameters and fills defaults. `here` prefixes
/// errors.
static Json resolve_args(const Spec& spec, const Json& args, const Registry& registry,
                         const Path& here) {
  std::vector<std::string> param_names;
  for (const auto& p : spec.params) param_names.push_back(p.name);
  for (const auto& [key, value] : args.as_object()) {
    if (!spec.find_param(key)) {
      std::string hint = suggestion(key, param_names);
      if (hint.empty() && !param_names.empty()) {
        std::string all;
        for (const auto& n : param_names) all += (all.empty() ? "" : ", ") + n;
        hint = " (parameters: " + all + ")";
      } else if (param_names.empty()) {
        hint = " (it takes no parameters)";
      }
      throw Error("unknown parameter" + hint, extend(here, key));
    }
  }
  Json resolved = Json::object();
  for (const auto& p : spec.params) {
    const Json* given = args.find(p.name);
    if (!given) {
      if (p.required)
        throw Error("missing required parameter '" + p.name + "' (" + p.doc + ")", here);
      // A nested component given as a default is validated and completed like a written one.
      const bool nested = p.type == ParamType::Component || p.type == ParamType::ComponentList;
      resolved.set(p.name, nested && !p.default_value.is_null() && p.default_value.size() > 0
                               ? resolve_value(p, p.default_value, registry, extend(here, p.name))
                               : p.default_value);
      continue;
    }
    resolved.set(p.name, resolve_value(p, *given, registry, extend(here, p.name)));
  }
  return resolved;
}

Json resolve_component(const Json& component, Kind kind, const Registry& registry,
                       const Path& path) {
  std::pair<std::string, Json> parts;
  try {
    parts = split_component(component);
  } catch (const Error& e) {
    throw e.with_prefix(path);
  }
  const auto& [name, args] = parts;
  const ComponentDef* def = registry.find(kind, name);
  if (!def) {
    auto others = registry.find_any(name);
    std::string msg = std::string("unknown ") + kind_name(kind) + " '" + excerpt(name) + "'";
    if (!others.empty()) {
      msg += " ('" + name + "' is a " + kind_name(others.front()->spec.kind) + ")";
    } else {
      auto near = registry.closest(kind, name);
      if (!near.empty()) {
        msg += " (did you mean ";
        for (size_t i = 0; i < near.size(); ++i) msg += (i ? ", '" : "'") + near[i] + "'";
        msg += "?)";
      } else {
        msg += std::string(" (no ") + kind_name(kind) + " is registered: load a plugin)";
      }
    }
    throw Error(msg, path);
  }
  Path here = extend(path, name);
  Json resolved = resolve_args(def->spec, args, registry, here);
  return Json::object({{name, std::move(resolved)}});
}

Json resolve_config(const Json& config, const Registry& registry) {
  Json::Array cycles;
  if (config.is_object()) {
    cycles.push_back(config);
  } else if (config.is_array()) {
    cycles = config.as_array();
  } else {
    throw Error("the config must be a list of train cycles or one cycle object, got " +
                describe_value(config));
  }
  if (cycles.empty()) throw Error("the config has no train cycles");

  struct KeyInfo {
    std::string name;
    Kind kind;
    bool is_list;
  };
  std::vector<KeyInfo> keys;
  for (const auto& k : builtin_cycle_keys()) keys.push_back({k.name, k.kind, k.is_list});
  for (const auto& k : registry.cycle_keys()) keys.push_back({k.name, k.kind, k.is_list});
  std::vector<std::string> key_names{kCheckpointKey};
  for (const auto& k : keys) key_names.push_back(k.name);
  auto kind_of = [&](const std::string& key) {
    return std::find_if(keys.begin(), keys.end(), [&](const KeyInfo& k) { return k.name == key; })
        ->kind;
  };

  Json::Array resolved;
  Json previous = Json::object();
  for (size_t i = 0; i < cycles.size(); ++i) {
    Path cpath{cycle_label(i)};
    const Json& cycle = cycles[i];
    if (!cycle.is_object())
      throw Error("a train cycle must be an object, got " + describe_value(cycle), cpath);
    Json merged = previous;
    for (const auto& [key, value] : cycle.as_object()) {
      auto it = std::find_if(keys.begin(), keys.end(),
                             [&key = key](const KeyInfo& k) { return k.name == key; });
      Path kpath = extend(cpath, key);
      if (key == kCheckpointKey) {
        if (!value.is_null() && !value.is_object())
          throw Error("expected an object of checkpoint settings, got " + describe_value(value),
                      kpath);
        merged.set(key, value.is_null()
                            ? Json()
                            : resolve_args(CheckpointPolicy::spec(), value, registry, kpath));
        continue;
      }
      if (it == keys.end())
        throw Error("unknown cycle key" + suggestion(key, key_names), extend(cpath, key));
      if (value.is_null()) {
        merged.set(key, Json());
        continue;
      }
      if (it->is_list) {
        Json::Array items;
        if (value.is_array()) {
          for (size_t j = 0; j < value.size(); ++j)
            items.push_back(resolve_component(value.as_array()[j], it->kind, registry,
                                              extend(kpath, "[" + std::to_string(j) + "]")));
        } else {
          items.push_back(resolve_component(value, it->kind, registry, kpath));
        }
        merged.set(key, Json(std::move(items)));
      } else {
        merged.set(key, resolve_component(value, it->kind, registry, kpath));
      }
    }
    for (const char* required : {"datasets", "model", "loss"}) {
      const Json* v = merged.find(required);
      if (!v || v->is_null()) {
        const auto& info =
            *std::find_if(builtin_cycle_keys().begin(), builtin_cycle_keys().end(),
                          [&](const CycleKeyInfo& k) { return k.name == std::string(required); });
        throw Error(std::string(v ? "'" + std::string(required) + "' is null: it is required (" +
                                        info.doc + ")"
                                  : "missing '" + std::string(required) + "': " + info.doc +
                                        (i ? " (no earlier cycle gives it either)" : "")),
                    cpath);
      }
    }
    // A key no cycle has given yet, or that this cycle cleared with null, takes the default a
    // plugin declares for it; without one, there are no metrics and no schedule, and a missing
    // optimizer or train loop is an error.
    auto take_default = [&](const std::string& key) {
      const Json* v = merged.find(key);
      if (v && !v->is_null()) return true;
      const CycleDefault* d = registry.find_cycle_default(key);
      if (!d) return false;
      merged.set(key, resolve_component(d->component, kind_of(key), registry, extend(cpath, key)));
      return true;
    };
    for (const std::string key : {"optimizer", "train_loop"}) {
      if (take_default(key)) continue;
      std::string kinds = kind_name(kind_of(key));
      std::replace(kinds.begin(), kinds.end(), '_', ' ');
      throw Error("no '" + key + "' given, and no loaded plugin declares a default for it (load " +
                      "the plugin that provides " + kinds + "s, or give one)",
                  cpath);
    }
    if (!take_default("metrics")) merged.set("metrics", Json::array());
    if (!take_default("lr_schedule")) merged.set("lr_schedule", Json());
    if (const Json* c = merged.find(kCheckpointKey); !c || c->is_null())
      merged.set(kCheckpointKey,
                 resolve_args(CheckpointPolicy::spec(), Json::object(), registry, cpath));
    // Order keys as documented, plugin keys last.
    Json ordered = Json::object();
    for (const auto& k : keys)
      if (const Json* v = merged.find(k.name)) ordered.set(k.name, *v);
    ordered.set(kCheckpointKey, *merged.find(kCheckpointKey));
    resolved.push_back(ordered);
    previous = ordered;
  }
  return Json(std::move(resolved));
}

namespace {

/// Adds the declared bounds (numbers) or choices (strings) of `p` to the schema `s` of one JSON
/// type (draft-04 keywords). A variant's alternatives carry all of its constraints: each schema
/// gets those that apply to its type.
void add_constraints(const Param& p, const std::string& type, Json& s) {
  if (type == "string") {
    if (!p.choices.empty()) {
      Json::Array e;
      for (const auto& c : p.choices) e.push_back(c);
      s.set("enum", Json(std::move(e)));
    }
    return;
  }
  if (type != "integer" && type != "number") return;
  if (p.minimum) {
    s.set("minimum", *p.minimum);
    if (p.exclusive_minimum) s.set("exclusiveMinimum", true);
  }
  if (p.maximum) {
    s.set("maximum", *p.maximum);
    if (p.exclusive_maximum) s.set("exclusiveMaximum", true);
  }
}

Json type_schema(const Param& p) {
  auto item = [&](const char* type) {
    Json i = Json::object({{"type", type}});
    add_constraints(p, type, i);
    return i;
  };
  auto list_of = [&](Json items) {
    Json s = Json::object({{"type", "array"}, {"items", std::move(items)}});
    if (p.non_empty) s.set("minItems", 1);
    if (p.list_sizes.size() == 1) {
      s.set("minItems", p.list_sizes[0]);
      s.set("maxItems", p.list_sizes[0]);
    } else if (!p.list_sizes.empty()) {
      s.set("maxItems", *std::max_element(p.list_sizes.begin(), p.list_sizes.end()));
    }
    return s;
  };
  auto ref = [&] {
    return Json::object({{"$ref", std::string("#/definitions/") + kind_name(p.component_kind)}});
  };
  switch (p.type) {
    case ParamType::Bool:
      return Json::object({{"type", "boolean"}});
    case ParamType::Int:
      return item("integer");
    case ParamType::Float:
      return item("number");
    case ParamType::String: {
      Json s = item("string");
      if (p.non_empty) s.set("minLength", 1);
      return s;
    }
    case ParamType::IntList:
      return list_of(item("integer"));
    case ParamType::FloatList:
      return list_of(item("number"));
    case ParamType::StringList:
      return list_of(item("string"));
    case ParamType::Component:
      return ref();
    case ParamType::ComponentList:
      return list_of(ref());
    case ParamType::Size2: {
      Json pair = Json::object({{"type", "array"}, {"items", item("integer")}});
      pair.set("minItems", 2);
      pair.set("maxItems", 2);
      return Json::object({{"oneOf", Json::array({item("integer"), pair})}});
    }
    case ParamType::Object:
      return Json::object({{"type", "object"}});
    case ParamType::Union: {
      Json::Array options;
      for (const auto& a : p.alternatives) options.push_back(type_schema(a));
      return Json::object({{"oneOf", Json(std::move(options))}});
    }
    case ParamType::Any:
      return Json::object();
  }
  return Json::object();
}

Json param_schema(const Param& p) {
  Json s = type_schema(p);
  if (p.nullable) s = Json::object({{"oneOf", Json::array({s, Json::object({{"type", "null"}})})}});
  s.set("description", p.doc);
  if (!p.required && !p.default_value.is_null()) s.set("default", p.default_value);
  return s;
}

}  // namespace

Json json_schema(const Registry& registry) {
  Json definitions = Json::object();
  for (Kind kind : kAllKinds) {
    Json properties = Json::object();
    for (const ComponentDef* def : registry.list(kind)) {
      const Spec& spec = def->spec;
      Json params = Json::object();
      Json::Array required;
      for (const auto& p : spec.params) {
        params.set(p.name, param_schema(p));
        if (p.required) required.push_back(p.name);
      }
      Json args = Json::object({{"type", Json::array({"object", "null"})},
                                {"description", spec.summary},
                                {"properties", params},
                                {"additionalProperties", false}});
      if (!required.empty()) args.set("required", Json(std::move(required)));
      properties.set(spec.name, args);
      for (const auto& a : spec.aliases) properties.set(a, args);
    }
    definitions.set(kind_name(kind),
                    Json::object({{"type", "object"},
                                  {"description", std::string("one ") + kind_name(kind) +
                                                      " component: {\"<name>\": {<arguments>}}"},
                                  {"minProperties", 1},
                                  {"maxProperties", 1},
                                  {"properties", properties},
                                  {"additionalProperties", false}}));
  }
  Json cycle_props = Json::object();
  auto key_schema = [](Kind kind, bool is_list, const std::string& doc) {
    Json ref = Json::object({{"$ref", std::string("#/definitions/") + kind_name(kind)}});
    Json s = is_list
                 ? Json::object(
                       {{"oneOf", Json::array({Json::object({{"type", "array"}, {"items", ref}}),
                                               ref, Json::object({{"type", "null"}})})}})
                 : Json::object({{"oneOf", Json::array({ref, Json::object({{"type", "null"}})})}});
    s.set("description", doc);
    return s;
  };
  for (const auto& k : builtin_cycle_keys())
    cycle_props.set(k.name, key_schema(k.kind, k.is_list, k.doc));
  for (const auto& k : registry.cycle_keys())
    cycle_props.set(k.name, key_schema(k.kind, k.is_list, k.doc));
  {
    Json props = Json::object();
    for (const auto& p : CheckpointPolicy::spec().params) props.set(p.name, param_schema(p));
    cycle_props.set(kCheckpointKey, Json::object({{"description", CheckpointPolicy::spec().summary},
                                                  {"type", Json::array({"object", "null"})},
                                                  {"properties", props},
                                                  {"additionalProperties", false}}));
  }
  definitions.set("cycle", Json::object({{"type", "object"},
                                         {"description", "one train cycle"},
                                         {"properties", cycle_props},
                                         {"additionalProperties", false}}));
  Json cycle_ref = Json::object({{"$ref", "#/definitions/cycle"}});
  return Json::object(
      {{"$schema", "http://json-schema.org/draft-04/schema#"},
       {"title", "ktf config"},
       {"description", "A list of train cycles, or one cycle."},
       {"oneOf",
        Json::array(
            {cycle_ref, Json::object({{"type", "array"}, {"minItems", 1}, {"items", cycle_ref}})})},
       {"definitions", definitions}});
}

namespace {
/// `text` with each character that `table` maps replaced by its replacement.
std::string replace_chars(const std::string& text,
                          std::initializer_list<std::pair<char, const char*>> table) {
  std::string out;
  for (char c : text) {
    auto it = std::find_if(table.begin(), table.end(), [&](const auto& e) { return e.first == c; });
    if (it == table.end())
      out += c;
    else
      out += it->second;
  }
  return out;
}
std::string md_cell(const std::string& text) {
  return replace_chars(text, {{'|', "\\|"}, {'\n', " "}});
}
}  // namespace

std::string markdown_reference(const Registry& registry) {
  std::ostringstream out;
  out << "# Component reference\n\n"
      << "Generated from the components' specs by `ktf-host --plugins build/plugins --reference`"
      << " (a test checks that this file is up to date). Every parameter's allowed values are"
      << " checked for every cycle before anything is built.\n";
  if (!registry.cycle_defaults().empty()) {
    out << "\nDefaults of omitted cycle keys:";
    const char* sep = " ";
    for (const auto& d : registry.cycle_defaults()) {
      out << sep << "`" << d.key << "` is `" << d.component.dump() << "` (" << d.plugin << ")";
      sep = "; ";
    }
    out << ".\n";
  }
  auto table = [&](const std::vector<Param>& params) {
    out << "\n| parameter | type | default | allowed | description |\n"
        << "|---|---|---|---|---|\n";
    for (const auto& p : params) {
      std::string def_text = p.required ? "required" : "`" + p.default_value.dump() + "`";
      out << "| `" << p.name << "` | " << md_cell(p.type_name()) << " | " << md_cell(def_text)
          << " | " << md_cell(p.constraint_text()) << " | " << md_cell(p.doc) << " |\n";
    }
  };
  out << "\n## The `checkpoint` cycle key\n\n"
      << CheckpointPolicy::spec().summary
      << " (an object; omitted keys take these defaults; see docs/reliability.md).\n";
  table(CheckpointPolicy::spec().params);
  for (Kind kind : kAllKinds) {
    auto defs = registry.list(kind);
    if (defs.empty()) continue;
    out << "\n## " << kind_name(kind) << "\n";
    for (const ComponentDef* def : defs) {
      const Spec& spec = def->spec;
      out << "\n### `" << spec.name << "`\n\n" << spec.summary << ".";
      if (!spec.aliases.empty()) {
        out << " Also";
        for (size_t i = 0; i < spec.aliases.size(); ++i)
          out << (i ? ", `" : " `") << spec.aliases[i] << "`";
        out << ".";
      }
      if (!spec.plugin.empty()) out << " Plugin `" << spec.plugin << "`.";
      out << "\n";
      if (spec.params.empty()) {
        out << "\nNo parameters.\n";
        continue;
      }
      table(spec.params);
    }
  }
  return out.str();
}

namespace {

void diff_into(const std::string& at, const Json& a, const Json& b, std::vector<JsonChange>& out) {
  if (a.is_object() && b.is_object()) {
    for (const auto& [key, value] : a.as_object()) {
      const Json* other = b.find(key);
      if (!other)
        out.push_back({at + "/" + json_pointer_token(key), value, std::nullopt});
      else
        diff_into(at + "/" + json_pointer_token(key), value, *other, out);
    }
    for (const auto& [key, value] : b.as_object())
      if (!a.find(key)) out.push_back({at + "/" + json_pointer_token(key), std::nullopt, value});
    return;
  }
  if (a.is_array() && b.is_array()) {
    const auto& x = a.as_array();
    const auto& y = b.as_array();
    for (size_t i = 0; i < std::max(x.size(), y.size()); ++i) {
      const std::string here = at + "/" + std::to_string(i);
      if (i >= y.size())
        out.push_back({here, x[i], std::nullopt});
      else if (i >= x.size())
        out.push_back({here, std::nullopt, y[i]});
      else
        diff_into(here, x[i], y[i], out);
    }
    return;
  }
  // Numbers compare by value (1 and 1.0 are the same setting).
  if (a.is_number() && b.is_number() && a.as_number() == b.as_number()) return;
  if (a != b) out.push_back({at, a, b});
}

std::string shortened(const std::optional<Json>& v, size_t max) {
  if (!v) return "(absent)";
  std::string text = v->dump();
  if (text.size() > max) text = text.substr(0, max) + "...";
  return text;
}

}  // namespace

std::vector<JsonChange> json_diff(const Json& before, const Json& after) {
  std::vector<JsonChange> out;
  diff_into("", before, after, out);
  return out;
}

std::string format_changes(const std::vector<JsonChange>& changes, size_t max_value) {
  std::string out;
  for (const auto& c : changes)
    out += "  " + (c.pointer.empty() ? std::string("(the whole document)") : c.pointer) + ": " +
           shortened(c.before, max_value) + " -> " + shortened(c.after, max_value) + "\n";
  return out;
}

}  // namespace ktf
