// IDX datasets (the MNIST file format, raw or .gz): a generic reader with explicit file paths,
// Fashion-MNIST from Debian's dataset-fashion-mnist, and MNIST from a directory of IDX files.
#include <ktf/components.h>
#include <ktf/registry.h>

#include <filesystem>

#include <ktf/data.h>
#include "datasets.h"
#include "io.h"

namespace ktf::datasets {
namespace {

const char* const kFashionDir = "/usr/share/datasets/fashion-mnist";

/// Images [N, H, W] or [N, H, W, C] and labels [N] of one split, checked against each other.
TensorSplit read_idx_split(const std::string& images_path, const std::string& labels_path) {
  auto images = read_idx(images_path);
  auto labels = read_idx(labels_path);
  KTF_CHECK(images.dim() == 3 || images.dim() == 4, "IDX file '", images_path,
            "': expected images [N, H, W] or [N, H, W, C], got dimensions ", images.sizes());
  KTF_CHECK(labels.dim() == 1, "IDX file '", labels_path, "': expected labels [N], got dimensions ",
            labels.sizes());
  KTF_CHECK(!torch::isFloatingType(labels.scalar_type()), "IDX file '", labels_path,
            "': labels must be integers, got ", labels.scalar_type());
  KTF_CHECK(images.size(0) == labels.size(0), "IDX files '", images_path, "' (", images.size(0),
            " images) and '", labels_path, "' (", labels.size(0), " labels): counts differ");
  images = images.dim() == 3 ? images.unsqueeze(1) : images.permute({0, 3, 1, 2});
  return {images.contiguous(), labels.to(torch::kLong)};
}

std::shared_ptr<TensorDataset> make_idx_dataset(
    const PipelineOptions& o, BuildContext& ctx, const std::string& train_images,
    const std::string& train_labels, const std::string& test_images, const std::string& test_labels,
    const std::optional<ValidationArg>& validation, int64_t num_classes,
    std::vector<std::string> class_names) {
  bool has_test = !test_images.empty() && !test_labels.empty();
  double fraction = parse_validation(validation, has_test);
  auto config = PipelineConfig::from(o, ctx);
  // Every label a class index: the file and record named here, not libtorch's "Target 12 is out
  // of bounds" in the middle of training.
  auto check_labels = [&](const torch::Tensor& labels, const std::string& file) {
    const int64_t record = first_bad_label(labels, num_classes);
    if (record < 0) return;
    const int64_t label = labels[record].item<int64_t>();
    throw Error("IDX file '" + file + "': label " + std::to_string(label) + " of record " +
                std::to_string(record) + not_a_class_index(label, num_classes));
  };
  TensorSplit train = read_idx_split(train_images, train_labels), valid;
  check_labels(train.target, train_labels);  // record numbers of the file, before any hold-out
  if (fraction < 0) {
    valid = read_idx_split(test_images, test_labels);
    check_labels(valid.target, test_labels);
    KTF_CHECK(valid.input.sizes().slice(1) == train.input.sizes().slice(1), "IDX test images '",
              test_images, "' have shape ", valid.input.sizes().slice(1),
              " but the training images have ", train.input.sizes().slice(1));
  } else if (fraction > 0) {
    std::tie(train, valid) = hold_out(train, fraction, config.seed);
  }
  int64_t classes = std::max(count_classes(train.target), count_classes(valid.target));
  if (num_classes > 0) classes = num_classes;
  return std::make_shared<TensorDataset>(std::move(train), std::move(valid), std::move(config),
                                         classes, std::move(class_names));
}

/// `<dir>/<name>.gz` or `<dir>/<name>`.
std::string find_idx(const std::string& dir, const std::string& name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  KTF_CHECK(fs::is_directory(dir, ec), "data_dir '", dir, "' not found or not a directory");
  for (const auto& candidate : {name + ".gz", name}) {
    auto p = fs::path(dir) / candidate;
    if (fs::exists(p, ec)) return p.string();
  }
  throw Error("data_dir '" + dir + "': neither " + name + ".gz nor " + name + " found");
}

// ---- ktf.datasets.from_idx
// -------------------------------------------------------------------------

struct IdxOptions : PipelineOptions {
  std::string train_images;                 ///< IDX file of the training images
  std::string train_labels;                 ///< IDX file of the training labels
  std::string test_images;                  ///< IDX file of the test images (optional)
  std::string test_labels;                  ///< IDX file of the test labels (optional)
  std::optional<ValidationArg> validation;  ///< "test", "none" or a fraction; null = test if given
  int64_t num_classes = 0;                  ///< number of classes; 0 = 1 + the largest label
  std::vector<std::string> class_names;     ///< names of the classes (optional)
};

// ---- data_dir readers
// ------------------------------------------------------------------------------

struct DirOptions : PipelineOptions {
  std::string data_dir;                            ///< directory of the four IDX files
  ValidationArg validation = std::string("test");  ///< "test", "none" or a held-out fraction
};

struct FashionOptions : DirOptions {
  FashionOptions() { data_dir = kFashionDir; }
};

template <class O>
std::shared_ptr<Dataset> make_dir_dataset(const O& o, BuildContext& ctx,
                                          std::vector<std::string> class_names) {
  const auto& d = o.data_dir;
  bool want_test = parse_validation(o.validation, true) < 0;
  return make_idx_dataset(o, ctx, find_idx(d, "train-images-idx3-ubyte"),
                          find_idx(d, "train-labels-idx1-ubyte"),
                          want_test ? find_idx(d, "t10k-images-idx3-ubyte") : "",
                          want_test ? find_idx(d, "t10k-labels-idx1-ubyte") : "", o.validation, 10,
                          std::move(class_names));
}

}  // namespace

void register_idx(Registrar& r) {
  {
    auto def = define<Dataset, IdxOptions>(
        "ktf.datasets.from_idx", "images and labels from IDX files (MNIST format, raw or .gz)");
    def.required("train_images", &IdxOptions::train_images, "IDX file of the training images")
        .required("train_labels", &IdxOptions::train_labels, "IDX file of the training labels")
        .arg("test_images", &IdxOptions::test_images, "IDX file of the test images (optional)")
        .arg("test_labels", &IdxOptions::test_labels, "IDX file of the test labels (optional)")
        .arg("validation", &IdxOptions::validation,
             "\"test\", \"none\" or a held-out fraction in (0, 1); null = test files if given")
        .choices({"test", "none"})
        .above(0)
        .below(1)
        .arg("num_classes", &IdxOptions::num_classes,
             "number of classes; 0 = 1 + the largest label")
        .min(0)
        .arg("class_names", &IdxOptions::class_names, "names of the classes (optional)");
    add_pipeline_args(def).example(
        Json::object({{"train_images", std::string(kFashionDir) + "/t10k-images-idx3-ubyte.gz"},
                      {"train_labels", std::string(kFashionDir) + "/t10k-labels-idx1-ubyte.gz"},
                      {"validation", 0.1},
                      {"batch_size", 32}}));
    r.add(def.build([](const IdxOptions& o, BuildContext& ctx) -> std::shared_ptr<Dataset> {
      return make_idx_dataset(o, ctx, o.train_images, o.train_labels, o.test_images, o.test_labels,
                              o.validation, o.num_classes, o.class_names);
    }));
  }
  {
    auto def = define<Dataset, FashionOptions>(
        "ktf.datasets.fashion.fashion_mnist.from_idx",
        "Fashion-MNIST (60000 train / 10000 test 28x28 gray images, 10 classes) from IDX files");
    def.arg<std::string>("data_dir", &FashionOptions::data_dir,
                         "directory of the IDX files (Debian's dataset-fashion-mnist by default)")
        .arg<ValidationArg>(
            "validation", &FashionOptions::validation,
            "\"test\" (the t10k files), \"none\" or a held-out fraction of the train files")
        .choices({"test", "none"})
        .above(0)
        .below(1);
    add_pipeline_args(def).example(Json::object({{"batch_size", 64}}));
    r.add(def.build([](const FashionOptions& o, BuildContext& ctx) {
      return make_dir_dataset(o, ctx,
                              {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                               "Shirt", "Sneaker", "Bag", "Ankle boot"});
    }));
  }
  {
    auto def = define<Dataset, DirOptions>(
        "ktf.datasets.digits.mnist.from_idx",
        "MNIST digits (28x28 gray images, 10 classes) from a directory of the four IDX files");
    def.required("data_dir", &DirOptions::data_dir,
                 "directory of train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                 "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]")
        .arg("validation", &DirOptions::validation,
             "\"test\" (the t10k files), \"none\" or a held-out fraction of the train files")
        .choices({"test", "none"})
        .above(0)
        .below(1);
    // The example reads Fashion-MNIST, which uses MNIST's file names and format.
    add_pipeline_args(def).example(Json::object({{"data_dir", kFashionDir}}));
    r.add(def.build([](const DirOptions& o, BuildContext& ctx) {
      return make_dir_dataset(o, ctx, {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"});
    }));
  }
}

}  // namespace ktf::datasets
