// docs/errors.md is the catalogue of every error a user can meet; each row's example message must
// be asserted by a test. This test reads the catalogue and the test sources and names every row
// whose message no test asserts: a literal part of the row's first `message` (12 characters or
// more between <placeholders>, "…", "...", ": " and " (") must appear in a test's strings.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "paths.h"

namespace {

namespace fs = std::filesystem;

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Every test source with adjacent string literals joined ("a" "b", across lines) and the escapes
/// tests use for › and quotes written out, so that a message split over lines is found whole.
std::string test_sources() {
  std::string all;
  for (const auto& e : fs::recursive_directory_iterator(std::string(KTF_SOURCE_DIR) + "/tests")) {
    const auto ext = e.path().extension();
    if (ext == ".cpp" || ext == ".h" || ext == ".sh" || ext == ".py") all += read(e.path()) + "\n";
  }
  all = std::regex_replace(all, std::regex("\"\\s*\\n\\s*(<<\\s*)?\""), "");
  for (auto [from, to] :
       {std::pair<std::string, std::string>{"\\u203a", "\u203a"}, {"\\\"", "\""}, {"\\n", "\n"}}) {
    for (size_t at = all.find(from); at != std::string::npos; at = all.find(from, at + to.size()))
      all.replace(at, from.size(), to);
  }
  return all;
}

TEST(ErrorsCatalogue, EveryRowsMessageIsAssertedByATest) {
  const std::string sources = test_sources();
  std::istringstream doc(read(std::string(KTF_SOURCE_DIR) + "/docs/errors.md"));
  const std::regex code("`([^`]+)`");
  const std::regex placeholder("<[^>]*>|\u2026|\\.\\.\\.|\\\\\\||: | \\(");
  int rows = 0;
  std::vector<std::string> untested;
  for (std::string line; std::getline(doc, line);) {
    if (line.rfind("| ", 0) != 0 || line.rfind("| exit", 0) == 0) continue;
    const size_t second = line.find(" | ");
    ASSERT_NE(second, std::string::npos) << line;
    const std::string message_cell =
        line.substr(second + 3, line.find(" | ", second + 3) - second - 3);
    std::smatch m;
    ++rows;
    if (!std::regex_search(message_cell, m, code)) {
      untested.push_back("(no `message` in the row) " + line);
      continue;
    }
    const std::string message = m[1];
    // Its literal parts: split at placeholders and where messages chain a context (": ", " (");
    // a test may assert any one of them (a loader test, the part after "plugin '<path>': open:").
    std::vector<std::string> parts;
    for (std::sregex_token_iterator it(message.begin(), message.end(), placeholder, -1), end;
         it != end; ++it) {
      std::string part = *it;
      const size_t first = part.find_first_not_of(" '\":(),;[]"),
                   last = part.find_last_not_of(" '\":(),;[]");
      if (first != std::string::npos && last - first + 1 >= 12)
        parts.push_back(part.substr(first, last - first + 1));
    }
    bool asserted = false;
    for (const auto& part : parts) asserted = asserted || sources.find(part) != std::string::npos;
    if (!asserted) untested.push_back(message);
  }
  EXPECT_GT(rows, 60);
  EXPECT_TRUE(untested.empty()) << untested.size() << " of " << rows
                                << " rows of docs/errors.md have no test asserting their message:\n"
                                << [&] {
                                     std::string out;
                                     for (const auto& u : untested) out += "  " + u + "\n";
                                     return out;
                                   }();
}

}  // namespace
