#include <gtest/gtest.h>
#include <ktf/error.h>
#include <ktf/json.h>

namespace {

TEST(Json, ParsesCommentsAndTrailingCommas) {
  auto j = ktf::Json::parse(R"(
    # hash comment
    [ { "a": 1, // line comment
        "b": [1, 2.5, "x", true, null,], /* block
        comment */ "url": "http://x#y//z",
      },
    ])");
  ASSERT_TRUE(j.is_array());
  const auto& c = j.as_array()[0];
  EXPECT_EQ(c.at("a").as_int(), 1);
  EXPECT_EQ(c.at("b").size(), 5u);
  EXPECT_DOUBLE_EQ(c.at("b").as_array()[1].as_number(), 2.5);
  EXPECT_EQ(c.at("url").as_string(), "http://x#y//z");
}

TEST(Json, ParseErrorReportsLineColumnAndQuotesLine) {
  // A missing comma at a line's end is Hjson (the config dialect); a missing colon is an error.
  EXPECT_EQ(ktf::Json::parse("{\n  \"a\": 1\n  \"b\": 2\n}", "cfg.json"),
            ktf::Json::object({{"a", 1}, {"b", 2}}));
  try {
    ktf::Json::parse("{\n  \"a\": 1\n  \"b\" 2\n}", "cfg.json");
    FAIL() << "no error";
  } catch (const ktf::Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("cfg.json:3:7: "), std::string::npos) << m;
    EXPECT_NE(m.find("Expecting ':' delimiter"), std::string::npos) << m;
    EXPECT_NE(m.find("\n    \"b\" 2\n        ^"), std::string::npos) << m;
  }
}

TEST(Json, DumpRoundTripsAndKeepsOrder) {
  auto j = ktf::Json::object({{"z", 1}, {"a", ktf::Json::array({0.1, "s\"q", nullptr, false})}});
  EXPECT_EQ(j.dump(), R"({"z": 1, "a": [0.1, "s\"q", null, false]})");
  EXPECT_EQ(ktf::Json::parse(j.dump(2)), j);
}

TEST(Json, TypeErrorsSayExpectedAndGot) {
  auto j = ktf::Json::parse(R"({"n": "ten"})");
  try {
    j.at("n").as_int();
    FAIL();
  } catch (const ktf::Error& e) {
    EXPECT_STREQ(e.what(), "expected integer, got string \"ten\"");
  }
}

TEST(Json, MissingFileNamesPath) {
  try {
    ktf::Json::parse_file("/nonexistent/cfg.json");
    FAIL();
  } catch (const ktf::Error& e) {
    EXPECT_STREQ(e.what(), "cannot read config file '/nonexistent/cfg.json'");
  }
}

}  // namespace
