// Small in-test components for the train plugin's tests: a toy network with nested submodules, a
// cross-entropy loss, linearly separable data streams and a TrainContext builder.
#pragma once

#include <gtest/gtest.h>
#include <ktf/train.h>

#include <plugins_fixture.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace ktf::test {

// base_model { stem: Linear(2, 8), layer1 { resample: Linear(8, 8), bn: BatchNorm1d(8) } },
// head: Linear(8, 2) — so "base_model@layer1@resample" names a nested submodule.
struct BlockImpl : torch::nn::Module {
  BlockImpl()
      : resample(register_module("resample", torch::nn::Linear(8, 8))),
        bn(register_module("bn", torch::nn::BatchNorm1d(8))) {}
  torch::Tensor forward(torch::Tensor x) { return torch::relu(bn(resample(x))) + x; }
  torch::nn::Linear resample;
  torch::nn::BatchNorm1d bn;
};
TORCH_MODULE(Block);

struct BaseImpl : torch::nn::Module {
  BaseImpl()
      : stem(register_module("stem", torch::nn::Linear(2, 8))),
        layer1(register_module("layer1", Block())) {}
  torch::Tensor forward(torch::Tensor x) { return layer1(torch::relu(stem(x))); }
  torch::nn::Linear stem;
  Block layer1;
};
TORCH_MODULE(Base);

struct ToyNet : Network {
  ToyNet()
      : base_model(register_module("base_model", Base())),
        head(register_module("head", torch::nn::Linear(8, 2))) {}
  torch::Tensor forward(torch::Tensor x) override { return head(base_model(x)); }
  Base base_model;
  torch::nn::Linear head;
};

struct CrossEntropy : Loss {
  torch::Tensor compute(const torch::Tensor& out, const torch::Tensor& target) override {
    return torch::nn::functional::cross_entropy(out, target.to(torch::kLong));
  }
};

/// Batches of fixed tensors, in order.
class TensorStream : public BatchStream {
 public:
  TensorStream(torch::Tensor x, torch::Tensor y, int64_t batch_size)
      : x_(std::move(x)), y_(std::move(y)), batch_size_(batch_size) {}
  void start_epoch(int64_t) override { pos_ = 0; }
  std::optional<Batch> next() override {
    if (pos_ >= x_.size(0)) return std::nullopt;
    int64_t end = std::min(pos_ + batch_size_, x_.size(0));
    Batch b{x_.slice(0, pos_, end), y_.slice(0, pos_, end)};
    pos_ = end;
    return b;
  }
  int64_t num_batches() const override { return (x_.size(0) + batch_size_ - 1) / batch_size_; }
  int64_t num_examples() const override { return x_.size(0); }

 private:
  torch::Tensor x_, y_;
  int64_t batch_size_, pos_ = 0;
};

/// Linearly separable 2-D points: class 1 when x0 + 2 x1 > 0.
inline std::shared_ptr<TensorStream> separable(int64_t n, int64_t batch_size, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto x = torch::randn({n, 2}, gen);
  auto y = (x.select(1, 0) + 2 * x.select(1, 1) > 0).to(torch::kLong);
  return std::make_shared<TensorStream>(x, y, batch_size);
}

/// One epoch's record, as TrainContext::record passes it.
struct Record {
  std::string phase;
  int64_t epoch;
  Logs logs;
};

/// A TrainContext over ToyNet and separable data; records go to `records`.
struct Harness {
  explicit Harness(const std::string& name, uint64_t seed = 1) : builder(plugins()) {
    torch::manual_seed(seed);
    run_dir = scratch_dir("train/" + name);
    builder.num_classes = 2;
    builder.input_shape = {2};
    builder.run_dir = run_dir;
    model = std::make_shared<ToyNet>();
    ctx.quiet = true;
    ctx.run_dir = run_dir;
    ctx.model = model;
    ctx.train_data = separable(256, 32, seed);
    ctx.valid_data = separable(128, 64, seed + 100);
    ctx.loss = std::make_shared<CrossEntropy>();
    ctx.builder = &builder;
    ctx.record_sink = [this](const std::string& phase, int64_t epoch, const Logs& logs) {
      records.push_back({phase, epoch, logs});
    };
    ctx.log_sink = [this](const std::string& line) { log += line + "\n"; };
  }
  /// Builds a loop from {"<name>": {...}}, prepares it, then builds SGD over trainable params.
  std::shared_ptr<TrainLoop> loop(const Json& component, double lr = 0.1) {
    auto l = build<TrainLoop>(component, &builder);
    l->prepare(ctx);
    std::vector<torch::Tensor> params;
    for (auto& p : model->parameters())
      if (p.requires_grad()) params.push_back(p);
    ctx.optimizer =
        std::make_shared<torch::optim::SGD>(params, torch::optim::SGDOptions(lr).momentum(0.9));
    return l;
  }
  void add_metric(const Json& component) {
    ctx.metrics.push_back(build<Metric>(component, &builder));
  }
  std::vector<Record> epochs() const {
    std::vector<Record> out;
    for (const auto& r : records)
      if (r.phase == "epoch") out.push_back(r);
    return out;
  }

  BuildContext builder;
  std::string run_dir;
  std::shared_ptr<ToyNet> model;
  TrainContext ctx;
  std::vector<Record> records;
  std::string log;
};

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

inline double log_value(const Logs& logs, const std::string& key) {
  auto v = find_log(logs, key);
  EXPECT_TRUE(v.has_value()) << "no '" << key << "' in the logs";
  return v.value_or(std::nan(""));
}

}  // namespace ktf::test
