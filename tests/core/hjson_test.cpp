// Hjson, the config dialect (sdk/src/hjson.cpp): the original tool's README example, each
// addition to JSON, line:column errors, the limits (depth, size, finite numbers, regular files),
// and a cross-check against the reference implementation (PyPI's hjson, installed by
// scripts/setup.sh with KTF_SETUP_TESTS=1) on the corpus in fixtures/hjson: both give the same
// values, or both refuse.
#include <gtest/gtest.h>
#include <ktf/error.h>
#include <ktf/json.h>
#include <plugins_fixture.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace fs = std::filesystem;
using ktf::Json;

namespace {

const std::string kCorpus = std::string(KTF_SOURCE_DIR) + "/tests/core/fixtures/hjson";

std::string error_of(const std::string& text, const std::string& source = "cfg.hjson") {
  try {
    Json::parse(text, source);
  } catch (const ktf::Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Hjson, TheOriginalReadmesTwoCycleExampleParses) {
  // Its first cycle's train loop lacks a comma after "callbacks": [...] (the line ends in a
  // comment), which strict JSON refuses.
  Json cfg = Json::parse_file(kCorpus + "/original_readme_two_cycles.hjson");
  ASSERT_EQ(cfg.size(), 2u);
  const Json& loop = cfg.as_array()[0].at("train_loop").at("ktf.train.KerasTrainLoop");
  EXPECT_EQ(loop.at("num_epochs").as_int(), 10);
  EXPECT_EQ(loop.at("freeze_submodels"), Json::array({"base_model"}));
  EXPECT_EQ(loop.at("callbacks").size(), 1u);
  EXPECT_DOUBLE_EQ(cfg.as_array()[1]
                       .at("optimizer")
                       .at("tf.keras.optimizers.Adam")
                       .at("learning_rate")
                       .as_number(),
                   0.00025);
}

TEST(Hjson, EachAdditionToJsonReadsAsTheReferenceReadsIt) {
  Json j = Json::parse_file(kCorpus + "/features.hjson");
  EXPECT_EQ(j.at("name").as_string(), "ktf run 7");
  EXPECT_EQ(j.at("path").as_string(),
            "/tmp/ktf/tensorboard   # a hash inside a quoteless string is part of it");
  EXPECT_EQ(j.at("url").as_string(), "http://example.com/a#b");
  EXPECT_EQ(j.at("sizes"), Json::array({64, 128, 256}));
  EXPECT_DOUBLE_EQ(j.at("rate").as_number(), 0.0005);
  EXPECT_DOUBLE_EQ(j.at("neg").as_number(), -1.5e-3);
  EXPECT_TRUE(j.at("flag").as_bool());
  EXPECT_TRUE(j.at("nothing").is_null());
  EXPECT_EQ(j.at("not_a_number").as_string(), "1 2");
  EXPECT_EQ(j.at("leading_zero").as_string(), "01");
  EXPECT_EQ(j.at("words").as_string(), "hello, world");
  EXPECT_FALSE(j.at("literal_then_comment").as_bool());
  EXPECT_EQ(j.at("number_then_comment").as_int(), 12);
  EXPECT_EQ(j.at("block_after").as_int(), 3);
  // Not numbers in Hjson: a learning rate of Infinity is a string, which a spec refuses.
  EXPECT_EQ(j.at("inf").as_string(), "Infinity");
  EXPECT_EQ(j.at("nan").as_string(), "NaN");
  EXPECT_EQ(j.at("quoted").as_string(), "a \"quoted\" value\twith escapes \xc3\xa9");
  EXPECT_EQ(j.at("single").as_string(), "single-quoted with a \" inside");
  EXPECT_EQ(j.at("empty").as_string(), "");
  EXPECT_EQ(j.at("text").as_string(), "first line\n  indented line\nlast line");
  EXPECT_EQ(j.at("inline_ml").as_string(), "one line");
  EXPECT_EQ(j.at("key with spaces").as_int(), 1);
  EXPECT_EQ(j.at("single key").as_int(), 2);
  EXPECT_EQ(j.at("nested").at("c").at("d").as_string(), "e");
  EXPECT_EQ(j.at("mixed"), Json::array({"x", "y", 3, true, nullptr}));
  Json root = Json::parse_file(kCorpus + "/braceless_root.hjson");
  EXPECT_EQ(root.at("loss").as_string(), "ktf.losses.CrossEntropy");
  EXPECT_EQ(root.at("model").at("ktf.networks.MLP").at("hidden"), Json::array({16}));
  // Strict JSON stays valid and means the same.
  Json strict = Json::parse_file(kCorpus + "/strict.json");
  EXPECT_EQ(strict.at("s").as_string(), "tab\there \xf0\x9f\x98\x80 / \\");
  EXPECT_EQ(strict.at("big").as_int(), 1234567890123);
}

TEST(Hjson, ErrorsGiveLineColumnTheLineAndACaret) {
  EXPECT_EQ(error_of("{\n  \"a\" 1\n}"),
            "cfg.hjson:2:7: Expecting ':' delimiter\n    \"a\" 1\n        ^");
  EXPECT_NE(error_of("{\n  my key: 1\n}").find("cfg.hjson:2:5: Found whitespace in your key name"),
            std::string::npos);
  EXPECT_NE(error_of("{\n  a: ,\n}").find("cfg.hjson:2:6: Found a punctuator character ','"),
            std::string::npos);
  EXPECT_NE(error_of("{\n  a: [1, 2]\n").find("End of input while parsing an object"),
            std::string::npos);
  EXPECT_NE(error_of("{a: \"open\n}").find("cfg.hjson:1:10: Invalid control character"),
            std::string::npos);
  // A line of a megabyte is quoted by at most 100 characters around the column.
  const std::string long_line = "{\"a\": \"" + std::string(1 << 20, 'x') + "\" \"b\" 1}";
  const std::string m = error_of(long_line);
  EXPECT_NE(m.find("Expecting ':' delimiter"), std::string::npos) << m.substr(0, 200);
  EXPECT_LT(m.size(), 300u);
}

TEST(Hjson, LimitsDepthFiniteNumbersAndFiles) {
  // 50 000 levels: a clear error, no stack overflow (the fast path and the Hjson reader alike).
  for (const std::string& open :
       {std::string(50000, '['), std::string("{\"a\":").append(std::string(49999, '['))}) {
    const std::string m = error_of(open);
    EXPECT_NE(m.find("nested deeper than 512 objects and arrays"), std::string::npos)
        << m.substr(0, 200);
  }
  EXPECT_EQ(Json::parse(std::string(512, '[') + std::string(512, ']')).size(), 1u);
  EXPECT_NE(error_of("{a: 1e999}").find("number 1e999 is out of range"), std::string::npos);
  EXPECT_NE(error_of("{\"a\": -1e400}").find("number -1e400 is out of range"), std::string::npos);
  const std::string dir = ktf::test::scratch_dir("hjson_files");
  auto file_error = [](const std::string& path) {
    try {
      Json::parse_file(path);
    } catch (const ktf::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string fifo = dir + "/fifo.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(file_error(fifo), "config file '" + fifo + "' is not a regular file (a FIFO)");
  EXPECT_EQ(file_error("/dev/zero"), "config file '/dev/zero' is not a regular file (a device)");
  EXPECT_EQ(file_error(dir), "config file '" + dir + "' is not a regular file (a directory)");
  const std::string big = dir + "/big.json";
  { std::ofstream(big) << "{}"; }
  fs::resize_file(big, (uintmax_t{64} << 20) + 1);  // sparse: nothing is written
  EXPECT_EQ(file_error(big), "config file '" + big + "' is 64 MiB: a config may be at most 64 MiB");
  EXPECT_EQ(file_error(dir + "/none.json"), "cannot read config file '" + dir + "/none.json'");
}

TEST(Hjson, TheReferenceImplementationAgreesOnTheCorpus) {
  const std::string python = KTF_HJSON_PYTHON;
  ASSERT_TRUE(fs::exists(python)) << python
                                  << " is missing: scripts/setup.sh with KTF_SETUP_TESTS=1 "
                                     "(scripts/test.sh sets it) installs PyPI's hjson there";
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(kCorpus)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 10u);
  std::string args;
  for (const auto& f : files) args += " '" + f.string() + "'";
  const std::string script =
      "import hjson, json, sys\n"
      "for f in sys.argv[1:]:\n"
      "    try:\n"
      "        v = hjson.load(open(f, encoding='utf-8'))\n"
      "        print('OK ' + json.dumps(v, ensure_ascii=False))\n"
      "    except Exception as e:\n"
      "        print('ERROR ' + type(e).__name__)\n";
  const std::string script_path = ktf::test::scratch_dir("hjson_reference") + "/read.py";
  std::ofstream(script_path) << script;
  auto r = ktf::test::run_command(python + " " + script_path + args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::istringstream lines(r.output);
  int refused = 0;
  for (const auto& f : files) {
    std::string line;
    ASSERT_TRUE(std::getline(lines, line)) << "no answer for " << f;
    std::string ours;
    bool ok = true;
    Json value;
    try {
      value = Json::parse_file(f.string());
    } catch (const ktf::Error& e) {
      ok = false;
      ours = e.what();
    }
    if (line.rfind("ERROR", 0) == 0) {
      EXPECT_FALSE(ok) << f.filename() << ": the reference refuses it (" << line << "), ktf reads "
                       << value.dump();
      ++refused;
      continue;
    }
    ASSERT_EQ(line.rfind("OK ", 0), 0u) << line;
    EXPECT_TRUE(ok) << f.filename() << ": the reference reads it, ktf says " << ours;
    if (ok) {
      EXPECT_EQ(value, Json::parse(line.substr(3)))
          << f.filename() << ":\n  ktf:       " << value.dump() << "\n  reference: " << line;
    }
  }
  EXPECT_GE(refused, 5);  // the corpus's bad_* files
}

}  // namespace
