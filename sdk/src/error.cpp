#include "ktf/error.h"

namespace ktf {
namespace {

/// A message quoting a huge value (a 50 MB string in a config, a binary file's "line") keeps its
/// start and end: what names the culprit is there.
std::string bounded(std::string message) {
  constexpr size_t kMax = 2000, kHead = 1400, kTail = 400;
  if (message.size() <= kMax) return message;
  size_t head = kHead, tail = message.size() - kTail;
  while (head > 0 && (static_cast<unsigned char>(message[head]) & 0xC0) == 0x80) --head;
  while (tail < message.size() && (static_cast<unsigned char>(message[tail]) & 0xC0) == 0x80)
    ++tail;
  return message.substr(0, head) + " [... " + std::to_string(tail - head) + " bytes ...] " +
         message.substr(tail);
}

}  // namespace

std::string excerpt(std::string_view text, size_t max_chars) {
  if (text.size() <= max_chars) return std::string(text);
  size_t cut = max_chars > 3 ? max_chars - 3 : 0;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return std::string(text.substr(0, cut)) + "... (" + std::to_string(text.size()) + " bytes)";
}

Error::Error(std::string message, std::vector<std::string> path, int exit_code)
    : std::runtime_error(format(path, bounded(message))),
      message_(bounded(std::move(message))),
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
    out += segment.size() > 200 ? excerpt(segment, 200) : segment;
  }
  return out.empty() ? message : out + ": " + message;
}

}  // namespace ktf
