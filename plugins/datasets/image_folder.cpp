// ktf.datasets.image_folder: one sub-folder per class of PNG/JPEG images, decoded once into a
// contiguous uint8 tensor.
#include <ktf/components.h>
#include <ktf/image.h>
#include <ktf/registry.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <filesystem>

#include <ktf/data.h>
#include "datasets.h"
#include "io.h"

namespace ktf::datasets {
namespace {

namespace fs = std::filesystem;

struct ImageFolderOptions : PipelineOptions {
  std::string data_dir;        ///< one sub-folder of images per class (sorted names = classes)
  std::string validation_dir;  ///< the same layout for the validation split (optional)
  /// held-out fraction when there is no validation_dir; null or "none" = none
  std::optional<ValidationArg> validation;
  std::vector<int64_t> image_size;  ///< [H, W] every image is resized to; [] = the first image's
  int64_t channels = 0;             ///< 1 or 3; 0 = the first image's
};

struct Listing {
  std::vector<std::string> files;
  std::vector<int64_t> labels;
};

bool is_image(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

std::vector<std::string> class_dirs(const std::string& dir, const char* arg) {
  std::error_code ec;
  KTF_CHECK(fs::is_directory(dir, ec), arg, " '", dir, "' not found or not a directory");
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_directory()) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  KTF_CHECK(!names.empty(), arg, " '", dir, "' has no class sub-folders");
  return names;
}

Listing list_images(const std::string& dir, const std::vector<std::string>& classes,
                    const char* arg) {
  Listing l;
  for (size_t c = 0; c < classes.size(); ++c) {
    std::vector<std::string> files;
    fs::path sub = fs::path(dir) / classes[c];
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(sub, ec))
      if (e.is_regular_file() && is_image(e.path())) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    // A class no example has would still be a class of the model's output: refuse it.
    KTF_CHECK(!files.empty(), arg, " '", dir, "': class folder '", classes[c],
              "' holds no .png/.jpg/.jpeg images (remove the folder, or add its images)");
    for (auto& f : files) {
      l.files.push_back(std::move(f));
      l.labels.push_back(static_cast<int64_t>(c));
    }
  }
  return l;
}

torch::Tensor decode_any(const std::string& path, int channels) {
  std::string data = read_file(path, "image file");
  return decode_image(data, "image file '" + path + "'", channels);
}

/// Decodes every image into uint8 [N, C, H, W], resizing to (h, w) where needed.
torch::Tensor decode_all(const Listing& l, int64_t channels, int64_t h, int64_t w) {
  int64_t n = static_cast<int64_t>(l.files.size());
  auto out = torch::empty({n, h, w, channels}, torch::kUInt8);
  std::vector<std::exception_ptr> errors(n);
  at::parallel_for(0, n, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      try {
        auto img = decode_any(l.files[i], static_cast<int>(channels));
        if (img.size(0) != h || img.size(1) != w) {
          namespace F = torch::nn::functional;
          auto x = img.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32);
          x = F::interpolate(x, F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{h, w})
                                    .mode(torch::kBilinear)
                                    .align_corners(false));
          img = x.squeeze(0).permute({1, 2, 0}).round().clamp(0, 255).to(torch::kUInt8);
        }
        out[i].copy_(img);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
  });
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  return out.permute({0, 3, 1, 2}).contiguous();
}

std::shared_ptr<Dataset> make_image_folder(const ImageFolderOptions& o, BuildContext& ctx) {
  KTF_CHECK(o.channels == 0 || o.channels == 1 || o.channels == 3,
            "channels must be 0, 1 or 3, got ", o.channels);
  KTF_CHECK(o.image_size.empty() ||
                (o.image_size.size() == 2 && o.image_size[0] > 0 && o.image_size[1] > 0),
            "image_size must be [height, width] with positive values");
  double fraction = parse_validation(o.validation, false);
  KTF_CHECK(o.validation_dir.empty() || fraction == 0,
            "give either validation_dir or a validation fraction, not both");
  auto config = PipelineConfig::from(o, ctx);
  auto classes = class_dirs(o.data_dir, "data_dir");
  Listing train = list_images(o.data_dir, classes, "data_dir");
  auto first = decode_any(train.files[0], static_cast<int>(o.channels));
  int64_t channels = o.channels ? o.channels : (first.size(2) == 1 ? 1 : 3);
  int64_t h = o.image_size.empty() ? first.size(0) : o.image_size[0];
  int64_t w = o.image_size.empty() ? first.size(1) : o.image_size[1];
  TensorSplit tr{decode_all(train, channels, h, w), torch::tensor(train.labels, torch::kLong)}, va;
  if (!o.validation_dir.empty()) {
    auto vclasses = class_dirs(o.validation_dir, "validation_dir");
    KTF_CHECK(vclasses == classes, "validation_dir '", o.validation_dir,
              "' has different class folders than data_dir '", o.data_dir, "'");
    Listing valid = list_images(o.validation_dir, classes, "validation_dir");
    va = {decode_all(valid, channels, h, w), torch::tensor(valid.labels, torch::kLong)};
  } else if (fraction > 0) {
    std::tie(tr, va) = hold_out(tr, fraction, config.seed);
  }
  return std::make_shared<TensorDataset>(std::move(tr), std::move(va), std::move(config),
                                         static_cast<int64_t>(classes.size()), classes);
}

}  // namespace

void register_image_folder(Registrar& r) {
  auto def = define<Dataset, ImageFolderOptions>(
      "ktf.datasets.image_folder",
      "PNG/JPEG images in one sub-folder per class (class names sorted = class indices)");
  def.required("data_dir", &ImageFolderOptions::data_dir,
               "directory with one sub-folder of images per class")
      .arg("validation_dir", &ImageFolderOptions::validation_dir,
           "the same layout for the validation split (optional)")
      .arg("validation", &ImageFolderOptions::validation,
           "held-out fraction in (0, 1) when there is no validation_dir; null = none")
      .choices({"none"})
      .above(0)
      .below(1)
      .arg("image_size", &ImageFolderOptions::image_size,
           "[H, W] every image is resized to (bilinear); [] = the first image's size")
      .sizes({0, 2})
      .min(1)
      .arg("channels", &ImageFolderOptions::channels, "1 or 3; 0 = the first image's")
      .min(0)
      .max(3);
  add_pipeline_args(def).example(
      Json::object({{"data_dir", std::string(kTestdataDir) + "/tiny-images"}, {"batch_size", 4}}));
  r.add(def.build(make_image_folder));
}

}  // namespace ktf::datasets
