// Classification accuracy on class-index targets: ktf.metrics.SparseCategoricalAccuracy and
// ktf.metrics.TopKAccuracy. Counts stay on the device; compute() reads them back once.
#include <ktf/components.h>
#include <ktf/registry.h>

#include "train.h"

namespace ktf::train {
namespace {

struct AccuracyOptions {
  std::string name = "accuracy";  ///< log key ("val_" is prefixed on validation data)
};

struct TopKOptions {
  int64_t k = 5;          ///< a prediction counts when the target is among the k highest outputs
  std::string name = "";  ///< log key; empty = "top_<k>_accuracy"
};

/// Checks output [batch, classes] against class-index targets and returns targets as [batch] long.
torch::Tensor class_targets(const char* metric, const torch::Tensor& output,
                            const torch::Tensor& target) {
  KTF_CHECK(output.dim() == 2, metric, ": expected output [batch, classes], got ", output.sizes());
  KTF_CHECK(target.numel() == output.size(0), metric, ": expected ", output.size(0),
            " class-index targets, got target of shape ", target.sizes());
  return target.reshape({-1}).to(output.device(), torch::kLong);
}

/// Counts correct predictions as a device tensor and examples on the host.
class HitCounter : public Metric {
 public:
  explicit HitCounter(std::string name) : name_(std::move(name)) {}
  std::string name() const override { return name_; }
  void reset() override {
    hits_ = torch::Tensor();
    total_ = 0;
  }
  double compute() override {
    if (total_ == 0) return 0.0;
    return hits_.item<double>() / static_cast<double>(total_);
  }
  void save_state(State& s) override {
    s.set_tensor("hits", hits_);
    s.set("total", total_);
  }
  void load_state(const State& s) override {
    hits_ = s.tensor("hits");
    total_ = s.at("total").as_int();
  }

 protected:
  void add(const torch::Tensor& hits, int64_t n) {
    hits_ = hits_.defined() ? hits_ + hits : hits;
    total_ += n;
  }

 private:
  std::string name_;
  torch::Tensor hits_;
  int64_t total_ = 0;
};

class SparseCategoricalAccuracy : public HitCounter {
 public:
  using HitCounter::HitCounter;
  void update(const torch::Tensor& output, const torch::Tensor& target) override {
    torch::NoGradGuard no_grad;
    auto t = class_targets("SparseCategoricalAccuracy", output, target);
    add(output.argmax(1).eq(t).sum(), t.numel());
  }
};

class TopKAccuracy : public HitCounter {
 public:
  TopKAccuracy(std::string name, int64_t k) : HitCounter(std::move(name)), k_(k) {}
  void update(const torch::Tensor& output, const torch::Tensor& target) override {
    torch::NoGradGuard no_grad;
    auto t = class_targets("TopKAccuracy", output, target);
    KTF_CHECK(k_ <= output.size(1), "TopKAccuracy: k = ", k_, " but the output has only ",
              output.size(1), " classes");
    auto top = std::get<1>(output.topk(k_, 1));
    add(top.eq(t.unsqueeze(1)).any(1).sum(), t.numel());
  }

 private:
  int64_t k_;
};

}  // namespace

void register_accuracy(Registrar& r) {
  r.add(
      define<Metric, AccuracyOptions>(
          "ktf.metrics.SparseCategoricalAccuracy",
          "fraction of examples whose highest output is the target class index")
          .alias("tf.keras.metrics.SparseCategoricalAccuracy")
          .arg("name", &AccuracyOptions::name, "log key (\"val_\" is prefixed on validation data)")
          .non_empty()
          .example(Json::object())
          .example_target({})
          .build([](const AccuracyOptions& o, BuildContext&) {
            KTF_CHECK(!o.name.empty(), "name must not be empty");
            return std::make_shared<SparseCategoricalAccuracy>(o.name);
          }));
  r.add(define<Metric, TopKOptions>(
            "ktf.metrics.TopKAccuracy",
            "fraction of examples whose target class is among the k highest outputs")
            .alias("tf.keras.metrics.SparseTopKCategoricalAccuracy")
            .arg("k", &TopKOptions::k,
                 "a prediction counts when the target is among the k highest outputs")
            .min(1)
            .arg("name", &TopKOptions::name, "log key; empty = \"top_<k>_accuracy\"")
            .example(Json::object({{"k", 5}}))
            .example_target({})
            .build([](const TopKOptions& o, BuildContext&) {
              KTF_CHECK(o.k >= 1, "k must be >= 1, got ", o.k);
              std::string name =
                  o.name.empty() ? "top_" + std::to_string(o.k) + "_accuracy" : o.name;
              return std::make_shared<TopKAccuracy>(name, o.k);
            }));
}

}  // namespace ktf::train
