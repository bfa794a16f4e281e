// The config dialect's full reader: Hjson (hjson.github.io), the superset of JSON the original
// tool read. Json::parse tries RapidJSON first (strict JSON with comments and trailing commas, the
// fast path) and hands whatever that refuses to this reader, whose errors are the ones reported.
//
// Hjson on top of JSON: comments (#, //, /* */); commas optional where a newline separates
// members or elements (and allowed before a closing bracket); unquoted keys (no whitespace and
// none of {}[],: in them); quoteless strings (from the first character to the end of the line,
// trimmed; true, false, null and numbers are those values only when nothing but a separator or a
// comment follows them); single-quoted strings; ''' multi-line strings (the indentation of the
// opening ''' removed from every line); a root object without braces. It follows the reference
// implementation (PyPI's hjson) rule for rule, and tests/core/hjson_test.cpp checks both give
// the same values or both refuse on a corpus of files. Numbers must be finite; nesting deeper
// than kMaxDepth is refused (a config is never that deep; the limit keeps the recursion bounded).
#include "hjson.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "ktf/error.h"

namespace ktf::detail {
namespace {

constexpr int kMaxDepth = 512;

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_punctuator(char c) {
  return c == '{' || c == '}' || c == '[' || c == ']' || c == ',' || c == ':';
}

class Reader {
 public:
  Reader(std::string_view text, const std::string& source) : t_(text), source_(source) {}

  Json root() {
    skip();
    if (peek() == '{' || peek() == '[') {
      Json v = value();
      skip();
      if (!eof()) fail("Syntax error, found trailing characters", p_);
      return v;
    }
    // A root object without braces, else a single value (as the reference implementation).
    const size_t start = p_;
    try {
      return members(/*braces=*/false);
    } catch (const Error& braceless) {
      p_ = start;
      depth_ = 0;
      try {
        Json v = value();
        skip();
        if (!eof()) fail("Syntax error, found trailing characters", p_);
        return v;
      } catch (const Error&) {
        throw braceless;
      }
    }
  }

 private:
  std::string_view t_;
  const std::string& source_;
  size_t p_ = 0;
  int depth_ = 0;

  bool eof() const { return p_ >= t_.size(); }
  char peek(size_t k = 0) const { return p_ + k < t_.size() ? t_[p_ + k] : '\0'; }

  [[noreturn]] void fail(const std::string& message, size_t at) const {
    at = std::min(at, t_.size());
    size_t line = 1, line_start = 0;
    for (size_t i = 0; i < at; ++i)
      if (t_[i] == '\n') ++line, line_start = i + 1;
    size_t line_end = t_.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = t_.size();
    const size_t column = at - line_start + 1;
    // At most 100 characters of the line, around the column.
    size_t from = line_start, to = line_end;
    if (to - from > 100) {
      from = at > line_start + 50 ? at - 50 : line_start;
      to = std::min(line_end, from + 100);
    }
    std::string quoted(t_.substr(from, to - from));
    for (char& c : quoted)
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t') c = ' ';
    std::ostringstream msg;
    msg << source_ << ":" << line << ":" << column << ": " << message << "\n  "
        << (from > line_start ? "..." : "") << quoted << (to < line_end ? "..." : "") << "\n  "
        << std::string(at - from + (from > line_start ? 3 : 0), ' ') << "^";
    throw Error(msg.str());
  }

  /// Skips whitespace and comments.
  void skip() {
    while (!eof()) {
      const char c = peek();
      if (is_ws(c)) {
        ++p_;
      } else if (c == '#' || (c == '/' && peek(1) == '/')) {
        while (!eof() && peek() != '\n') ++p_;
      } else if (c == '/' && peek(1) == '*') {
        const size_t start = p_;
        p_ += 2;
        while (!eof() && !(peek() == '*' && peek(1) == '/')) ++p_;
        if (eof()) fail("Unterminated comment", start);
        p_ += 2;
      } else {
        return;
      }
    }
  }

  void enter() {
    if (++depth_ > kMaxDepth)
      fail("nested deeper than " + std::to_string(kMaxDepth) + " objects and arrays", p_);
  }

  Json value() {
    skip();
    switch (peek()) {
      case '{':
        ++p_;
        return members(/*braces=*/true);
      case '[':
        ++p_;
        return elements();
      case '"':
        ++p_;
        return Json(quoted('"'));
      case '\'':
        if (peek(1) == '\'' && peek(2) == '\'') return Json(multiline());
        ++p_;
        return Json(quoted('\''));
      case '\0':
        if (eof()) fail("Expecting value", p_);
        [[fallthrough]];
      default:
        return unquoted();
    }
  }

  Json members(bool braces) {
    enter();
    Json obj = Json::object();
    skip();
    if (braces && peek() == '}') {
      ++p_;
      --depth_;
      return obj;
    }
    while (true) {
      if (!braces && eof()) break;
      std::string k = key();
      skip();
      if (peek() != ':') fail("Expecting ':' delimiter", p_);
      ++p_;
      Json v = value();
      obj.set(std::move(k), std::move(v));  // a repeated key keeps the last value
      skip();
      if (peek() == ',') {
        ++p_;
        skip();
      }
      if (braces && peek() == '}') {
        ++p_;
        break;
      }
      if (eof()) {
        if (braces)
          fail("End of input while parsing an object (did you forget a closing '}'?)", p_);
        break;
      }
    }
    --depth_;
    return obj;
  }

  Json elements() {
    enter();
    Json arr = Json::array();
    skip();
    if (peek() == ']') {
      ++p_;
      --depth_;
      return arr;
    }
    while (true) {
      arr.as_array().push_back(value());
      skip();
      if (peek() == ',') {
        ++p_;
        skip();
      }
      if (peek() == ']') {
        ++p_;
        break;
      }
      if (eof()) fail("End of input while parsing an array (did you forget a closing ']'?)", p_);
    }
    --depth_;
    return arr;
  }

  std::string key() {
    skip();
    if (peek() == '"' || peek() == '\'') {
      const char q = peek();
      ++p_;
      return quoted(q);
    }
    const size_t begin = p_;
    while (true) {
      if (eof()) fail("Bad key name (eof)", p_);
      const char c = peek();
      if (c == ':') break;
      if (c == '{' || c == '}' || c == '[' || c == ']' || c == ',')
        fail(std::string("Found '") + c +
                 "' where a key name was expected (check your syntax or use quotes if the key "
                 "name includes {}[],: or whitespace)",
             begin);
      ++p_;
    }
    if (p_ == begin) fail("Found ':' but no key name (for an empty key name use quotes)", p_);
    // Whitespace may only come between the name and its colon.
    const std::string_view name = trimmed(begin, p_);
    for (size_t i = 0; i < name.size(); ++i)
      if (is_ws(name[i]))
        fail("Found whitespace in your key name (use quotes to include)", begin + i);
    return std::string(name);
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  uint32_t hex4() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = peek();
      int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
      if (d < 0) fail("Invalid \\uXXXX escape", p_);
      v = v * 16 + static_cast<uint32_t>(d);
      ++p_;
    }
    return v;
  }

  /// A string after its opening quote `q`, with JSON's escapes (and \' ).
  std::string quoted(char q) {
    const size_t start = p_ - 1;
    std::string out;
    while (true) {
      if (eof()) fail("Unterminated string starting at", start);
      const char c = peek();
      if (c == q) {
        ++p_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20)
        fail("Invalid control character in a string (a newline needs a ''' string)", p_);
      if (c != '\\') {
        out += c;
        ++p_;
        continue;
      }
      ++p_;
      const char e = peek();
      ++p_;
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\'':
          out += '\'';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && peek() == '\\' && peek(1) == 'u') {
            const size_t save = p_;
            p_ += 2;
            const uint32_t low = hex4();
            if (low >= 0xDC00 && low < 0xE000)
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            else
              p_ = save;
          }
          append_utf8(out, cp);
          break;
        }
        default:
          fail(std::string("Invalid \\escape: '\\") + e + "'", p_ - 2);
      }
    }
  }

  /// A ''' string: the indentation of the opening ''' is removed from each line; the first line
  /// break after the opening and the last before the closing ''' are not part of it.
  std::string multiline() {
    const size_t start = p_;
    size_t indent = 0;
    while (start >= indent + 1 && t_[start - indent - 1] != '\n') ++indent;
    p_ += 3;
    auto skip_indent = [&](size_t n) {
      while (n > 0 && !eof() && (peek() == ' ' || peek() == '\t' || peek() == '\r')) ++p_, --n;
    };
    skip_indent(std::string_view::npos);
    if (peek() == '\n') {
      ++p_;
      skip_indent(indent);
    }
    std::string out;
    int triple = 0;
    while (true) {
      if (eof()) fail("Bad multiline string", start);
      const char c = peek();
      if (c == '\'') {
        ++p_;
        if (++triple == 3) {
          if (!out.empty() && out.back() == '\n') out.pop_back();
          return out;
        }
        continue;
      }
      for (; triple > 0; --triple) out += '\'';
      if (c == '\n') {
        out += '\n';
        ++p_;
        skip_indent(indent);
      } else {
        if (c != '\r') out += c;
        ++p_;
      }
    }
  }

  /// The text [begin, end) with spaces, tabs and carriage returns trimmed on both sides.
  std::string_view trimmed(size_t begin, size_t end) const {
    while (begin < end && is_ws(t_[begin])) ++begin;
    while (end > begin && is_ws(t_[end - 1])) --end;
    return t_.substr(begin, end - begin);
  }

  /// JSON's number grammar, the whole of `s`.
  static bool is_number(std::string_view s) {
    size_t i = 0;
    if (i < s.size() && s[i] == '-') ++i;
    if (i >= s.size()) return false;
    if (s[i] == '0') {
      ++i;
    } else if (s[i] >= '1' && s[i] <= '9') {
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    } else {
      return false;
    }
    if (i < s.size() && s[i] == '.') {
      ++i;
      const size_t digits = i;
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
      if (i == digits) return false;
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
      const size_t digits = i;
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
      if (i == digits) return false;
    }
    return i == s.size();
  }

  Json number(std::string_view s, size_t at) {
    const std::string text(s);
    if (text.find_first_of(".eE") == std::string::npos) {
      errno = 0;
      char* end = nullptr;
      const long long v = std::strtoll(text.c_str(), &end, 10);
      if (errno == 0) return Json(static_cast<int64_t>(v));
    }
    const double d = std::strtod(text.c_str(), nullptr);
    if (!std::isfinite(d))
      fail("number " + text + " is out of range (a double holds up to about 1.8e308)", at);
    return Json(d);
  }

  /// true, false, null, a number, or a quoteless string to the end of the line.
  Json unquoted() {
    const size_t begin = p_;
    const char first = peek();
    if (is_punctuator(first))
      fail(std::string("Found a punctuator character '") + first +
               "' when expecting a quoteless string (check your syntax)",
           p_);
    while (true) {
      const char c = peek();
      const bool eol = eof() || c == '\n' || c == '\r';
      if (eol || c == ',' || c == '}' || c == ']' || c == '#' ||
          (c == '/' && (peek(1) == '/' || peek(1) == '*'))) {
        const std::string_view text = trimmed(begin, p_);
        if (first == 'n' && text == "null") return Json();
        if (first == 't' && text == "true") return Json(true);
        if (first == 'f' && text == "false") return Json(false);
        if ((first == '-' || (first >= '0' && first <= '9')) && is_number(text))
          return number(text, begin);
        if (eol) return Json(std::string(text));
      }
      ++p_;
    }
  }
};

}  // namespace

Json parse_hjson(std::string_view text, const std::string& source) {
  return Reader(text, source).root();
}

}  // namespace ktf::detail
