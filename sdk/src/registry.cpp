#include "ktf/registry.h"

#include "guarded.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace ktf {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string_view last_segment(std::string_view s) {
  auto dot = s.rfind('.');
  return dot == std::string_view::npos ? s : s.substr(dot + 1);
}

std::vector<std::string> all_names(const ComponentDef& def) {
  std::vector<std::string> names{def.spec.name};
  names.insert(names.end(), def.spec.aliases.begin(), def.spec.aliases.end());
  return names;
}

}  // namespace

std::vector<std::string> closest_names(std::string_view name,
                                       const std::vector<std::string>& candidates, size_t n,
                                       bool only_close) {
  // A name this long is no typo of a registered one, and its edit distances would take minutes:
  // nothing is close, and the names listed are the first ones.
  const bool huge = name.size() > 256;
  if (huge && only_close) return {};
  std::string lname = huge ? std::string() : lower(name);
  std::vector<std::pair<size_t, std::string>> scored;
  for (const auto& c : candidates) {
    std::string lc = lower(c);
    size_t d = huge ? 0 : edit_distance(lname, lc);
    size_t d_last = huge ? 0 : edit_distance(last_segment(lname), last_segment(lc));
    size_t score = std::min(d, d_last + 1);
    if (only_close && score > std::max<size_t>(2, name.size() / 3)) continue;
    scored.emplace_back(score, c);
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (auto& [score, c] : scored) {
    if (out.size() == n) break;
    if (seen.insert(c).second) out.push_back(c);
  }
  return out;
}

std::pair<std::string, Json> split_component(const Json& j) {
  if (!j.is_object() || j.size() != 1) {
    throw Error("expected a component {\"<name>\": {<arguments>}}, got " + describe_value(j));
  }
  const auto& [name, args] = j.as_object().front();
  if (!args.is_object() && !args.is_null()) {
    throw Error("arguments of '" + name + "' must be an object, got " + describe_value(args),
                {name});
  }
  return {name, args.is_null() ? Json::object() : args};
}

std::shared_ptr<void> BuildContext::build_any(Kind kind, const std::string& name, const Json& args,
                                              const std::vector<std::string>& path) {
  const ComponentDef* def = registry_->find(kind, name);
  if (!def) {
    auto near = registry_->closest(kind, name);
    std::string msg = std::string("unknown ") + kind_name(kind) + " '" + excerpt(name) + "'";
    if (!near.empty()) {
      msg += " (did you mean ";
      for (size_t i = 0; i < near.size(); ++i) msg += (i ? ", '" : "'") + near[i] + "'";
      msg += "?)";
    }
    throw Error(msg, std::vector<std::string>(path.begin(), path.end() - (path.empty() ? 0 : 1)));
  }
  std::vector<std::string> saved = std::move(this->path);
  this->path = path;
  try {
    auto made = detail::guard_component(kind, def->make(args, *this), path);
    this->path = std::move(saved);
    return made;
  } catch (const Error& e) {
    this->path = saved;
    if (!e.path().empty()) throw;
    throw e.with_prefix(path);
  } catch (const c10::Error& e) {
    this->path = saved;
    throw Error(e.what_without_backtrace(), path);
  } catch (const std::exception& e) {
    this->path = saved;
    throw Error(e.what(), path);
  }
}

void Registrar::add(ComponentDef def) {
  const Spec& s = def.spec;
  if (s.name.empty()) throw Error("a component has an empty config name");
  if (s.summary.empty())
    throw Error(std::string(kind_name(s.kind)) + " '" + s.name + "' has no summary");
  if (!def.make) throw Error(std::string(kind_name(s.kind)) + " '" + s.name + "' has no factory");
  std::set<std::string> params;
  for (const auto& p : s.params) {
    if (p.doc.empty())
      throw Error(std::string(kind_name(s.kind)) + " '" + s.name + "': parameter '" + p.name +
                  "' has no doc");
    if (!params.insert(p.name).second)
      throw Error(std::string(kind_name(s.kind)) + " '" + s.name + "': parameter '" + p.name +
                  "' declared twice");
    const std::string why = p.required ? "" : p.check(p.default_value);
    if (!why.empty())
      throw Error(std::string(kind_name(s.kind)) + " '" + s.name + "': the default of parameter '" +
                  p.name + "' (" + p.default_value.dump() + ") breaks its declared values: " + why);
  }
  for (const auto& existing : components_) {
    if (existing.spec.kind != s.kind) continue;
    for (const auto& a : all_names(existing))
      for (const auto& b : all_names(def))
        if (a == b)
          throw Error(std::string(kind_name(s.kind)) + " '" + b +
                      "' is registered twice by the same plugin");
  }
  components_.push_back(std::move(def));
}

void Registrar::add_cycle_default(std::string key, Json component) {
  if (key.empty()) throw Error("a cycle default needs a key");
  auto [name, args] = split_component(component);
  bool known = false;
  for (const auto& def : components_)
    for (const auto& n : all_names(def)) known |= n == name;
  if (!known)
    throw Error("the default for cycle key '" + key + "' names '" + name +
                "', which this plugin does not register (register it first)");
  for (const auto& [k, v] : defaults_)
    if (k == key) throw Error("cycle key '" + key + "' is given a default twice");
  defaults_.emplace_back(std::move(key), Json::object({{name, args}}));
}

void Registrar::add_cycle_key(CycleKey key) {
  if (key.name.empty() || key.doc.empty()) throw Error("a cycle key needs a name and a doc");
  cycle_keys_.push_back(std::move(key));
}

Registry& Registry::global() {
  static Registry* registry = new Registry();  // never destroyed: plugins are never unloaded
  return *registry;
}

void Registry::commit(const Registrar& staged, const std::string& plugin, const std::string& path) {
  for (const auto& def : staged.components()) {
    for (const auto& n : all_names(def)) {
      auto it = by_name_.find({def.spec.kind, n});
      if (it != by_name_.end()) {
        const Spec& other = it->second->spec;
        std::string by =
            other.plugin.empty() ? "the host program" : "plugin '" + other.plugin + "'";
        if (!other.plugin_path.empty()) by += " (" + other.plugin_path + ")";
        throw DuplicateError(
            std::string(kind_name(def.spec.kind)) + " '" + n + "' is already registered by " + by,
            {}, kExitPlugin);
      }
    }
  }
  for (const auto& key : staged.cycle_keys()) {
    if (find_cycle_key(key.name))
      throw DuplicateError("cycle key '" + key.name + "' is already declared", {}, kExitPlugin);
  }
  for (const auto& [key, component] : staged.cycle_defaults()) {
    if (const CycleDefault* other = find_cycle_default(key))
      throw DuplicateError("cycle key '" + key + "' already has a default, declared by plugin '" +
                               other->plugin + "'",
                           {}, kExitPlugin);
  }
  for (const auto& [key, component] : staged.cycle_defaults())
    defaults_.push_back({key, component, plugin});
  for (const auto& def : staged.components()) {
    auto owned = std::make_unique<ComponentDef>(def);
    owned->spec.plugin = plugin;
    owned->spec.plugin_path = path;
    for (const auto& n : all_names(*owned)) by_name_[{owned->spec.kind, n}] = owned.get();
    defs_.push_back(std::move(owned));
  }
  for (auto key : staged.cycle_keys()) {
    key.plugin = plugin;
    cycle_keys_.push_back(std::move(key));
  }
}

const ComponentDef* Registry::find(Kind kind, std::string_view name) const {
  auto it = by_name_.find({kind, std::string(name)});
  return it == by_name_.end() ? nullptr : it->second;
}

std::vector<const ComponentDef*> Registry::find_any(std::string_view name) const {
  std::vector<const ComponentDef*> out;
  for (Kind k : kAllKinds)
    if (auto* d = find(k, name)) out.push_back(d);
  return out;
}

std::vector<const ComponentDef*> Registry::list(std::optional<Kind> kind) const {
  std::vector<const ComponentDef*> out;
  for (const auto& d : defs_)
    if (!kind || d->spec.kind == *kind) out.push_back(d.get());
  std::sort(out.begin(), out.end(), [](const ComponentDef* a, const ComponentDef* b) {
    return std::make_pair(a->spec.kind, a->spec.name) < std::make_pair(b->spec.kind, b->spec.name);
  });
  return out;
}

std::vector<std::string> Registry::closest(Kind kind, std::string_view name, size_t n) const {
  std::vector<std::string> names;
  for (const auto& [key, def] : by_name_)
    if (key.first == kind) names.push_back(key.second);
  return closest_names(name, names, n);
}

const CycleKey* Registry::find_cycle_key(std::string_view name) const {
  for (const auto& k : cycle_keys_)
    if (k.name == name) return &k;
  return nullptr;
}

const CycleDefault* Registry::find_cycle_default(std::string_view key) const {
  for (const auto& d : defaults_)
    if (d.key == key) return &d;
  return nullptr;
}

void register_component(ComponentDef def, Registry& registry) {
  Registrar staged;
  staged.add(std::move(def));
  registry.commit(staged, "", "");
}

}  // namespace ktf
