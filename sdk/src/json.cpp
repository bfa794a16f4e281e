#include "ktf/json.h"

#include <rapidjson/error/en.h>
#include <rapidjson/reader.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "hjson.h"
#include "ktf/error.h"

namespace ktf {
namespace {

// Replaces `#` comments (outside strings) with spaces so RapidJSON, which knows `//` and `/* */`,
// can parse the rest. Offsets, and so line:column in errors, are unchanged.
std::string blank_hash_comments(std::string_view text) {
  std::string out(text);
  bool in_string = false, in_line = false, in_block = false;
  for (size_t i = 0; i < out.size(); ++i) {
    char c = out[i];
    char next = i + 1 < out.size() ? out[i + 1] : '\0';
    if (in_line) {
      if (c == '\n') in_line = false;
      continue;
    }
    if (in_block) {
      if (c == '*' && next == '/') {
        in_block = false;
        ++i;
      }
      continue;
    }
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '/' && next == '/') {
      in_line = true;
    } else if (c == '/' && next == '*') {
      in_block = true;
      ++i;
    } else if (c == '#') {
      while (i < out.size() && out[i] != '\n') out[i++] = ' ';
      --i;
    }
  }
  return out;
}

// SAX handler building a Json tree.
/// As the Hjson reader's limit (hjson.cpp): a value nested deeper is refused there, with its line.
constexpr size_t kMaxFastDepth = 512;

class Builder : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, Builder> {
 public:
  bool Null() { return put(Json()); }
  bool Bool(bool b) { return put(Json(b)); }
  bool Int(int i) { return put(Json(i)); }
  bool Uint(unsigned u) { return put(Json(static_cast<int64_t>(u))); }
  bool Int64(int64_t i) { return put(Json(i)); }
  bool Uint64(uint64_t u) {
    return u > static_cast<uint64_t>(INT64_MAX) ? put(Json(static_cast<double>(u)))
                                                : put(Json(static_cast<int64_t>(u)));
  }
  bool Double(double d) { return put(Json(d)); }
  bool String(const char* s, rapidjson::SizeType n, bool) { return put(Json(std::string(s, n))); }
  bool StartObject() {
    stack_.push_back(Json::object());
    return stack_.size() <= kMaxFastDepth;  // deeper: the Hjson reader reports it
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    keys_.emplace_back(s, n);
    return true;
  }
  bool EndObject(rapidjson::SizeType) { return pop(); }
  bool StartArray() {
    stack_.push_back(Json::array());
    return stack_.size() <= kMaxFastDepth;
  }
  bool EndArray(rapidjson::SizeType) { return pop(); }

  Json result;

 private:
  bool put(Json v) {
    if (stack_.empty()) {
      result = std::move(v);
      return true;
    }
    Json& top = stack_.back();
    if (top.is_array()) {
      top.as_array().push_back(std::move(v));
    } else {
      std::string key = std::move(keys_.back());
      keys_.pop_back();
      // A repeated key keeps the last value, as JSON parsers commonly do.
      top.set(std::move(key), std::move(v));
    }
    return true;
  }
  bool pop() {
    Json v = std::move(stack_.back());
    stack_.pop_back();
    return put(std::move(v));
  }
  std::vector<Json> stack_;
  std::vector<std::string> keys_;
};

constexpr size_t kUnbounded = static_cast<size_t>(-1);

/// Dumps stop soon after `limit` characters (describe_value of a huge value reads only its start).
bool past(std::ostringstream& out, size_t limit) {
  return limit != kUnbounded && static_cast<size_t>(out.tellp()) > limit;
}

void dump_string(std::ostringstream& out, const std::string& s, size_t limit = kUnbounded) {
  out << '"';
  const size_t n = limit == kUnbounded ? s.size() : std::min(s.size(), limit);
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out << "\\\"";
        break;
      case '\\':
        out << "\\\\";
        break;
      case '\n':
        out << "\\n";
        break;
      case '\r':
        out << "\\r";
        break;
      case '\t':
        out << "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out << buf;
        } else {
          out << c;
        }
    }
  }
  out << '"';
}

void dump_value(std::ostringstream& out, const Json& v, int indent, int depth,
                size_t limit = kUnbounded) {
  auto newline = [&](int d) {
    if (indent >= 0) out << '\n' << std::string(static_cast<size_t>(indent * d), ' ');
  };
  switch (v.type()) {
    case Json::Type::Null:
      out << "null";
      break;
    case Json::Type::Bool:
      out << (v.as_bool() ? "true" : "false");
      break;
    case Json::Type::Int:
      out << v.as_int();
      break;
    case Json::Type::Float: {
      double d = v.as_number();
      if (!std::isfinite(d)) {
        out << "null";
        break;
      }
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", d);
      // Shortest representation that round-trips.
      for (int p = 1; p <= 17; ++p) {
        char b2[32];
        std::snprintf(b2, sizeof b2, "%.*g", p, d);
        if (std::strtod(b2, nullptr) == d) {
          std::snprintf(buf, sizeof buf, "%s", b2);
          break;
        }
      }
      std::string s = buf;
      if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
      out << s;
      break;
    }
    case Json::Type::String:
      dump_string(out, v.as_string(), limit);
      break;
    case Json::Type::Array: {
      const auto& a = v.as_array();
      out << '[';
      for (size_t i = 0; i < a.size() && !past(out, limit); ++i) {
        if (i) out << (indent >= 0 ? "," : ", ");
        if (indent >= 0) newline(depth + 1);
        dump_value(out, a[i], indent, depth + 1, limit);
      }
      if (!a.empty() && indent >= 0) newline(depth);
      out << ']';
      break;
    }
    case Json::Type::Object: {
      const auto& o = v.as_object();
      out << '{';
      for (size_t i = 0; i < o.size() && !past(out, limit); ++i) {
        if (i) out << (indent >= 0 ? "," : ", ");
        if (indent >= 0) newline(depth + 1);
        dump_string(out, o[i].first, limit);
        out << ": ";
        dump_value(out, o[i].second, indent, depth + 1, limit);
      }
      if (!o.empty() && indent >= 0) newline(depth);
      out << '}';
      break;
    }
  }
}

[[noreturn]] void type_error(Json::Type want, const Json& got) {
  throw Error(std::string("expected ") + type_name(want) + ", got " + describe_value(got));
}

}  // namespace

Json Json::parse(std::string_view text, const std::string& source) {
  // Fast path: JSON with comments and trailing commas, which RapidJSON reads (iteratively, so
  // depth costs no stack). Anything it refuses goes to the Hjson reader, whose verdict and
  // errors stand: the dialect is Hjson, a superset (hjson.cpp).
  std::string cleaned = blank_hash_comments(text);
  Builder builder;
  rapidjson::Reader reader;
  rapidjson::StringStream stream(cleaned.c_str());
  constexpr unsigned kFlags = rapidjson::kParseCommentsFlag | rapidjson::kParseTrailingCommasFlag |
                              rapidjson::kParseFullPrecisionFlag | rapidjson::kParseIterativeFlag;
  // A NUL byte ends RapidJSON's input early: such text goes to the Hjson reader whole.
  if (text.find('\0') == std::string_view::npos && reader.Parse<kFlags>(stream, builder))
    return std::move(builder.result);
  return detail::parse_hjson(text, source);
}

Json Json::parse_file(const std::string& path) {
  // Only a regular file of a sane size: a FIFO would block, /dev/zero would never end.
  constexpr uintmax_t kMaxBytes = uintmax_t{64} << 20;
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) throw Error("cannot read config file '" + path + "'");
  if (!fs::is_regular_file(status)) {
    const char* what = fs::is_directory(status)                                     ? "a directory"
                       : fs::is_fifo(status)                                        ? "a FIFO"
                       : fs::is_character_file(status) || fs::is_block_file(status) ? "a device"
                                                                                    : "a socket";
    throw Error("config file '" + path + "' is not a regular file (" + what + ")");
  }
  const uintmax_t size = fs::file_size(path, ec);
  if (!ec && size > kMaxBytes)
    throw Error("config file '" + path + "' is " + std::to_string(size >> 20) +
                " MiB: a config may be at most 64 MiB");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read config file '" + path + "'");
  std::stringstream buf;
  buf << in.rdbuf();
  return parse(buf.str(), path);
}

bool Json::as_bool() const {
  if (!is_bool()) type_error(Type::Bool, *this);
  return std::get<bool>(v_);
}
int64_t Json::as_int() const {
  if (type() == Type::Float) {
    double d = std::get<double>(v_);
    if (std::floor(d) == d && std::abs(d) < 9e15) return static_cast<int64_t>(d);
  }
  if (!is_int()) type_error(Type::Int, *this);
  return std::get<int64_t>(v_);
}
double Json::as_number() const {
  if (is_int()) return static_cast<double>(std::get<int64_t>(v_));
  if (type() != Type::Float) type_error(Type::Float, *this);
  return std::get<double>(v_);
}
const std::string& Json::as_string() const {
  if (!is_string()) type_error(Type::String, *this);
  return std::get<std::string>(v_);
}
const Json::Array& Json::as_array() const {
  if (!is_array()) type_error(Type::Array, *this);
  return std::get<Array>(v_);
}
Json::Array& Json::as_array() {
  if (!is_array()) type_error(Type::Array, *this);
  return std::get<Array>(v_);
}
const Json::Object& Json::as_object() const {
  if (!is_object()) type_error(Type::Object, *this);
  return std::get<Object>(v_);
}
Json::Object& Json::as_object() {
  if (!is_object()) type_error(Type::Object, *this);
  return std::get<Object>(v_);
}

const Json* Json::find(std::string_view key) const {
  if (!is_object()) return nullptr;
  for (const auto& [k, v] : std::get<Object>(v_))
    if (k == key) return &v;
  return nullptr;
}
Json* Json::find(std::string_view key) {
  return const_cast<Json*>(static_cast<const Json*>(this)->find(key));
}
const Json& Json::at(std::string_view key) const {
  const Json* v = find(key);
  if (!v) throw Error("missing key '" + std::string(key) + "'");
  return *v;
}
Json& Json::set(std::string key, Json value) {
  if (is_null()) v_ = Object{};
  if (Json* v = find(key)) {
    *v = std::move(value);
    return *v;
  }
  auto& o = as_object();
  o.emplace_back(std::move(key), std::move(value));
  return o.back().second;
}
Json& Json::operator[](std::string_view key) {
  if (Json* v = find(key)) return *v;
  return set(std::string(key), Json());
}
bool Json::erase(std::string_view key) {
  if (!is_object()) return false;
  auto& o = std::get<Object>(v_);
  for (auto it = o.begin(); it != o.end(); ++it) {
    if (it->first == key) {
      o.erase(it);
      return true;
    }
  }
  return false;
}
size_t Json::size() const {
  if (is_array()) return std::get<Array>(v_).size();
  if (is_object()) return std::get<Object>(v_).size();
  return 0;
}

std::string Json::dump(int indent) const {
  std::ostringstream out;
  dump_value(out, *this, indent, 0);
  return out.str();
}

bool operator==(const Json& a, const Json& b) {
  if (a.is_number() && b.is_number() && a.type() != b.type()) return a.as_number() == b.as_number();
  return a.v_ == b.v_;
}

const char* type_name(Json::Type type) {
  switch (type) {
    case Json::Type::Null:
      return "null";
    case Json::Type::Bool:
      return "boolean";
    case Json::Type::Int:
      return "integer";
    case Json::Type::Float:
      return "number";
    case Json::Type::String:
      return "string";
    case Json::Type::Array:
      return "array";
    case Json::Type::Object:
      return "object";
  }
  return "?";
}

std::string describe_value(const Json& value) {
  std::ostringstream out;
  dump_value(out, value, -1, 0, 40);
  std::string text = out.str();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  if (value.is_null()) return "null";
  return std::string(type_name(value.type())) + " " + text;
}

std::string json_pointer_token(const std::string& key) {
  std::string out;
  out.reserve(key.size());
  for (char c : key) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
  return out;
}

namespace {
void leaves_into(const Json& v, const std::string& at,
                 std::vector<std::pair<std::string, Json>>& out) {
  if (v.is_object() && v.size() > 0) {
    for (const auto& [key, value] : v.as_object())
      leaves_into(value, at + "/" + json_pointer_token(key), out);
  } else if (v.is_array() && v.size() > 0) {
    for (size_t i = 0; i < v.as_array().size(); ++i)
      leaves_into(v.as_array()[i], at + "/" + std::to_string(i), out);
  } else {
    out.emplace_back(at, v);
  }
}
}  // namespace

std::vector<std::pair<std::string, Json>> json_leaves(const Json& value) {
  std::vector<std::pair<std::string, Json>> out;
  leaves_into(value, "", out);
  return out;
}

}  // namespace ktf
