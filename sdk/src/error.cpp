#include "ktf/error.h"

namespace ktf {

Error::Error(std::string message, std::vector<std::string> path, int exit_code)
    : std::runtime_error(format(path, message)),
      message_(std::move(message)),
      path_(std::move(path)),
      exit_code_(exit_code) {}

Error Error::with_prefix(const std::string& segment) const {
  return with_prefix(std::vector<std::string>{segment});
}

Error Error::with_prefix(const std::vector<std::string>& segments) const {
  std::vector<std::string> path = segments;
  path.insert(path.end(), path_.begin(), path_.end());
  return Error(message_, std::move(path), exit_code_);
}

std::string Error::format(const std::vector<std::string>& path, const std::string& message) {
  std::string out;
  for (const auto& segment : path) {
    if (!out.empty()) out += " \u203a ";
    out += segment;
  }
  return out.empty() ? message : out + ": " + message;
}

}  // namespace ktf
