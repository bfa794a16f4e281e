// Generated classification data: separable Gaussian blobs (learnable) or pure noise.
#include <ktf/components.h>
#include <ktf/registry.h>

#include <cmath>

#include <ktf/data.h>
#include "datasets.h"

namespace ktf::datasets {
namespace {

struct SyntheticOptions : PipelineOptions {
  int64_t num_examples = 1024;                  ///< training examples
  int64_t num_valid = 256;                      ///< validation examples; 0 = none
  std::vector<int64_t> input_shape{1, 28, 28};  ///< one example's shape
  int64_t num_classes = 10;                     ///< number of classes
  std::string mode = "blobs";                   ///< blobs (learnable) or random (noise labels)
  double separation = 4.0;                      ///< distance between class centres, in noise stds
  int64_t data_seed = 0;                        ///< seed of the generated data (not of the order)
};

/// Blobs: class c has centre mu_c (random direction, norm `separation`/sqrt(2) so that centres are
/// about `separation` apart) plus unit Gaussian noise. Labels are balanced (i % num_classes,
/// shuffled).
TensorSplit generate(const SyntheticOptions& o, int64_t n, const torch::Tensor& centres,
                     torch::Generator& gen) {
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), o.input_shape.begin(), o.input_shape.end());
  auto labels = torch::arange(n, torch::kLong).remainder(o.num_classes);
  labels = labels.index_select(0, torch::randperm(n, gen, torch::kLong));
  auto noise = torch::randn(shape, gen, torch::kFloat32);
  if (o.mode == "random") {
    return {noise, torch::randint(0, o.num_classes, {n}, gen, torch::kLong)};
  }
  auto x = noise.view({n, -1}) + centres.index_select(0, labels);
  return {x.view(shape).contiguous(), labels};
}

std::shared_ptr<Dataset> make_synthetic(const SyntheticOptions& o, BuildContext& ctx) {
  KTF_CHECK(o.num_examples >= 1, "num_examples must be >= 1, got ", o.num_examples);
  KTF_CHECK(o.num_valid >= 0, "num_valid must be >= 0, got ", o.num_valid);
  KTF_CHECK(o.num_classes >= 2, "num_classes must be >= 2, got ", o.num_classes);
  KTF_CHECK(!o.input_shape.empty(), "input_shape must not be empty");
  for (auto d : o.input_shape) KTF_CHECK(d >= 1, "input_shape values must be >= 1, got ", d);
  KTF_CHECK(o.mode == "blobs" || o.mode == "random", "mode must be blobs or random, got '", o.mode,
            "'");
  KTF_CHECK(o.separation >= 0, "separation must be >= 0, got ", o.separation);
  auto config = PipelineConfig::from(o, ctx);
  KTF_CHECK(config.to_float, "dtype must be float32 for synthetic data");
  // Sizes computed with overflow checks: input_shape [100000, 100000, 100000] wraps an int64.
  int64_t dim = 1, elements = 0;
  bool overflow = false;
  for (auto d : o.input_shape) overflow |= __builtin_mul_overflow(dim, d, &dim);
  int64_t rows = 0;
  overflow |= __builtin_add_overflow(o.num_examples, o.num_valid, &rows);
  overflow |= __builtin_add_overflow(rows, o.num_classes, &rows);
  overflow |= __builtin_mul_overflow(rows, dim, &elements);
  overflow |= __builtin_mul_overflow(elements, int64_t{4}, &elements);
  KTF_CHECK(!overflow, "input_shape ", torch::IntArrayRef(o.input_shape), " with ", o.num_examples,
            " + ", o.num_valid,
            " examples is more data than any machine holds (its size overflows 64 bits)");
  auto gen = make_generator(static_cast<uint64_t>(o.data_seed));
  auto dirs = torch::randn({o.num_classes, dim}, gen, torch::kFloat32);
  auto centres = dirs / dirs.norm(2, 1, true) * (o.separation / std::sqrt(2.0));
  TensorSplit train = generate(o, o.num_examples, centres, gen);
  TensorSplit valid;
  if (o.num_valid > 0) valid = generate(o, o.num_valid, centres, gen);
  std::vector<std::string> names;
  for (int64_t c = 0; c < o.num_classes; ++c) names.push_back("class " + std::to_string(c));
  return std::make_shared<TensorDataset>(std::move(train), std::move(valid), std::move(config),
                                         o.num_classes, std::move(names));
}

}  // namespace

void register_synthetic(Registrar& r) {
  auto def = define<Dataset, SyntheticOptions>(
      "ktf.datasets.synthetic",
      "generated classification data: separable Gaussian blobs or random noise");
  def.arg("num_examples", &SyntheticOptions::num_examples, "training examples")
      .min(1)
      .arg("num_valid", &SyntheticOptions::num_valid, "validation examples; 0 = none")
      .min(0)
      .arg("input_shape", &SyntheticOptions::input_shape, "one example's shape, e.g. [1, 28, 28]")
      .non_empty()
      .min(1)
      .arg("num_classes", &SyntheticOptions::num_classes, "number of classes")
      .min(2)
      .arg("mode", &SyntheticOptions::mode,
           "blobs: one Gaussian blob per class (learnable); random: noise with random labels",
           {"blobs", "random"})
      .arg("separation", &SyntheticOptions::separation,
           "distance between class centres in units of the noise std (blobs)")
      .min(0)
      .arg("data_seed", &SyntheticOptions::data_seed,
           "seed of the generated data (the order uses `seed`)");
  add_pipeline_args(def).example(Json::object({{"num_examples", 128},
                                               {"num_valid", 32},
                                               {"input_shape", Json::array({1, 8, 8})},
                                               {"num_classes", 4},
                                               {"batch_size", 16}}));
  r.add(def.build(make_synthetic));
}

}  // namespace ktf::datasets
