// Checkpoint state (ktf/state.h), the checkpoint store (ktf/checkpoint.h) and config diffs.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "ktf/checkpoint.h"
#include "ktf/config.h"
#include "ktf/state.h"
#include "plugins_fixture.h"

namespace {
namespace fs = std::filesystem;
using ktf::Json;
using ktf::State;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(State, RoundTripsValuesExactNumbersTensorsAndNestedStates) {
  State s;
  s.set("epoch", 3);
  s.set("name", "x");
  s.set_number("third", 1.0 / 3.0);
  s.set_number("inf", HUGE_VAL);
  s.set_number("minus_inf", -HUGE_VAL);
  s.set_number("nan", std::nan(""));
  s.set_tensor("weights", torch::randn({3, 4}, torch::kDouble));
  s.set_tensor("none", torch::Tensor());
  s.child("inner").set_tensor("counts", torch::arange(5));
  s.child("inner").child("deeper").set("ok", true);
  State r = s.round_trip();
  EXPECT_TRUE(r == s);
  EXPECT_EQ(r.at("epoch").as_int(), 3);
  EXPECT_EQ(r.number("third"), 1.0 / 3.0);
  EXPECT_EQ(r.number("inf"), HUGE_VAL);
  EXPECT_EQ(r.number("minus_inf"), -HUGE_VAL);
  EXPECT_TRUE(std::isnan(r.number("nan")));
  EXPECT_TRUE(torch::equal(r.tensor("weights"), s.tensor("weights")));
  EXPECT_FALSE(r.tensor("none").defined());
  EXPECT_TRUE(r.child("inner").child("deeper").at("ok").as_bool());
  State other = s;
  other.child("inner").set_tensor("counts", torch::arange(5) + 1);
  EXPECT_FALSE(other == s);
}

TEST(State, AMissingKeyNamesItself) {
  State s;
  try {
    s.at("best");
    FAIL();
  } catch (const ktf::Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "the checkpoint state has no value 'best' (was it saved by a different version of "
              "this component?)");
  }
  EXPECT_THROW(s.tensor("t"), ktf::Error);
  EXPECT_THROW(static_cast<const State&>(s).child("c"), ktf::Error);
}

TEST(State, ModuleStateCopiesIntoTheExistingTensors) {
  torch::nn::Linear a(3, 2), b(3, 2);
  State s;
  ktf::save_module_state(s, *a);
  const void* storage = b->weight.data_ptr();
  ktf::load_module_state(s.round_trip(), *b);
  EXPECT_TRUE(torch::equal(a->weight, b->weight));
  EXPECT_EQ(b->weight.data_ptr(), storage) << "an optimizer's view of the parameter stays valid";
  torch::nn::Linear c(4, 2);
  try {
    ktf::load_module_state(s, *c);
    FAIL();
  } catch (const ktf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("the checkpoint's parameter 'weight' has shape [2, 3], "
                                         "the model's [2, 4]"),
              std::string::npos)
        << e.what();
  }
}

TEST(RunLog, ALoadedStateCutsTheFileBackToItsLengthAtTheCheckpoint) {
  const fs::path path = ktf::test::scratch_dir("runlog") + "/log.csv";
  ktf::RunLog log;
  log.open(path, true);
  log.write("a\n");
  State at;
  log.save_state(at);  // synced: "a\n"
  log.write("b\n");
  log.close();
  EXPECT_EQ(read_file(path), "a\nb\n");
  ktf::RunLog resumed;
  resumed.open(path, /*fresh=*/false);
  resumed.load_state(at);
  resumed.write("b2\n");
  resumed.close();
  EXPECT_EQ(read_file(path), "a\nb2\n");
  fs::resize_file(path, 1);
  ktf::RunLog shorter;
  shorter.open(path, false);
  shorter.load_state(at);  // a later cycle replaced the file: continued as it is
  EXPECT_TRUE(shorter.shorter_than_checkpoint());
  shorter.write("c\n");
  shorter.close();
  EXPECT_EQ(read_file(path), "ac\n");
}

TEST(CheckpointStore, ChoosesTheNewestCompleteCheckpointAndKeepsK) {
  const fs::path run = ktf::test::scratch_dir("ckpt_store");
  fs::remove_all(run / "checkpoints");
  ktf::CheckpointStore store(run);
  EXPECT_FALSE(store.newest());
  for (int i = 1; i <= 5; ++i) {
    State s;
    s.set("i", i);
    auto info = store.write(s, "test", Json::object({{"cycle", 1}, {"epoch", i}}), 3);
    EXPECT_EQ(info.sequence, i);
  }
  int manifests = 0;
  for (const auto& e : fs::directory_iterator(run / "checkpoints"))
    manifests += e.path().extension() == ".json";
  EXPECT_EQ(manifests, 3);
  auto newest = store.newest();
  ASSERT_TRUE(newest);
  EXPECT_EQ(store.read(*newest).at("i").as_int(), 5);
  // A torn state file (shorter than its manifest says) and a missing manifest are passed over.
  fs::resize_file(run / "checkpoints/ckpt-00000005.pt", 10);
  fs::remove(run / "checkpoints/ckpt-00000004.json");
  std::vector<std::string> why;
  newest = store.newest([&](const std::string& line) { why.push_back(line); });
  ASSERT_TRUE(newest);
  EXPECT_EQ(newest->sequence, 3);
  ASSERT_EQ(why.size(), 2u);
  EXPECT_NE(why[0].find("checkpoint ckpt-00000005 skipped: its state file has 10 bytes"),
            std::string::npos)
      << why[0];
  EXPECT_EQ(why[1],
            "checkpoint ckpt-00000004 skipped: its manifest is missing (it was being written when "
            "the run stopped)");
  store.discard_after(3);
  EXPECT_FALSE(fs::exists(run / "checkpoints/ckpt-00000005.pt"));
  EXPECT_FALSE(fs::exists(run / "checkpoints/ckpt-00000004.pt"));
}

TEST(CheckpointStore, RngStateRoundTrips) {
  State s;
  torch::manual_seed(11);
  ktf::save_rng_state(s);
  auto a = torch::rand({4});
  torch::manual_seed(99);
  ktf::load_rng_state(s.round_trip());
  EXPECT_TRUE(torch::equal(torch::rand({4}), a));
}

TEST(JsonDiff, NamesEveryChangedLeafByJsonPointer) {
  Json a = Json::parse(R"([{"loss": {"x": {"w": 1}}, "list": [1, 2, 3], "a/b": 1, "same": 2.0}])");
  Json b = Json::parse(
      R"([{"loss": {"x": {"w": 2}}, "list": [1, 2], "a/b": 2, "same": 2, "new": null}])");
  auto changes = ktf::json_diff(a, b);
  EXPECT_EQ(ktf::format_changes(changes),
            "  /0/loss/x/w: 1 -> 2\n  /0/list/2: 3 -> (absent)\n  /0/a~1b: 1 -> 2\n"
            "  /0/new: (absent) -> null\n");
  EXPECT_TRUE(ktf::json_diff(a, a).empty());
}

}  // namespace
