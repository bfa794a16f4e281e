// ktf/registry.h — defining, registering and building components.
//
// A component's arguments are one options struct; ktf::define binds each field to a config
// parameter with its one-line doc, and the spec (types, defaults, docs) is derived from the struct
// itself. Each component's .cpp ends with its registration:
//
//   struct MLPOptions {
//     int64_t num_outputs = 10;              ///< number of outputs
//     std::vector<int64_t> hidden{256, 128};  ///< units of each hidden layer
//   };
//   ...
//   void register_mlp(ktf::Registrar& r) {
//     r.add(ktf::define<ktf::Network, MLPOptions>("ktf.networks.MLP", "Multi-layer perceptron")
//               .required("num_outputs", &MLPOptions::num_outputs, "number of outputs").min(1)
//               .arg("hidden", &MLPOptions::hidden, "units of each hidden layer").min(1)
//               .example(ktf::Json::object({{"num_outputs", 10}}), {1, 28, 28})
//               .build([](const MLPOptions& o, ktf::BuildContext& ctx) {
//                 return std::make_shared<MLPImpl>(o, ctx.input_shape);
//               }));
//   }
//
// A nested component is a field of type ktf::Ref<Base> (or std::vector<ktf::Ref<Base>>); the
// factory builds it with ctx.build(options.base_model). Field types and the config values they
// take: bool, integers, floating point, std::string, std::vector of those, std::optional<T>
// (null allowed), ktf::Size2 (an integer or [h, w]), ktf::JsonObject (an object the component
// reads itself), std::variant<A, B...> (the first alternative whose JSON type matches).
//
// Allowed values follow the parameter they constrain and are checked for every cycle before
// anything is built: .min(x) / .max(x) (inclusive), .above(x) / .below(x) (exclusive),
// .choices({...}) for strings, .non_empty() and .sizes({0, 2}) for lists. Bounds apply to each
// element of a list or pair, and to the numeric alternatives of a variant.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "ktf/components.h"
#include "ktf/error.h"
#include "ktf/json.h"
#include "ktf/spec.h"

namespace ktf {

class Registry;

/// A nested component as written in the config: {"<name>": {<args>}}. Empty when null/omitted.
template <class Base>
struct Ref {
  std::string name;
  Json args = Json::object();
  std::vector<std::string> path;  ///< config path of this argument, for errors while building
  bool empty() const { return name.empty(); }
  /// A default for an options field: `Ref<Network> head = Ref<Network>::to("ktf.networks.MLP",
  /// Json::object({{"num_outputs", 10}}));`
  static Ref to(std::string component, Json arguments = Json::object()) {
    return Ref{std::move(component), std::move(arguments), {}};
  }
};

/// Everything a factory may need besides its own arguments.
class BuildContext {
 public:
  explicit BuildContext(const Registry& registry) : registry_(&registry) {}

  torch::Device device = torch::kCPU;
  uint64_t seed = 0;
  std::vector<int64_t> input_shape;       ///< one example's input shape, from the cycle's dataset
  int64_t num_classes = -1;               ///< from the cycle's dataset, -1 when unknown
  std::vector<torch::Tensor> parameters;  ///< for optimizers: the model's parameters
  std::shared_ptr<Optimizer> optimizer;   ///< for lr schedules: the cycle's optimizer
  int64_t steps_per_epoch = -1;   ///< for lr schedules: batches per training epoch, -1 unknown
  std::filesystem::path run_dir;  ///< where a run writes its outputs
  std::vector<std::string> path;  ///< config path of the component being built

  template <class Base>
  std::shared_ptr<Base> build(const Ref<Base>& ref) {
    return std::static_pointer_cast<Base>(
        build_any(KindOf<Base>::value, ref.name, ref.args, ref.path));
  }
  /// Builds a component by kind, config name (or alias) and arguments. Errors get `path` prefixed.
  std::shared_ptr<void> build_any(Kind kind, const std::string& name, const Json& args,
                                  const std::vector<std::string>& path);
  const Registry& registry() const { return *registry_; }

 private:
  const Registry* registry_;
};

/// A registered component: its spec and a factory producing a shared_ptr to the kind's interface
/// (type-erased to void; BuildContext::build casts it back).
struct ComponentDef {
  Spec spec;
  std::function<std::shared_ptr<void>(const Json& args, BuildContext& ctx)> make;
};

/// An argument given as an integer (both sides) or as [h, w]: kernel sizes, strides, padding.
struct Size2 {
  int64_t h = 0, w = 0;
  Size2() = default;
  Size2(int64_t both) : h(both), w(both) {}
  Size2(int64_t height, int64_t width) : h(height), w(width) {}
  bool operator==(const Size2& o) const { return h == o.h && w == o.w; }
  bool operator!=(const Size2& o) const { return !(*this == o); }
};

/// A JSON object the component interprets itself (e.g. a TFRecord feature spec).
struct JsonObject {
  Json value = Json::object();
};

// ---- argument traits: how an options field maps to a config parameter --------------------------

template <class T, class Enable = void>
struct ArgTraits;  // unsupported field type: add a specialisation or use ktf::Json

template <>
struct ArgTraits<bool> {
  static constexpr ParamType type = ParamType::Bool;
  static Json to_json(bool v) { return Json(v); }
  static bool from_json(const Json& j, const std::vector<std::string>&) { return j.as_bool(); }
};
template <class T>
struct ArgTraits<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
  static constexpr ParamType type = ParamType::Int;
  static Json to_json(T v) { return Json(static_cast<int64_t>(v)); }
  static T from_json(const Json& j, const std::vector<std::string>&) {
    return static_cast<T>(j.as_int());
  }
};
template <class T>
struct ArgTraits<T, std::enable_if_t<std::is_floating_point_v<T>>> {
  static constexpr ParamType type = ParamType::Float;
  static Json to_json(T v) { return Json(static_cast<double>(v)); }
  static T from_json(const Json& j, const std::vector<std::string>&) {
    return static_cast<T>(j.as_number());
  }
};
template <>
struct ArgTraits<std::string> {
  static constexpr ParamType type = ParamType::String;
  static Json to_json(const std::string& v) { return Json(v); }
  static std::string from_json(const Json& j, const std::vector<std::string>&) {
    return j.as_string();
  }
};
template <>
struct ArgTraits<Json> {
  static constexpr ParamType type = ParamType::Any;
  static Json to_json(const Json& v) { return v; }
  static Json from_json(const Json& j, const std::vector<std::string>&) { return j; }
};
template <>
struct ArgTraits<Size2> {
  static constexpr ParamType type = ParamType::Size2;
  static Json to_json(const Size2& v) {
    if (v.h == v.w) return Json(v.h);
    return Json::array({Json(v.h), Json(v.w)});
  }
  static Size2 from_json(const Json& j, const std::vector<std::string>&) {
    if (!j.is_array()) return Size2(j.as_int());
    const auto& a = j.as_array();
    if (a.size() != 2) throw Error("expected an integer or [h, w], got " + describe_value(j));
    return Size2(a[0].as_int(), a[1].as_int());
  }
};
template <>
struct ArgTraits<JsonObject> {
  static constexpr ParamType type = ParamType::Object;
  static Json to_json(const JsonObject& v) { return v.value; }
  static JsonObject from_json(const Json& j, const std::vector<std::string>&) {
    if (!j.is_object()) throw Error("expected an object, got " + describe_value(j));
    return JsonObject{j};
  }
};
template <class T>
struct ArgTraits<std::vector<T>, std::enable_if_t<!std::is_same_v<T, bool>>> {
  static constexpr ParamType type =
      ArgTraits<T>::type == ParamType::Int         ? ParamType::IntList
      : ArgTraits<T>::type == ParamType::Float     ? ParamType::FloatList
      : ArgTraits<T>::type == ParamType::String    ? ParamType::StringList
      : ArgTraits<T>::type == ParamType::Component ? ParamType::ComponentList
                                                   : ParamType::Any;
  static Json to_json(const std::vector<T>& v) {
    Json::Array a;
    for (const auto& x : v) a.push_back(ArgTraits<T>::to_json(x));
    return Json(std::move(a));
  }
  static std::vector<T> from_json(const Json& j, const std::vector<std::string>& path) {
    std::vector<T> out;
    size_t i = 0;
    for (const auto& x : j.as_array()) {
      auto p = path;
      p.push_back("[" + std::to_string(i++) + "]");
      out.push_back(ArgTraits<T>::from_json(x, p));
    }
    return out;
  }
};
namespace detail {
/// The alternatives of a std::variant field's type (empty for other types).
template <class T, class = void>
struct AlternativesOf {
  static std::vector<Param> get() { return {}; }
};
template <class T>
struct AlternativesOf<T, std::void_t<decltype(ArgTraits<T>::alternatives())>> {
  static std::vector<Param> get() { return ArgTraits<T>::alternatives(); }
};
}  // namespace detail
template <class T>
struct ArgTraits<std::optional<T>> {
  static constexpr ParamType type = ArgTraits<T>::type;
  static constexpr bool nullable = true;
  static std::vector<Param> alternatives() { return detail::AlternativesOf<T>::get(); }
  static Json to_json(const std::optional<T>& v) { return v ? ArgTraits<T>::to_json(*v) : Json(); }
  static std::optional<T> from_json(const Json& j, const std::vector<std::string>& path) {
    if (j.is_null()) return std::nullopt;
    return ArgTraits<T>::from_json(j, path);
  }
};
namespace detail {
template <class T>
Param alternative_param();
}  // namespace detail
template <class... Ts>
struct ArgTraits<std::variant<Ts...>> {
  static constexpr ParamType type = ParamType::Union;
  static std::vector<Param> alternatives() { return {detail::alternative_param<Ts>()...}; }
  static Json to_json(const std::variant<Ts...>& v) {
    return std::visit(
        [](const auto& x) { return ArgTraits<std::decay_t<decltype(x)>>::to_json(x); }, v);
  }
  static std::variant<Ts...> from_json(const Json& j, const std::vector<std::string>& path) {
    std::optional<std::variant<Ts...>> out;
    (try_one<Ts>(j, path, out) || ...);
    if (!out) throw Error("expected " + union_name() + ", got " + describe_value(j));
    return *out;
  }

 private:
  template <class T>
  static bool try_one(const Json& j, const std::vector<std::string>& path,
                      std::optional<std::variant<Ts...>>& out) {
    if (!json_matches(ArgTraits<T>::type, j)) return false;
    out = ArgTraits<T>::from_json(j, path);
    return true;
  }
  static std::string union_name() {
    std::string n;
    for (const auto& p : alternatives()) n += (n.empty() ? "" : " or ") + p.type_name();
    return n;
  }
};
/// Reads a {"<name>": {<args>}} component config into a Ref (throws ktf::Error on bad shape).
std::pair<std::string, Json> split_component(const Json& j);
template <class Base>
struct ArgTraits<Ref<Base>> {
  static constexpr ParamType type = ParamType::Component;
  static constexpr Kind kind = KindOf<Base>::value;
  static Json to_json(const Ref<Base>& r) {
    if (r.empty()) return Json();
    return Json::object({{r.name, r.args}});
  }
  static Ref<Base> from_json(const Json& j, const std::vector<std::string>& path) {
    Ref<Base> r;
    r.path = path;
    if (j.is_null()) return r;
    auto [name, args] = split_component(j);
    r.name = std::move(name);
    r.args = std::move(args);
    r.path.push_back(r.name);
    return r;
  }
};

namespace detail {
template <class T, class = void>
struct IsNullable : std::false_type {};
template <class T>
struct IsNullable<T, std::void_t<decltype(ArgTraits<T>::nullable)>> : std::true_type {};
template <class T, class = void>
struct ComponentKindOf {
  static constexpr Kind value = Kind::Network;
};
template <class T>
struct ComponentKindOf<T, std::void_t<decltype(ArgTraits<T>::kind)>> {
  static constexpr Kind value = ArgTraits<T>::kind;
};
template <class T>
struct ComponentKindOf<std::vector<T>, std::void_t<decltype(ArgTraits<T>::kind)>> {
  static constexpr Kind value = ArgTraits<T>::kind;
};
template <class T>
struct ComponentKindOf<std::optional<T>, std::void_t<decltype(ArgTraits<T>::kind)>> {
  static constexpr Kind value = ArgTraits<T>::kind;
};
template <class T>
Param alternative_param() {
  Param p;
  p.type = ArgTraits<T>::type;
  p.component_kind = ComponentKindOf<T>::value;
  p.alternatives = AlternativesOf<T>::get();
  return p;
}
}  // namespace detail

/// For components that take no arguments.
struct NoOptions {};

/// Builder of a ComponentDef from an options struct. See the top of this file.
template <class Base, class Options>
class Definition {
 public:
  Definition(std::string name, std::string summary) {
    spec_.kind = KindOf<Base>::value;
    spec_.name = std::move(name);
    spec_.summary = std::move(summary);
  }

  /// Another config name for the same component (e.g. "tf.keras.optimizers.Adam").
  Definition& alias(std::string name) {
    spec_.aliases.push_back(std::move(name));
    return *this;
  }

  /// An optional parameter; its default is the field's value in a default-constructed Options.
  template <class T>
  Definition& arg(std::string name, T Options::*field, std::string doc,
                  std::vector<std::string> choices = {}) {
    return add<T>(std::move(name), field, std::move(doc), false, std::move(choices));
  }
  /// A parameter the config must give.
  template <class T>
  Definition& required(std::string name, T Options::*field, std::string doc) {
    return add<T>(std::move(name), field, std::move(doc), true, {});
  }
  // Allowed values of the parameter declared last (see the top of this file).
  Definition& min(double v) { return bound(true, v, false); }
  Definition& above(double v) { return bound(true, v, true); }
  Definition& max(double v) { return bound(false, v, false); }
  Definition& below(double v) { return bound(false, v, true); }
  Definition& choices(std::vector<std::string> allowed) {
    require(textual, "choices");
    last().choices = std::move(allowed);
    propagate();
    return *this;
  }
  Definition& non_empty() {
    require(sized, "non_empty()");
    last().non_empty = true;
    propagate();
    return *this;
  }
  Definition& sizes(std::vector<int64_t> allowed) {
    require(listy, "sizes()");
    last().list_sizes = std::move(allowed);
    propagate();
    return *this;
  }

  /// Arguments that build a working instance, and (networks) one example's input shape.
  Definition& example(Json args, std::vector<int64_t> input_shape = {}) {
    spec_.example = std::move(args);
    spec_.example_input = std::move(input_shape);
    return *this;
  }
  /// Per-example target shape for losses and metrics ({} means a class index).
  Definition& example_target(std::vector<int64_t> shape) {
    spec_.example_target = std::move(shape);
    return *this;
  }

  /// Finishes the definition. `factory(const Options&, BuildContext&)` returns a shared_ptr to a
  /// class implementing Base.
  template <class F>
  ComponentDef build(F factory) const {
    auto setters = setters_;
    ComponentDef def;
    def.spec = spec_;
    def.make = [setters, factory](const Json& args, BuildContext& ctx) -> std::shared_ptr<void> {
      Options options{};
      for (const auto& [name, set] : setters) {
        if (const Json* v = args.find(name)) {
          auto path = ctx.path;
          path.push_back(name);
          try {
            set(options, *v, path);
          } catch (const Error& e) {
            throw e.path().empty() ? e.with_prefix(path) : e;
          }
        }
      }
      std::shared_ptr<Base> made = factory(static_cast<const Options&>(options), ctx);
      return std::static_pointer_cast<void>(made);
    };
    return def;
  }

 private:
  template <class T>
  Definition& add(std::string name, T Options::*field, std::string doc, bool required,
                  std::vector<std::string> choices) {
    Param p;
    p.name = name;
    p.type = ArgTraits<T>::type;
    p.component_kind = detail::ComponentKindOf<T>::value;
    p.required = required;
    p.nullable = detail::IsNullable<T>::value;
    p.doc = std::move(doc);
    p.choices = std::move(choices);
    p.alternatives = detail::AlternativesOf<T>::get();
    for (auto& a : p.alternatives) a.choices = p.choices;
    if (!required) p.default_value = ArgTraits<T>::to_json(Options{}.*field);
    spec_.params.push_back(std::move(p));
    setters_.emplace_back(name,
                          [field](Options& o, const Json& j, const std::vector<std::string>& path) {
                            o.*field = ArgTraits<T>::from_json(j, path);
                          });
    return *this;
  }

  Param& last() {
    if (spec_.params.empty())
      throw Error("'" + spec_.name + "': a value constraint must follow an .arg() or .required()");
    return spec_.params.back();
  }
  /// Throws when the parameter declared last has no value of a shape `what` applies to.
  void require(bool (*applies)(ParamType), const char* what) {
    const Param& p = last();
    bool ok = applies(p.type);
    for (const auto& a : p.alternatives) ok |= applies(a.type);
    if (!ok)
      throw Error("'" + spec_.name + "' parameter '" + p.name + "': " + what +
                  " does not apply to a parameter of type " + p.type_name());
  }
  static bool textual(ParamType t) { return t == ParamType::String || t == ParamType::StringList; }
  static bool sized(ParamType t) {
    return t == ParamType::String || t == ParamType::IntList || t == ParamType::FloatList ||
           t == ParamType::StringList || t == ParamType::ComponentList;
  }
  static bool listy(ParamType t) { return sized(t) && t != ParamType::String; }
  Definition& bound(bool lower, double v, bool exclusive) {
    require(is_numeric, "a numeric bound");
    Param& p = last();
    (lower ? p.minimum : p.maximum) = v;
    (lower ? p.exclusive_minimum : p.exclusive_maximum) = exclusive;
    propagate();
    return *this;
  }
  /// A variant's alternatives take the constraints (each applies where it fits its type).
  void propagate() {
    Param& p = last();
    for (auto& a : p.alternatives) {
      a.minimum = p.minimum;
      a.maximum = p.maximum;
      a.exclusive_minimum = p.exclusive_minimum;
      a.exclusive_maximum = p.exclusive_maximum;
      a.choices = p.choices;
      a.non_empty = p.non_empty;
      a.list_sizes = p.list_sizes;
    }
  }

  Spec spec_;
  std::vector<std::pair<
      std::string, std::function<void(Options&, const Json&, const std::vector<std::string>&)>>>
      setters_;
};

template <class Base, class Options = NoOptions>
Definition<Base, Options> define(std::string name, std::string summary) {
  return Definition<Base, Options>(std::move(name), std::move(summary));
}

/// A top-level cycle key declared by a plugin, holding one component (or a list) of `kind`.
struct CycleKey {
  std::string name;
  Kind kind = Kind::Callback;
  bool is_list = false;
  std::string doc;
  std::string plugin;
};

/// Where a plugin's register function puts its components. The host stages them here, checks
/// them, then commits them to the Registry.
class Registrar {
 public:
  /// Stages a component. Throws ktf::Error if its spec is incomplete (no name, summary or a
  /// parameter without a doc) or if the plugin registers the same name twice.
  void add(ComponentDef def);
  /// Stages an extra top-level cycle key (e.g. "callbacks").
  void add_cycle_key(CycleKey key);
  /// Declares what a cycle uses when no cycle of the config gives `key` (e.g. "optimizer" ->
  /// {"ktf.optimizers.Adam": {}}). The component must be one this plugin registers.
  void add_cycle_default(std::string key, Json component);

  const std::vector<ComponentDef>& components() const { return components_; }
  const std::vector<CycleKey>& cycle_keys() const { return cycle_keys_; }
  const std::vector<std::pair<std::string, Json>>& cycle_defaults() const { return defaults_; }

 private:
  std::vector<ComponentDef> components_;
  std::vector<CycleKey> cycle_keys_;
  std::vector<std::pair<std::string, Json>> defaults_;
};

/// A default for an omitted cycle key, and the plugin that declared it.
struct CycleDefault {
  std::string key;
  Json component;
  std::string plugin;
};

/// Thrown by Registry::commit when a name is already taken.
class DuplicateError : public Error {
 public:
  using Error::Error;
};

/// All registered components, by kind and name (aliases included).
class Registry {
 public:
  /// The process-wide registry used by ktf-host and ktf::register_component.
  static Registry& global();

  /// Adds everything staged in `staged`, all or nothing. Throws DuplicateError naming the
  /// component and the plugin that registered it first.
  void commit(const Registrar& staged, const std::string& plugin, const std::string& path);

  /// By config name or alias; nullptr when unknown.
  const ComponentDef* find(Kind kind, std::string_view name) const;
  /// Every component of a kind (or of all kinds), sorted by kind then name.
  std::vector<const ComponentDef*> list(std::optional<Kind> kind = std::nullopt) const;
  /// Components of any kind registered under `name` (or alias).
  std::vector<const ComponentDef*> find_any(std::string_view name) const;
  /// Up to `n` registered names of `kind` closest to `name` (edit distance, dotted suffixes).
  std::vector<std::string> closest(Kind kind, std::string_view name, size_t n = 3) const;

  const std::vector<CycleKey>& cycle_keys() const { return cycle_keys_; }
  const CycleKey* find_cycle_key(std::string_view name) const;
  /// The default component for an omitted cycle key, or nullptr when no plugin declares one.
  const CycleDefault* find_cycle_default(std::string_view key) const;
  const std::vector<CycleDefault>& cycle_defaults() const { return defaults_; }

 private:
  std::vector<CycleDefault> defaults_;
  std::vector<std::unique_ptr<ComponentDef>> defs_;
  std::map<std::pair<Kind, std::string>, const ComponentDef*> by_name_;
  std::vector<CycleKey> cycle_keys_;
};

/// Registers a component in-process (a user's own main(), tests). Throws DuplicateError.
void register_component(ComponentDef def, Registry& registry = Registry::global());

/// Suggestions for an unknown name among `candidates`: up to `n`, closest first.
std::vector<std::string> closest_names(std::string_view name,
                                       const std::vector<std::string>& candidates, size_t n = 3,
                                       bool only_close = false);

}  // namespace ktf
