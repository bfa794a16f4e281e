// The SDK's dataset base (ktf::IndexedDataset): a plugin dataset that implements split_size() and
// fetch() gets batching by index, a seeded per-epoch order, a saveable position, transforms on
// training batches only, the unaugmented view and its raw examples.
#include <gtest/gtest.h>
#include <ktf/data.h>

namespace {

using ktf::Batch;
using ktf::Json;

/// Example i of "train" is the uint8 image filled with i, label i % 3; "valid" has 4 examples.
class Counting : public ktf::IndexedDataset {
 public:
  explicit Counting(ktf::PipelineConfig config) : IndexedDataset(std::move(config)) { init(); }
  int64_t split_size(const std::string& split) const override {
    return split == "train" ? 10 : split == "valid" ? 4 : 0;
  }
  Batch fetch(const std::string& split, const torch::Tensor& indices) override {
    ++fetches;
    auto offset = split == "valid" ? 100 : 0;
    auto values = (indices + offset).to(torch::kUInt8);
    return {values.view({-1, 1, 1, 1}).expand({-1, 1, 2, 2}).contiguous(), indices % 3};
  }
  int64_t num_classes() const override { return 3; }
  int fetches = 0;
};

/// Adds 1000 to every input: shows where transforms apply.
struct AddThousand : ktf::Transform {
  Batch apply(Batch b, torch::Generator&) override {
    b.input = b.input.to(torch::kLong) + 1000;
    return b;
  }
};

ktf::PipelineConfig config(bool shuffle, uint64_t seed = 7) {
  ktf::PipelineConfig c;
  c.batch_size = 4;
  c.valid_batch_size = 3;
  c.shuffle = shuffle;
  c.seed = seed;
  c.prefetch = 0;
  c.scale = false;  // raw uint8 values: the tests read the example indices back
  c.to_float = false;
  return c;
}

/// The first pixel of every example of one epoch, in order.
std::vector<int64_t> epoch_values(ktf::BatchStream& s, int64_t epoch) {
  std::vector<int64_t> out;
  s.start_epoch(epoch);
  while (auto b = s.next()) {
    auto first = b->input.flatten(1).select(1, 0).to(torch::kLong);
    for (int64_t i = 0; i < first.size(0); ++i) out.push_back(first[i].item<int64_t>());
  }
  return out;
}

TEST(DatasetBase, BatchesByIndexInASeededOrderPerEpoch) {
  auto data = std::make_shared<Counting>(config(true));
  EXPECT_EQ(data->input_shape(), (std::vector<int64_t>{1, 2, 2}));
  auto train = data->train();
  EXPECT_EQ(train->num_batches(), 3);  // 4 + 4 + 2
  EXPECT_EQ(train->num_examples(), 10);
  auto e0 = epoch_values(*train, 0), e1 = epoch_values(*train, 1);
  std::vector<int64_t> sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_NE(e0, e1) << "every epoch is reshuffled";
  auto same = std::make_shared<Counting>(config(true));
  EXPECT_EQ(epoch_values(*same->train(), 0), e0) << "the order is a function of the seed";
  auto prefetched = config(true);
  prefetched.prefetch = 2;  // fetched on the background thread: the same batches
  EXPECT_EQ(epoch_values(*std::make_shared<Counting>(prefetched)->train(), 0), e0);
  auto other = std::make_shared<Counting>(config(true, 8));
  EXPECT_NE(epoch_values(*other->train(), 0), e0);
  auto ordered = std::make_shared<Counting>(config(false));
  EXPECT_EQ(epoch_values(*ordered->train(), 3), sorted);
  // The default preprocessing scales uint8 to [0, 1].
  auto scaled_config = config(false);
  scaled_config.scale = true;
  scaled_config.to_float = true;
  auto scaled = std::make_shared<Counting>(scaled_config)->train();
  scaled->start_epoch(0);
  auto b = scaled->next();
  EXPECT_EQ(b->input.scalar_type(), torch::kFloat);
  EXPECT_FLOAT_EQ(b->input.max().item<float>(), 3.0f / 255.0f);
}

TEST(DatasetBase, APositionRestoresTheSameRemainingBatches) {
  auto data = std::make_shared<Counting>(config(true));
  auto a = data->train();
  a->start_epoch(2);
  a->next();
  ktf::State state;
  a->save_state(state);
  std::vector<int64_t> rest_a;
  while (auto b = a->next()) rest_a.push_back(b->target.sum().item<int64_t>());
  auto b = std::make_shared<Counting>(config(true))->train();
  b->load_state(state);
  std::vector<int64_t> rest_b;
  while (auto batch = b->next()) rest_b.push_back(batch->target.sum().item<int64_t>());
  EXPECT_EQ(rest_a, rest_b);
  EXPECT_EQ(rest_a.size(), 2u);
}

TEST(DatasetBase, TransformsOnTrainingOnlyAndRawExamplesAsStored) {
  auto c = config(true);
  c.transforms.push_back(std::make_shared<AddThousand>());
  auto data = std::make_shared<Counting>(c);
  auto augmented = epoch_values(*data->train(), 0);
  for (auto v : augmented) EXPECT_GE(v, 1000);
  for (auto v : epoch_values(*data->train_unaugmented(), 0)) EXPECT_LT(v, 1000);
  auto valid = data->valid();
  EXPECT_EQ(valid->num_batches(), 2);  // valid_batch_size 3
  for (auto v : epoch_values(*valid, 0)) EXPECT_LT(v, 1000);
  // Raw: stored order, uint8, unscaled, untransformed.
  auto raw = data->raw_split("train");
  raw->start_epoch(0);
  auto first = raw->next();
  EXPECT_EQ(first->input.scalar_type(), torch::kUInt8);
  EXPECT_TRUE(torch::equal(first->input.flatten(1).select(1, 0).to(torch::kLong),
                           torch::arange(4, torch::kLong)));
  auto raw_valid = epoch_values(*data->raw_split("valid"), 0);
  EXPECT_EQ(raw_valid, (std::vector<int64_t>{100, 101, 102, 103}));
  EXPECT_THROW(data->raw_split("test"), ktf::Error);
}

TEST(DatasetBase, StreamsKeepTheirDatasetAlive) {
  std::shared_ptr<ktf::BatchStream> stream;
  {
    auto data = std::make_shared<Counting>(config(false));
    stream = data->train();
  }
  EXPECT_EQ(epoch_values(*stream, 0).size(), 10u);
}

}  // namespace
