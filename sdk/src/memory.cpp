#include "ktf/memory.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "ktf/error.h"

namespace ktf {
namespace {

std::optional<uint64_t> read_number(const char* path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text.empty() || text.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;  // also "max": no limit
  try {
    return std::stoull(text);
  } catch (...) {
    return std::nullopt;
  }
}

}  // namespace

std::optional<uint64_t> available_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key, rest;
  uint64_t kib = 0;
  std::optional<uint64_t> avail;
  while (in >> key >> kib) {
    std::getline(in, rest);
    if (key == "MemAvailable:") {
      avail = kib * 1024;
      break;
    }
  }
  if (!avail) return std::nullopt;
  auto limit = read_number("/sys/fs/cgroup/memory.max");
  auto used = read_number("/sys/fs/cgroup/memory.current");
  if (!limit) {
    limit = read_number("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    used = read_number("/sys/fs/cgroup/memory/memory.usage_in_bytes");
  }
  if (limit && used) *avail = std::min(*avail, *limit > *used ? *limit - *used : uint64_t{0});
  return avail;
}

std::string size_text(uint64_t bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    ++u;
  }
  char out[32];
  std::snprintf(out, sizeof out, u ? "%.1f %s" : "%.0f %s", v, units[u]);
  return out;
}

void check_memory(uint64_t bytes, const std::string& what) {
  auto available = available_memory();
  if (available && bytes > *available)
    throw Error(what + " needs " + size_text(bytes) + ", more than the " + size_text(*available) +
                " of memory this machine has available");
}

}  // namespace ktf
