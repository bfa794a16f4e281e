#include "io.h"

#include <glob.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include <ktf/error.h>
#include <ktf/memory.h>

namespace ktf::datasets {

int64_t first_bad_label(const torch::Tensor& labels, int64_t num_classes) {
  if (!labels.defined() || labels.numel() == 0) return -1;
  const int64_t limit = num_classes > 0 ? num_classes : kMaxInferredClasses;
  auto where = (labels < 0).logical_or(labels >= limit).reshape({-1}).nonzero();
  return where.size(0) == 0 ? -1 : where[0][0].item<int64_t>();
}

std::string not_a_class_index(int64_t label, int64_t num_classes) {
  if (num_classes > 0)
    return " is not a class index from 0 to " + std::to_string(num_classes - 1) + " (num_classes " +
           std::to_string(num_classes) + ")";
  if (label < 0) return " is not a class index (negative)";
  return " is too large for a class index counted from the labels (set num_classes to have more "
         "than " +
         std::to_string(kMaxInferredClasses) + " classes)";
}

std::vector<std::string> expand_globs(const std::vector<std::string>& patterns,
                                      const std::string& arg) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& pattern : patterns) {
    glob_t g;
    std::memset(&g, 0, sizeof g);
    int rc = ::glob(pattern.c_str(), GLOB_ERR, nullptr, &g);
    std::vector<std::string> found;
    if (rc == 0)
      for (size_t i = 0; i < g.gl_pathc; ++i) found.emplace_back(g.gl_pathv[i]);
    globfree(&g);
    if (found.empty()) throw Error(arg + ": no file matches '" + pattern + "'");
    std::sort(found.begin(), found.end());
    for (auto& f : found)
      if (seen.insert(f).second) out.push_back(std::move(f));
  }
  return out;
}

}  // namespace ktf::datasets
