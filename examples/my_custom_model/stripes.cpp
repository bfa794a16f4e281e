// my.datasets.Stripes: generated images of stripes in one of `num_classes` orientations, with
// noise; the class is the orientation. Built on the SDK's ktf::IndexedDataset, it gets every
// shared dataset argument (batch_size, shuffle, seed, prefetch, transforms...), shuffling,
// prefetch, augmentation and a resumable order by implementing split_size() and fetch().
#include <ktf/data.h>
#include <ktf/registry.h>

#include <cmath>

#include "my_plugin.h"

namespace my_plugin {
namespace {

struct StripesOptions : ktf::PipelineOptions {
  int64_t num_examples = 2048;  ///< training examples
  int64_t num_valid = 512;      ///< validation examples; 0 = no validation split
  int64_t num_classes = 4;      ///< orientations (classes)
  int64_t size = 28;            ///< image height and width
  double noise = 0.3;           ///< noise amplitude, relative to the stripes'
};

class Stripes : public ktf::IndexedDataset {
 public:
  Stripes(const StripesOptions& o, ktf::BuildContext& ctx)
      : IndexedDataset(ktf::PipelineConfig::from(o, ctx)), num_classes_(o.num_classes) {
    const uint64_t seed = o.seed ? static_cast<uint64_t>(*o.seed) : ctx.seed;
    train_ = generate(o, o.num_examples, seed);
    valid_ = generate(o, o.num_valid, seed + 1);
    init();  // checks the train split and infers the input shape
  }

  int64_t split_size(const std::string& split) const override {
    return split == "train" ? train_.size() : split == "valid" ? valid_.size() : 0;
  }
  ktf::Batch fetch(const std::string& split, const torch::Tensor& indices) override {
    const auto& s = split == "train" ? train_ : valid_;
    return {s.input.index_select(0, indices), s.target.index_select(0, indices)};
  }
  int64_t num_classes() const override { return num_classes_; }

 private:
  /// uint8 images [n, 1, size, size]: 0.5 + 0.5 sin(frequency * (x cos a + y sin a) + phase).
  static ktf::TensorSplit generate(const StripesOptions& o, int64_t n, uint64_t seed) {
    if (n == 0) return {};
    auto gen = ktf::make_generator(seed);
    auto labels = torch::randint(0, o.num_classes, {n}, gen, torch::kLong);
    auto angle = labels.to(torch::kFloat) * static_cast<float>(M_PI / o.num_classes);
    auto phase = torch::rand({n}, gen) * static_cast<float>(2 * M_PI);
    auto coords = torch::arange(o.size, torch::kFloat);
    auto y = coords.view({1, -1, 1}), x = coords.view({1, 1, -1});
    auto along = x * angle.cos().view({-1, 1, 1}) + y * angle.sin().view({-1, 1, 1});
    auto img = 0.5 + 0.5 * torch::sin(0.8 * along + phase.view({-1, 1, 1}));
    img = img + o.noise * (torch::rand({n, o.size, o.size}, gen) - 0.5);
    auto pixels = (img.clamp(0, 1) * 255).round().to(torch::kUInt8).unsqueeze(1).contiguous();
    return {pixels, labels};
  }

  int64_t num_classes_;
  ktf::TensorSplit train_, valid_;
};

}  // namespace

void register_stripes(ktf::Registrar& r) {
  auto def = ktf::define<ktf::Dataset, StripesOptions>(
      "my.datasets.Stripes", "generated stripe images; the class is the stripes' orientation");
  ktf::add_pipeline_args(def)
      .arg("num_examples", &StripesOptions::num_examples, "training examples")
      .min(1)
      .arg("num_valid", &StripesOptions::num_valid, "validation examples; 0 = none")
      .min(0)
      .arg("num_classes", &StripesOptions::num_classes, "orientations (classes)")
      .min(2)
      .arg("size", &StripesOptions::size, "image height and width")
      .min(4)
      .max(1024)
      .arg("noise", &StripesOptions::noise, "noise amplitude, relative to the stripes'")
      .min(0)
      .example(ktf::Json::object({{"num_examples", 64}, {"num_valid", 32}, {"batch_size", 16}}));
  r.add(def.build([](const StripesOptions& o, ktf::BuildContext& ctx) {
    return std::make_shared<Stripes>(o, ctx);
  }));
}

}  // namespace my_plugin
