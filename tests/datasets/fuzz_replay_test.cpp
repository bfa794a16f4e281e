// Replays the fuzz targets' committed inputs (fuzz/corpus/<target>: the seeds, and
// fuzz/regressions/<target>: every input a fuzzer found to crash, hang or escape without a
// ktf::Error, once fixed) through the same target code as scripts/fuzz.sh, built into the normal
// test suite: a regression aborts this test.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "../../fuzz/fuzz_common.h"

namespace {

namespace fs = std::filesystem;

TEST(FuzzReplay, EveryCorpusAndRegressionInputEndsCleanly) {
  const auto& targets = ktf::fuzz::targets();
  ASSERT_EQ(targets.size(), 6u);
  for (const auto& [name, run] : targets) {
    size_t inputs = 0;
    for (const char* where : {"corpus", "regressions"}) {
      const fs::path dir = fs::path(KTF_SOURCE_DIR) / "fuzz" / where / name;
      if (!fs::is_directory(dir)) continue;
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        std::ifstream in(f, std::ios::binary);
        const std::string data((std::istreambuf_iterator<char>(in)), {});
        SCOPED_TRACE(f.string());
        EXPECT_EQ(run(reinterpret_cast<const uint8_t*>(data.data()), data.size()), 0);
        ++inputs;
      }
    }
    EXPECT_GE(inputs, 3u) << name << ": its seed corpus is missing";
  }
}

}  // namespace
