// ktf/json.h — the JSON value every config, spec default and log line is made of.
//
// Configs are Hjson, as the original tool read them: JSON plus `#`, `//` and `/* */` comments,
// commas optional at line ends, unquoted keys and quoteless strings (docs/config.md). `Json::parse`
// accepts that dialect and reports errors as `file:line:column: message`, quoting the offending
// line. Objects keep their keys in the order written.
//
//   ktf::Json cfg = ktf::Json::parse(R"({"num_outputs": 10, # classes
//                                        "hidden": [256, 128],})", "inline");
//   int64_t n = cfg.at("num_outputs").as_int();
//   std::string text = cfg.dump(2);
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace ktf {

class Json {
 public:
  enum class Type { Null, Bool, Int, Float, String, Array, Object };
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;

  Json() = default;
  Json(std::nullptr_t) {}
  Json(bool b) : v_(b) {}
  Json(int i) : v_(static_cast<int64_t>(i)) {}
  Json(long i) : v_(static_cast<int64_t>(i)) {}
  Json(long long i) : v_(static_cast<int64_t>(i)) {}
  Json(unsigned i) : v_(static_cast<int64_t>(i)) {}
  Json(unsigned long i) : v_(static_cast<int64_t>(i)) {}
  Json(double d) : v_(d) {}
  Json(const char* s) : v_(std::string(s)) {}
  Json(std::string s) : v_(std::move(s)) {}
  Json(std::string_view s) : v_(std::string(s)) {}
  Json(Array a) : v_(std::move(a)) {}
  Json(Object o) : v_(std::move(o)) {}

  /// Builds an array: `Json::array({1, 2, 3})`.
  static Json array(std::initializer_list<Json> items = {}) { return Json(Array(items)); }
  /// Builds an object: `Json::object({{"lr", 0.1}, {"momentum", 0.9}})`.
  static Json object(std::initializer_list<std::pair<std::string, Json>> items = {}) {
    return Json(Object(items.begin(), items.end()));
  }

  /// Parses the config dialect, Hjson (a superset of JSON: comments, optional and trailing commas,
  /// unquoted keys, quoteless, single-quoted and triple-quoted multi-line strings, a root object
  /// without braces). Numbers must be finite (NaN and Infinity read as quoteless strings),
  /// nesting at most 512 deep. `source` names the text in errors: ktf::Error
  /// "source:line:col: message" followed by the quoted line (at most 100 characters) and a caret.
  static Json parse(std::string_view text, const std::string& source = "<config>");
  /// Reads and parses a file; a missing or unreadable file, one that is not a regular file (a
  /// FIFO, a device, a directory) or one over 64 MiB is a ktf::Error naming the path.
  static Json parse_file(const std::string& path);

  Type type() const { return static_cast<Type>(v_.index()); }
  bool is_null() const { return type() == Type::Null; }
  bool is_bool() const { return type() == Type::Bool; }
  bool is_int() const { return type() == Type::Int; }
  bool is_number() const { return type() == Type::Int || type() == Type::Float; }
  bool is_string() const { return type() == Type::String; }
  bool is_array() const { return type() == Type::Array; }
  bool is_object() const { return type() == Type::Object; }

  // Accessors throw ktf::Error ("expected <type>, got <type>") on a type mismatch.
  bool as_bool() const;
  int64_t as_int() const;
  double as_number() const;  ///< Int or Float.
  const std::string& as_string() const;
  const Array& as_array() const;
  Array& as_array();
  const Object& as_object() const;
  Object& as_object();

  /// Object lookup; nullptr when absent (or when this is not an object).
  const Json* find(std::string_view key) const;
  Json* find(std::string_view key);
  /// Object lookup that throws ktf::Error naming the key when absent.
  const Json& at(std::string_view key) const;
  /// Inserts (at the end) or replaces a key; turns a null value into an object first.
  Json& set(std::string key, Json value);
  /// Object key access that inserts null when absent; turns a null value into an object first.
  Json& operator[](std::string_view key);
  bool erase(std::string_view key);
  size_t size() const;  ///< Elements of an array or keys of an object, else 0.

  /// Serializes; indent < 0 gives one line.
  std::string dump(int indent = -1) const;

  friend bool operator==(const Json& a, const Json& b);
  friend bool operator!=(const Json& a, const Json& b) { return !(a == b); }

 private:
  std::variant<std::monostate, bool, int64_t, double, std::string, Array, Object> v_;
};

/// "null", "boolean", "integer", "number", "string", "array", "object".
const char* type_name(Json::Type type);
/// A short rendering of a value for error messages, e.g. `string "ten"` or `integer 3`.
std::string describe_value(const Json& value);

/// An object key as one RFC 6901 reference token ("a/b~c" -> "a~1b~0c").
std::string json_pointer_token(const std::string& key);
/// Every leaf of `value` by RFC 6901 pointer ("/0/optimizer/Adam/learning_rate"), in document
/// order: scalars, and empty arrays and objects as themselves.
std::vector<std::pair<std::string, Json>> json_leaves(const Json& value);

}  // namespace ktf
