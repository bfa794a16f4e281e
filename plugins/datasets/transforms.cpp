// Batch transforms (augmentation): each works on a whole batch [N, C, H, W] at once; all
// randomness comes from the generator the pipeline seeds per (seed, epoch, batch).
#include <ktf/components.h>
#include <ktf/registry.h>

#include <cmath>

#include "datasets.h"

namespace ktf::datasets {
namespace {

void check_images(const torch::Tensor& x, const char* name) {
  KTF_CHECK(x.dim() == 4, name, " expects image batches [N, C, H, W], got ", x.sizes());
}

/// out[n] = padded[n, :, oy[n] : oy[n] + h, ox[n] : ox[n] + w] for every n, with one gather.
torch::Tensor crop_at(const torch::Tensor& padded, const torch::Tensor& oy, const torch::Tensor& ox,
                      int64_t h, int64_t w) {
  int64_t n = padded.size(0), c = padded.size(1), hp = padded.size(2), wp = padded.size(3);
  auto rows = oy.view({n, 1, 1}) + torch::arange(h, torch::kLong).view({1, h, 1});
  auto cols = ox.view({n, 1, 1}) + torch::arange(w, torch::kLong).view({1, 1, w});
  auto index = (rows * wp + cols).view({n, 1, h * w}).expand({n, c, h * w});
  return padded.reshape({n, c, hp * wp}).gather(2, index).view({n, c, h, w});
}

/// Random crops of size h x w from images zero-padded by `pad_h`, `pad_w` on each side.
torch::Tensor random_crop(const torch::Tensor& x, int64_t pad_h, int64_t pad_w, int64_t h,
                          int64_t w, torch::Generator& gen) {
  auto padded = (pad_h || pad_w) ? torch::constant_pad_nd(x, {pad_w, pad_w, pad_h, pad_h}, 0) : x;
  int64_t hp = padded.size(2), wp = padded.size(3), n = x.size(0);
  KTF_CHECK(h <= hp && w <= wp, "crop size ", h, "x", w, " is larger than the padded images ", hp,
            "x", wp);
  auto oy = torch::randint(0, hp - h + 1, {n}, gen, torch::kLong);
  auto ox = torch::randint(0, wp - w + 1, {n}, gen, torch::kLong);
  return crop_at(padded, oy, ox, h, w);
}

// ---- RandomCrop
// ------------------------------------------------------------------------------------

struct RandomCropOptions {
  std::vector<int64_t> size;  ///< [H, W] of the crop; [] = the input size
  int64_t padding = 0;        ///< zero padding added on each side before cropping
};

class RandomCrop : public Transform {
 public:
  explicit RandomCrop(const RandomCropOptions& o) : o_(o) {
    KTF_CHECK(o.padding >= 0, "padding must be >= 0, got ", o.padding);
    KTF_CHECK(o.size.empty() || (o.size.size() == 2 && o.size[0] > 0 && o.size[1] > 0),
              "size must be [height, width] with positive values");
  }
  Batch apply(Batch b, torch::Generator& gen) override {
    check_images(b.input, "RandomCrop");
    int64_t h = o_.size.empty() ? b.input.size(2) : o_.size[0];
    int64_t w = o_.size.empty() ? b.input.size(3) : o_.size[1];
    b.input = random_crop(b.input, o_.padding, o_.padding, h, w, gen);
    return b;
  }

 private:
  RandomCropOptions o_;
};

// ---- RandomTranslation
// -----------------------------------------------------------------------------

struct RandomTranslationOptions {
  int64_t max_pixels = 2;  ///< largest shift in pixels, in each direction; the border is zero
};

class RandomTranslation : public Transform {
 public:
  explicit RandomTranslation(const RandomTranslationOptions& o) : o_(o) {
    KTF_CHECK(o.max_pixels >= 0, "max_pixels must be >= 0, got ", o.max_pixels);
  }
  Batch apply(Batch b, torch::Generator& gen) override {
    check_images(b.input, "RandomTranslation");
    b.input =
        random_crop(b.input, o_.max_pixels, o_.max_pixels, b.input.size(2), b.input.size(3), gen);
    return b;
  }

 private:
  RandomTranslationOptions o_;
};

// ---- RandomFlip
// ------------------------------------------------------------------------------------

struct RandomFlipOptions {
  bool horizontal = true;  ///< flip left-right
  bool vertical = false;   ///< flip top-bottom
  double p = 0.5;          ///< probability of each flip
};

class RandomFlip : public Transform {
 public:
  explicit RandomFlip(const RandomFlipOptions& o) : o_(o) {
    KTF_CHECK(o.p >= 0 && o.p <= 1, "p must be in [0, 1], got ", o.p);
  }
  Batch apply(Batch b, torch::Generator& gen) override {
    check_images(b.input, "RandomFlip");
    int64_t n = b.input.size(0);
    if (o_.horizontal) b.input = flip(b.input, 3, n, gen);
    if (o_.vertical) b.input = flip(b.input, 2, n, gen);
    return b;
  }

 private:
  torch::Tensor flip(const torch::Tensor& x, int64_t dim, int64_t n, torch::Generator& gen) {
    auto mask = (torch::rand({n}, gen, torch::kFloat32) < o_.p).view({n, 1, 1, 1});
    return torch::where(mask, x.flip({dim}), x);
  }
  RandomFlipOptions o_;
};

// ---- RandomErasing
// ---------------------------------------------------------------------------------

struct RandomErasingOptions {
  double p = 0.5;                         ///< probability that an image gets a rectangle erased
  std::vector<double> scale{0.02, 0.33};  ///< range of the erased area, as a fraction of the image
  std::vector<double> ratio{0.3, 3.3};    ///< range of the rectangle's aspect ratio (h / w)
  double value = 0.0;                     ///< value written into the rectangle
};

class RandomErasing : public Transform {
 public:
  explicit RandomErasing(const RandomErasingOptions& o) : o_(o) {
    KTF_CHECK(o.p >= 0 && o.p <= 1, "p must be in [0, 1], got ", o.p);
    KTF_CHECK(o.scale.size() == 2 && o.scale[0] > 0 && o.scale[0] <= o.scale[1] && o.scale[1] <= 1,
              "scale must be [min, max] with 0 < min <= max <= 1");
    KTF_CHECK(o.ratio.size() == 2 && o.ratio[0] > 0 && o.ratio[0] <= o.ratio[1],
              "ratio must be [min, max] with 0 < min <= max");
  }
  Batch apply(Batch b, torch::Generator& gen) override {
    check_images(b.input, "RandomErasing");
    const auto& x = b.input;
    int64_t n = x.size(0), h = x.size(2), w = x.size(3);
    auto opts = torch::kFloat64;
    auto area = torch::empty({n}, opts).uniform_(o_.scale[0], o_.scale[1], gen) * double(h * w);
    auto log_ratio =
        torch::empty({n}, opts).uniform_(std::log(o_.ratio[0]), std::log(o_.ratio[1]), gen);
    auto aspect = log_ratio.exp();
    auto eh = (area * aspect).sqrt().round().clamp(1, h).to(torch::kLong);
    auto ew = (area / aspect).sqrt().round().clamp(1, w).to(torch::kLong);
    auto top = (torch::rand({n}, gen, opts) * (h - eh + 1).to(opts)).floor().to(torch::kLong);
    auto left = (torch::rand({n}, gen, opts) * (w - ew + 1).to(opts)).floor().to(torch::kLong);
    auto apply = torch::rand({n}, gen, torch::kFloat32) < o_.p;
    auto r = torch::arange(h, torch::kLong).view({1, h});
    auto c = torch::arange(w, torch::kLong).view({1, w});
    auto in_rows = (r >= top.view({n, 1})) & (r < (top + eh).view({n, 1}));    // [n, h]
    auto in_cols = (c >= left.view({n, 1})) & (c < (left + ew).view({n, 1}));  // [n, w]
    auto mask =
        (in_rows.view({n, 1, h, 1}) & in_cols.view({n, 1, 1, w})) & apply.view({n, 1, 1, 1});
    b.input = x.masked_fill(mask, o_.value);
    return b;
  }

 private:
  RandomErasingOptions o_;
};

// ---- Normalize
// -------------------------------------------------------------------------------------

struct NormalizeOptions {
  std::vector<double> mean;  ///< per-channel mean (one value applies to every channel)
  std::vector<double> std;   ///< per-channel standard deviation
};

class Normalize : public Transform {
 public:
  explicit Normalize(const NormalizeOptions& o) {
    KTF_CHECK(!o.mean.empty() && !o.std.empty(), "mean and std must not be empty");
    for (double s : o.std) KTF_CHECK(s > 0, "std values must be > 0, got ", s);
    mean_ = torch::tensor(o.mean, torch::kFloat32);
    std_ = torch::tensor(o.std, torch::kFloat32);
  }
  Batch apply(Batch b, torch::Generator&) override {
    auto x = b.input;
    if (!torch::isFloatingType(x.scalar_type())) x = x.to(torch::kFloat32);
    int64_t channels = x.dim() >= 2 ? x.size(1) : 1;
    for (const auto* t : {&mean_, &std_})
      KTF_CHECK(t->numel() == 1 || t->numel() == channels,
                "Normalize: ", t == &mean_ ? "mean" : "std", " has ", t->numel(),
                " values but the data has ", channels, " channels");
    std::vector<int64_t> shape(x.dim(), 1);
    if (x.dim() >= 2) shape[1] = -1;
    b.input = (x - mean_.view(shape)) / std_.view(shape);
    return b;
  }

 private:
  torch::Tensor mean_, std_;
};

}  // namespace

void register_transforms(Registrar& r) {
  r.add(define<Transform, RandomCropOptions>("ktf.transforms.RandomCrop",
                                             "random crops of zero-padded images, per example")
            .arg("size", &RandomCropOptions::size, "[H, W] of the crop; [] = the input size")
            .sizes({0, 2})
            .min(1)
            .arg("padding", &RandomCropOptions::padding,
                 "zero padding added on each side before cropping")
            .min(0)
            .example(Json::object({{"padding", 4}}), {1, 28, 28})
            .build([](const RandomCropOptions& o, BuildContext&) {
              return std::make_shared<RandomCrop>(o);
            }));
  r.add(define<Transform, RandomFlipOptions>("ktf.transforms.RandomFlip",
                                             "random horizontal and/or vertical flips")
            .arg("horizontal", &RandomFlipOptions::horizontal, "flip left-right")
            .arg("vertical", &RandomFlipOptions::vertical, "flip top-bottom")
            .arg("p", &RandomFlipOptions::p, "probability of each flip")
            .min(0)
            .max(1)
            .example(Json::object({{"horizontal", true}}), {1, 28, 28})
            .build([](const RandomFlipOptions& o, BuildContext&) {
              return std::make_shared<RandomFlip>(o);
            }));
  r.add(define<Transform, RandomTranslationOptions>(
            "ktf.transforms.RandomTranslation",
            "random shifts by up to max_pixels in each direction, zero border")
            .arg("max_pixels", &RandomTranslationOptions::max_pixels,
                 "largest shift in pixels, in each direction")
            .min(0)
            .example(Json::object({{"max_pixels", 2}}), {1, 28, 28})
            .build([](const RandomTranslationOptions& o, BuildContext&) {
              return std::make_shared<RandomTranslation>(o);
            }));
  r.add(define<Transform, RandomErasingOptions>(
            "ktf.transforms.RandomErasing",
            "erases a random rectangle per image (Zhong et al. 2017, one attempt, clamped)")
            .arg("p", &RandomErasingOptions::p, "probability that an image gets a rectangle erased")
            .min(0)
            .max(1)
            .arg("scale", &RandomErasingOptions::scale,
                 "[min, max] erased area as a fraction of the image")
            .sizes({2})
            .above(0)
            .max(1)
            .arg("ratio", &RandomErasingOptions::ratio, "[min, max] aspect ratio (h / w)")
            .sizes({2})
            .above(0)
            .arg("value", &RandomErasingOptions::value, "value written into the rectangle")
            .example(Json::object({{"p", 0.5}}), {1, 28, 28})
            .build([](const RandomErasingOptions& o, BuildContext&) {
              return std::make_shared<RandomErasing>(o);
            }));
  r.add(define<Transform, NormalizeOptions>("ktf.transforms.Normalize",
                                            "(x - mean) / std per channel")
            .required("mean", &NormalizeOptions::mean, "per-channel mean (one value: all channels)")
            .non_empty()
            .required("std", &NormalizeOptions::std, "per-channel standard deviation")
            .non_empty()
            .above(0)
            .example(Json::object({{"mean", Json::array({0.5})}, {"std", Json::array({0.25})}}),
                     {1, 28, 28})
            .build([](const NormalizeOptions& o, BuildContext&) {
              return std::make_shared<Normalize>(o);
            }));
}

}  // namespace ktf::datasets
