// ktf/error.h — the one exception type ktf throws for anything a user can fix.
//
// A ktf::Error carries a message, the path of config keys that led to it and the exit code the
// host should use. What it prints reads like a breadcrumb trail:
//
//   cycle 2 › model › ktf.models.OneHeadNet › base_model › ktf.networks.MobileNetV2 › alpah:
//   unknown parameter (did you mean 'alpha'?)
//
// Components validate their arguments where they receive them:
//
//   KTF_CHECK(o.dropout >= 0 && o.dropout < 1, "dropout must be in [0, 1), got ", o.dropout);
//
// Errors raised while a component is built get the component's config path prepended by the SDK.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ktf {

/// Exit codes of ktf-host (DESIGN.md): 0 done, 1 failed while running, 2 bad command line, config
/// or input data, 3 plugin could not be loaded, 130 interrupted.
enum ExitCode : int {
  kExitOk = 0,
  kExitRuntime = 1,
  kExitConfig = 2,
  kExitPlugin = 3,
  kExitInterrupted = 130
};

class Error : public std::runtime_error {
 public:
  explicit Error(std::string message, std::vector<std::string> path = {},
                 int exit_code = kExitConfig);

  const std::string& message() const { return message_; }
  const std::vector<std::string>& path() const { return path_; }
  int exit_code() const { return exit_code_; }

  /// Returns a copy with `segment` put in front of the path (used while unwinding nested builds).
  Error with_prefix(const std::string& segment) const;
  /// Returns a copy with `segments` put in front of the path.
  Error with_prefix(const std::vector<std::string>& segments) const;

  /// "a › b › c: message", or just the message when the path is empty.
  static std::string format(const std::vector<std::string>& path, const std::string& message);

 private:
  std::string message_;
  std::vector<std::string> path_;
  int exit_code_;
};

/// `text` when it has at most `max_chars` bytes, else its start, "..." and its length: for quoting
/// a user's value in a message ("label_column 'aaaa... (52428800 bytes)' is not a column").
/// Messages are bounded anyway (an Error keeps the start and end of one over 2000 bytes).
std::string excerpt(std::string_view text, size_t max_chars = 60);

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace detail

}  // namespace ktf

/// Throws ktf::Error with the concatenated message when `cond` is false.
#define KTF_CHECK(cond, ...)                                             \
  do {                                                                   \
    if (!(cond)) throw ::ktf::Error(::ktf::detail::concat(__VA_ARGS__)); \
  } while (0)

/// Throws ktf::Error with exit code 1 (failure while running) when `cond` is false.
#define KTF_CHECK_RUNTIME(cond, ...)                                                              \
  do {                                                                                            \
    if (!(cond)) throw ::ktf::Error(::ktf::detail::concat(__VA_ARGS__), {}, ::ktf::kExitRuntime); \
  } while (0)
