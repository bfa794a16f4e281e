// What each rank of a distributed run reads (data_shard()): the SDK's dataset base and the TFRecord
// reader split every epoch's order among the ranks, so that per-rank batch b of all ranks is the
// global batch b of one process with the ranks' batches together; the engine splits any other
// stream by batch.
#include <gtest/gtest.h>
#include <ktf/cycle.h>
#include <ktf/data.h>
#include <ktf/example.h>
#include <ktf/tfrecord.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "plugins_fixture.h"

namespace {

using ktf::Batch;
using ktf::DataShard;

/// Restores "not distributed" when a test ends.
struct ShardScope {
  explicit ShardScope(DataShard s) { ktf::set_data_shard(s); }
  ~ShardScope() { ktf::set_data_shard({}); }
};

/// `n` training examples whose single value is their index, `valid` validation ones.
std::shared_ptr<ktf::TensorDataset> numbered(int64_t n, int64_t valid, int64_t batch) {
  ktf::PipelineConfig c;
  c.batch_size = batch;
  c.valid_batch_size = batch;
  c.seed = 11;
  c.prefetch = 0;
  c.scale = false;
  c.to_float = false;
  auto ids = [](int64_t k, int64_t offset) {
    return ktf::TensorSplit{(torch::arange(k) + offset).view({k, 1}),
                            torch::zeros({k}, torch::kLong)};
  };
  return std::make_shared<ktf::TensorDataset>(ids(n, 0), ids(valid, 1000), c, 2,
                                              std::vector<std::string>{});
}

/// The example values of every batch of one epoch.
std::vector<std::vector<int64_t>> batches(ktf::BatchStream& s, int64_t epoch) {
  std::vector<std::vector<int64_t>> out;
  s.start_epoch(epoch);
  while (auto b = s.next()) {
    auto v = b->input.flatten().to(torch::kLong).contiguous();
    out.emplace_back(v.data_ptr<int64_t>(), v.data_ptr<int64_t>() + v.numel());
  }
  return out;
}

std::vector<int64_t> sorted(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(DataShard, RanksReadDisjointHalvesWhoseBatchesTogetherAreTheGlobalBatches) {
  auto whole = numbered(70, 0, 8);  // one process, batch 8
  const auto global = batches(*whole->train(), 3);
  std::vector<std::vector<std::vector<int64_t>>> per_rank;
  for (int64_t r = 0; r < 2; ++r) {
    ShardScope scope({r, 2});
    auto ds = numbered(70, 0, 4);  // two ranks, batch 4 each
    auto stream = ds->train();
    EXPECT_EQ(stream->num_examples(), 35);
    EXPECT_EQ(stream->num_batches(), 9);
    per_rank.push_back(batches(*stream, 3));
    ASSERT_EQ(per_rank.back().size(), 9u);
  }
  ASSERT_EQ(global.size(), 9u);
  std::set<int64_t> seen;
  for (size_t b = 0; b < global.size(); ++b) {
    std::vector<int64_t> together = per_rank[0][b];
    together.insert(together.end(), per_rank[1][b].begin(), per_rank[1][b].end());
    EXPECT_EQ(sorted(together), sorted(global[b])) << "batch " << b;
    seen.insert(together.begin(), together.end());
  }
  EXPECT_EQ(seen.size(), 70u);  // every example once
}

TEST(DataShard, UnevenSplitsLeaveAtMostRanksMinusOneOutOfTrainingAndNoneOutOfValidation) {
  std::set<int64_t> train, valid;
  for (int64_t r = 0; r < 3; ++r) {
    ShardScope scope({r, 3});
    auto ds = numbered(11, 7, 2);
    auto t = batches(*ds->train(), 0);
    int64_t n = 0;
    for (auto& b : t) {
      n += static_cast<int64_t>(b.size());
      train.insert(b.begin(), b.end());
    }
    EXPECT_EQ(n, 3) << "rank " << r;  // floor(11 / 3): every rank as many batches
    EXPECT_EQ(ds->valid()->num_examples(), r == 0 ? 3 : 2);
    for (auto& b : batches(*ds->valid(), 0)) valid.insert(b.begin(), b.end());
  }
  EXPECT_EQ(train.size(), 9u);
  EXPECT_EQ(valid.size(), 7u);
  EXPECT_EQ(ktf::shard_size(11, {2, 3}, true), 3);
  EXPECT_EQ(ktf::shard_size(1, {2, 3}, false), 0);
}

TEST(DataShard, ARankResumesItsOwnPositionFromTheStreamState) {
  ShardScope scope({1, 2});
  auto ds = numbered(40, 0, 3);
  auto a = ds->train();
  a->start_epoch(2);
  a->next();
  a->next();
  ktf::State s;
  a->save_state(s);
  auto expected = a->next();
  auto b = ds->train();
  b->load_state(s);
  auto got = b->next();
  ASSERT_TRUE(expected && got);
  EXPECT_TRUE(torch::equal(expected->input, got->input));
}

/// Three TFRecord files of 5, 4 and 3 records whose "x" is the record's global number.
std::vector<std::string> tfrecord_files() {
  const std::string dir = ktf::test::scratch_dir("shard_tfrecord");
  std::vector<std::string> files;
  int64_t id = 0;
  for (int f = 0; f < 3; ++f) {
    files.push_back(dir + "/part-" + std::to_string(f) + ".tfrecord");
    ktf::TFRecordWriter w(files.back());
    for (int i = 0; i < 5 - f; ++i, ++id)
      w.write(ktf::serialize_example({{"x", ktf::Feature::float_list({static_cast<float>(id)})},
                                      {"y", ktf::Feature::int64_list({0})}}));
  }
  return files;
}

std::shared_ptr<ktf::Dataset> tfrecord(const std::vector<std::string>& files,
                                       const std::string& shard_by) {
  ktf::Json list = ktf::Json::array();
  for (const auto& f : files) list.as_array().push_back(f);
  return ktf::test::build<ktf::Dataset>(ktf::Json::object(
      {{"ktf.datasets.from_tfrecord",
        ktf::Json::object(
            {{"files", list},
             {"validation_files", list},
             {"batch_size", 2},
             {"seed", 5},
             {"prefetch", 0},
             {"shard_by", shard_by},
             {"image_key", "x"},
             {"label_key", "y"},
             {"features",
              ktf::Json::object({{"x", ktf::Json::object({{"dtype", "float32"},
                                                          {"shape", ktf::Json::array({1})},
                                                          {"encoding", "float"}})},
                                 {"y", ktf::Json::object({{"dtype", "int64"},
                                                          {"shape", ktf::Json::array()},
                                                          {"encoding", "int64"}})}})}})}}));
}

TEST(DataShard, TfrecordByRecordSplitsTheShuffledOrderAmongRanks) {
  const auto files = tfrecord_files();
  const auto global = batches(*tfrecord(files, "record")->train(), 1);  // batch 2 alone
  std::vector<std::vector<std::vector<int64_t>>> per_rank;
  std::set<int64_t> valid;
  for (int64_t r = 0; r < 2; ++r) {
    ShardScope scope({r, 2});
    auto ds = tfrecord(files, "record");
    EXPECT_EQ(ds->train()->num_examples(), 6);
    per_rank.push_back(batches(*ds->train(), 1));
    for (auto& b : batches(*ds->valid(), 1)) valid.insert(b.begin(), b.end());
  }
  ASSERT_EQ(per_rank[0].size(), 3u);
  ASSERT_EQ(per_rank[1].size(), 3u);
  // Per-rank batch b of both ranks holds the records of global batches 2b and 2b + 1.
  for (size_t b = 0; b < 3; ++b) {
    std::vector<int64_t> together = per_rank[0][b], expected = global[2 * b];
    together.insert(together.end(), per_rank[1][b].begin(), per_rank[1][b].end());
    expected.insert(expected.end(), global[2 * b + 1].begin(), global[2 * b + 1].end());
    EXPECT_EQ(sorted(together), sorted(expected)) << "batch " << b;
  }
  EXPECT_EQ(valid.size(), 12u);
}

TEST(DataShard, TfrecordByFileReadsOnlyItsFilesAsManyRecordsAsTheSmallestShare) {
  const auto files = tfrecord_files();
  for (int64_t r = 0; r < 2; ++r) {
    ShardScope scope({r, 2});
    auto ds = tfrecord(files, "file");
    std::vector<int64_t> got;
    for (auto& b : batches(*ds->train(), 0)) got.insert(got.end(), b.begin(), b.end());
    // Rank 0 has files 0 and 2 (8 records), rank 1 file 1 (4): both read 4.
    ASSERT_EQ(got.size(), 4u) << "rank " << r;
    EXPECT_EQ(ds->train()->num_examples(), 4);
    for (int64_t v : got) {
      const bool in_file_1 = v >= 5 && v < 9;
      EXPECT_EQ(in_file_1, r == 1) << "rank " << r << " read record " << v;
    }
  }
  ShardScope scope({0, 4});
  try {
    tfrecord(files, "file")->train();
    ADD_FAILURE() << "3 files among 4 ranks were accepted";
  } catch (const ktf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("shard_by file: 3 file(s) cannot be split among 4 ranks"),
              std::string::npos)
        << e.what();
  }
}

/// A plugin's dataset with a stream of its own (no ShardedStream): batches numbered 0, 1, ...
class OwnStream : public ktf::BatchStream {
 public:
  explicit OwnStream(int64_t batches) : batches_(batches) {}
  void start_epoch(int64_t) override { next_ = 0; }
  std::optional<Batch> next() override {
    if ((batches_ >= 0 && next_ >= batches_) || (batches_ < 0 && next_ >= 7)) return std::nullopt;
    auto v = torch::full({1, 1}, static_cast<double>(next_++));
    return Batch{v, torch::zeros({1}, torch::kLong)};
  }
  int64_t num_batches() const override { return batches_; }
  int64_t num_examples() const override { return batches_; }
  void save_state(ktf::State& s) override { s.set("next", next_); }
  void load_state(const ktf::State& s) override { next_ = s.at("next").as_int(); }

 private:
  int64_t batches_, next_ = 0;
};

class OwnDataset : public ktf::Dataset {
 public:
  explicit OwnDataset(int64_t batches) : batches_(batches) {}
  std::shared_ptr<ktf::BatchStream> train() override {
    return std::make_shared<OwnStream>(batches_);
  }
  std::shared_ptr<ktf::BatchStream> valid() override { return std::make_shared<OwnStream>(5); }
  std::vector<int64_t> input_shape() const override { return {1}; }

 private:
  int64_t batches_;
};

TEST(DataShard, TheEngineSplitsAStreamThatDoesNotShardItselfByBatch) {
  for (int64_t r = 0; r < 2; ++r) {
    ShardScope scope({r, 2});
    ktf::Cycle cycle;
    cycle.label = "cycle 1";
    cycle.dataset = std::make_shared<OwnDataset>(7);
    auto tc = cycle.train_context();
    std::vector<int64_t> got;
    for (auto& b : batches(*tc.train_data, 0)) got.push_back(b.at(0));
    EXPECT_EQ(got, r == 0 ? (std::vector<int64_t>{0, 2, 4}) : (std::vector<int64_t>{1, 3, 5}));
    EXPECT_EQ(tc.train_data->num_batches(), 3);
    std::vector<int64_t> valid;
    for (auto& b : batches(*tc.valid_data, 0)) valid.push_back(b.at(0));
    EXPECT_EQ(valid, r == 0 ? (std::vector<int64_t>{0, 2, 4}) : (std::vector<int64_t>{1, 3}));
  }
  // A state saved alone at an epoch end loads into the split stream, and back (a resume from an
  // epoch end with another number of ranks): the next epoch is read as the new split says.
  ktf::Cycle alone;
  alone.label = "cycle 1";
  alone.dataset = std::make_shared<OwnDataset>(7);
  auto next_epoch = [](ktf::BatchStream& s) {
    std::vector<int64_t> got;
    for (auto& b : batches(s, 1)) got.push_back(b.at(0));
    return got;
  };
  ktf::State plain, split;
  {
    auto tc = alone.train_context();
    batches(*tc.train_data, 0);
    tc.train_data->save_state(plain);
  }
  {
    ShardScope two({1, 2});
    auto tc = alone.train_context();
    tc.train_data->load_state(plain);
    EXPECT_EQ(next_epoch(*tc.train_data), (std::vector<int64_t>{1, 3, 5}));
    tc.train_data->save_state(split);
  }
  {
    auto tc = alone.train_context();
    tc.train_data->load_state(split);
    EXPECT_EQ(next_epoch(*tc.train_data), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  }

  ShardScope scope({0, 2});
  ktf::Cycle cycle;
  cycle.label = "cycle 1";
  cycle.dataset = std::make_shared<OwnDataset>(-1);  // a stream of unknown length
  try {
    cycle.train_context();
    ADD_FAILURE() << "a training stream of unknown length was split";
  } catch (const ktf::Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "distributed training: the training stream does not know its number of batches"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
