// In-memory readers (IDX, synthetic, CSV, image folders), the batch pipeline, transforms and the
// viewer.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <ktf/image.h>
#include <ktf/viewer.h>
#include <zlib.h>

#include <chrono>
#include <filesystem>

#include "test_util.h"

namespace ktf::test {
namespace {

namespace fs = std::filesystem;

std::string gunzip(const std::string& path) {
  gzFile gz = gzopen(path.c_str(), "rb");
  EXPECT_NE(gz, nullptr) << path;
  std::string out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(gz, buf, sizeof buf)) > 0) out.append(buf, n);
  gzclose(gz);
  return out;
}

std::string fashion(const std::string& name) { return fashion_mnist_dir() + "/" + name; }

const char* kRawFashion = R"({"ktf.datasets.fashion.fashion_mnist.from_idx":
    {"shuffle": false, "scale": false, "dtype": "uint8", "batch_size": 1000}})";

TEST(FashionMnist, CountsClassesAndPixelsMatchTheFiles) {
  auto ds = dataset(kRawFashion);
  EXPECT_EQ(ds->input_shape(), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(ds->num_classes(), 10);
  EXPECT_EQ(ds->class_names().at(9), "Ankle boot");
  auto train = ds->train(), valid = ds->valid();
  ASSERT_TRUE(valid);
  EXPECT_EQ(train->num_examples(), 60000);
  EXPECT_EQ(valid->num_examples(), 10000);
  EXPECT_EQ(train->num_batches(), 60);
  for (auto [stream, prefix, count] : {std::tuple{train, std::string("train"), 60000},
                                       std::tuple{valid, std::string("t10k"), 10000}}) {
    Batch all = epoch(*stream);
    ASSERT_EQ(all.input.scalar_type(), torch::kUInt8);
    ASSERT_EQ(all.input.sizes(), (std::vector<int64_t>{count, 1, 28, 28}));
    EXPECT_TRUE(
        torch::equal(torch::bincount(all.target), torch::full({10}, count / 10, torch::kLong)));
    std::string images = gunzip(fashion(prefix + "-images-idx3-ubyte.gz"));
    std::string labels = gunzip(fashion(prefix + "-labels-idx1-ubyte.gz"));
    ASSERT_EQ(images.size(), 16u + count * 784u);
    EXPECT_EQ(0, std::memcmp(all.input.contiguous().data_ptr(), images.data() + 16, count * 784u));
    auto file_labels = torch::from_blob(labels.data() + 8, {count}, torch::kUInt8).to(torch::kLong);
    EXPECT_TRUE(torch::equal(all.target, file_labels));
  }
}

TEST(FashionMnist, ScaleAndNormaliseOfUint8BatchesIsOneAffineMap) {
  // The usual configuration (scale, one mean and std, nothing reshaped) converts each uint8 batch
  // in one pass; the result is what libtorch's three ops give, bit for bit.
  auto raw = dataset(kRawFashion)->valid();
  auto ds = dataset(R"({"ktf.datasets.fashion.fashion_mnist.from_idx": {"shuffle": false,
      "batch_size": 1000, "mean": [0.2860], "std": [0.3530]}})");
  auto v = ds->valid();
  raw->start_epoch(0);
  v->start_epoch(0);
  auto r = raw->next()->input;
  auto b = v->next()->input;
  ASSERT_EQ(b.scalar_type(), torch::kFloat32);
  ASSERT_EQ(b.sizes(), r.sizes());
  const double a = 1.0 / 255.0 / 0.3530, shift = -0.2860 / 0.3530;
  EXPECT_TRUE(torch::equal(b, r.to(torch::kFloat32).mul_(a).add_(shift)));
  EXPECT_TRUE(torch::allclose(b, (r.to(torch::kFloat32) / 255 - 0.2860) / 0.3530, 1e-5, 1e-5));
  EXPECT_GT(b.max().item<float>(), 2.0f);  // (1 - 0.286) / 0.353: white pixels are there
}

TEST(FashionMnist, ScalesNormalisesPadsAndForcesRgb) {
  auto raw = dataset(kRawFashion)->valid();
  auto ds = dataset(R"({"ktf.datasets.fashion.fashion_mnist.from_idx": {"shuffle": false,
      "batch_size": 100, "force_rgb": true, "pad_to": [40, 40], "mean": [0.5], "std": [0.25]}})");
  EXPECT_EQ(ds->input_shape(), (std::vector<int64_t>{3, 40, 40}));
  auto v = ds->valid();
  raw->start_epoch(0);
  v->start_epoch(0);
  auto r = raw->next()->input.narrow(0, 0, 100).to(torch::kFloat32) / 255;
  auto b = v->next();
  ASSERT_EQ(b->input.sizes(), (std::vector<int64_t>{100, 3, 40, 40}));
  auto centre = b->input.narrow(2, 6, 28).narrow(3, 6, 28);
  for (int c = 0; c < 3; ++c)
    EXPECT_TRUE(torch::allclose(centre.select(1, c), (r.select(1, 0) - 0.5) / 0.25, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(b->input.narrow(2, 0, 6), torch::full({1}, -2.0)));
  auto resized = dataset(R"({"ktf.datasets.fashion.fashion_mnist.from_idx":
      {"resize_to": [14, 14], "batch_size": 8}})");
  EXPECT_EQ(resized->input_shape(), (std::vector<int64_t>{1, 14, 14}));
}

TEST(FashionMnist, HeldOutFraction) {
  auto ds = dataset(R"({"ktf.datasets.from_idx": {
      "train_images": "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
      "train_labels": "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
      "validation": 0.2, "batch_size": 500}})");
  EXPECT_EQ(ds->train()->num_examples(), 8000);
  EXPECT_EQ(ds->valid()->num_examples(), 2000);
  EXPECT_EQ(ds->num_classes(), 10);
}

const char* kAugmented = R"({"ktf.datasets.fashion.fashion_mnist.from_idx": {"seed": 7,
    "batch_size": 128, "transforms": [{"ktf.transforms.RandomCrop": {"padding": 2}},
    {"ktf.transforms.RandomFlip": {}}, {"ktf.transforms.RandomErasing": {"p": 0.5}}]}})";

TEST(Pipeline, SameSeedSameBatchesDifferentEpochsDiffer) {
  auto a = dataset(kAugmented)->train(), b = dataset(kAugmented)->train();
  for (int e = 0; e < 2; ++e) {
    a->start_epoch(e);
    b->start_epoch(e);
    for (int i = 0; i < 5; ++i) {
      auto x = a->next(), y = b->next();
      ASSERT_TRUE(torch::equal(x->input, y->input));
      ASSERT_TRUE(torch::equal(x->target, y->target));
    }
  }
  a->start_epoch(0);
  auto first0 = a->next()->target;
  a->start_epoch(1);
  EXPECT_FALSE(torch::equal(first0, a->next()->target));
  auto other = dataset(R"({"ktf.datasets.fashion.fashion_mnist.from_idx": {"seed": 8}})")->train();
  other->start_epoch(0);
  EXPECT_FALSE(torch::equal(first0.narrow(0, 0, 64), other->next()->target));
}

TEST(Pipeline, RestoreStateContinuesWithIdenticalBatches) {
  auto ds = dataset(kAugmented);
  auto s = ds->train();
  s->start_epoch(3);
  for (int i = 0; i < 5; ++i) s->next();
  ktf::State state;
  s->save_state(state);
  EXPECT_EQ(state.at("epoch").as_int(), 3);
  EXPECT_EQ(state.at("position").as_int(), 5);
  std::vector<Batch> expected;
  for (int i = 0; i < 3; ++i) expected.push_back(*s->next());
  auto t = ds->train();
  t->load_state(state);
  for (const auto& e : expected) {
    auto b = t->next();
    ASSERT_TRUE(torch::equal(b->input, e.input));
    ASSERT_TRUE(torch::equal(b->target, e.target));
  }
  ktf::State after;
  t->save_state(after);
  EXPECT_EQ(after.at("position").as_int(), 8);
}

TEST(Pipeline, RestartAndDestroyMidEpochDoNotHang) {
  auto ds = dataset(R"({"ktf.datasets.synthetic": {"num_examples": 4096, "batch_size": 16,
      "prefetch": 4}})");
  for (int i = 0; i < 20; ++i) {
    auto s = ds->train();
    s->start_epoch(0);
    s->next();
    s->start_epoch(1);
    s->next();
  }  // destroyed with a full queue
  auto s = ds->train();
  int64_t n = 0;
  s->start_epoch(0);
  while (auto b = s->next()) n += b->input.size(0);
  EXPECT_EQ(n, 4096);
  EXPECT_FALSE(s->next());  // stays at the end
}

TEST(Pipeline, DropLastAndNoPrefetchGiveTheSameData) {
  auto a = dataset(R"({"ktf.datasets.synthetic": {"num_examples": 100, "batch_size": 32,
      "drop_last": true, "prefetch": 0, "seed": 3}})")
               ->train();
  auto b = dataset(R"({"ktf.datasets.synthetic": {"num_examples": 100, "batch_size": 32,
      "drop_last": true, "prefetch": 3, "seed": 3}})")
               ->train();
  EXPECT_EQ(a->num_batches(), 3);
  EXPECT_EQ(a->num_examples(), 96);
  auto x = epoch(*a), y = epoch(*b);
  EXPECT_EQ(x.input.size(0), 96);
  EXPECT_TRUE(torch::equal(x.input, y.input));
}

TEST(Pipeline, ThroughputWithAugmentation) {
  auto ds = dataset(R"({"ktf.datasets.fashion.fashion_mnist.from_idx": {"batch_size": 128,
      "transforms": [{"ktf.transforms.RandomCrop": {"padding": 2}},
                     {"ktf.transforms.RandomFlip": {}}]}})");
  auto s = ds->train();
  s->start_epoch(0);
  auto start = std::chrono::steady_clock::now();
  int64_t n = 0;
  while (auto b = s->next()) n += b->input.size(0);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double rate = n / secs;
  std::cout << "pipeline: " << static_cast<int64_t>(rate)
            << " samples/s (batch 128, crop + flip)\n";
  EXPECT_EQ(n, 60000);
  EXPECT_GT(rate, 10000);  // the target is > 50000 on an idle machine
}

// ---- transforms
// ------------------------------------------------------------------------------------

Batch apply(const std::string& json, Batch b, uint64_t seed = 1) {
  auto t = build<Transform>(Json::parse(json, "test"));
  auto gen = at::detail::createCPUGenerator(seed);
  return t->apply(std::move(b), gen);
}

TEST(Transforms, FlipCropTranslateEraseNormalize) {
  auto x = torch::arange(2 * 1 * 4 * 5, torch::kFloat32).view({2, 1, 4, 5});
  Batch b{x, torch::zeros({2}, torch::kLong)};
  EXPECT_TRUE(
      torch::equal(apply(R"({"ktf.transforms.RandomFlip": {"p": 1}})", b).input, x.flip({3})));
  EXPECT_TRUE(torch::equal(apply(R"({"ktf.transforms.RandomFlip": {"p": 0}})", b).input, x));
  EXPECT_TRUE(torch::equal(
      apply(R"({"ktf.transforms.RandomFlip": {"p": 1, "horizontal": false, "vertical": true}})", b)
          .input,
      x.flip({2})));
  auto crop = apply(R"({"ktf.transforms.RandomCrop": {"size": [2, 3]}})", b).input;
  ASSERT_EQ(crop.sizes(), (std::vector<int64_t>{2, 1, 2, 3}));
  for (int n = 0; n < 2; ++n) {  // each crop is a window of its own image
    bool found = false;
    for (int dy = 0; dy <= 2; ++dy)
      for (int dx = 0; dx <= 2; ++dx)
        found |= torch::equal(crop[n], x[n].narrow(1, dy, 2).narrow(2, dx, 3));
    EXPECT_TRUE(found) << n;
  }
  // Translation: every example is its image shifted by at most 1 pixel, zeros shifted in.
  auto big = torch::rand({64, 1, 6, 6}) + 1;
  auto moved = apply(R"({"ktf.transforms.RandomTranslation": {"max_pixels": 1}})",
                     Batch{big, torch::zeros({64}, torch::kLong)})
                   .input;
  auto padded = torch::constant_pad_nd(big, {1, 1, 1, 1}, 0);
  int shifted = 0;
  for (int n = 0; n < 64; ++n) {
    bool found = false;
    for (int dy = 0; dy <= 2; ++dy)
      for (int dx = 0; dx <= 2; ++dx)
        if (torch::equal(moved[n], padded[n].narrow(1, dy, 6).narrow(2, dx, 6))) {
          found = true;
          shifted += dy != 1 || dx != 1;
        }
    EXPECT_TRUE(found) << n;
  }
  EXPECT_GT(shifted, 32);
  auto erased = apply(R"({"ktf.transforms.RandomErasing": {"p": 1, "scale": [0.25, 0.25],
      "ratio": [1, 1], "value": 0}})",
                      Batch{big, torch::zeros({64}, torch::kLong)})
                    .input;
  auto zeros = (erased == 0).sum({1, 2, 3});
  EXPECT_TRUE(torch::equal(zeros, torch::full({64}, 9, torch::kLong)));  // 3x3 of 6x6
  auto norm = apply(R"({"ktf.transforms.Normalize": {"mean": [10], "std": [2]}})", b).input;
  EXPECT_TRUE(torch::allclose(norm, (x - 10) / 2));
  EXPECT_NE(error_of([&] {
              apply(R"({"ktf.transforms.RandomCrop": {"padding": -1}})", b);
            }).find("padding: must be >= 0, got -1"),
            std::string::npos);
}

// ---- synthetic
// -------------------------------------------------------------------------------------

TEST(Synthetic, BlobsAreLearnable) {
  auto ds = dataset(R"({"ktf.datasets.synthetic": {"num_examples": 2000, "num_valid": 500,
      "input_shape": [1, 8, 8], "num_classes": 5, "batch_size": 50, "seed": 1}})");
  EXPECT_EQ(ds->input_shape(), (std::vector<int64_t>{1, 8, 8}));
  EXPECT_EQ(ds->num_classes(), 5);
  torch::manual_seed(0);
  torch::nn::Linear model(64, 5);
  torch::optim::SGD opt(model->parameters(), 0.1);
  auto train = ds->train();
  for (int e = 0; e < 3; ++e) {
    train->start_epoch(e);
    while (auto b = train->next()) {
      opt.zero_grad();
      torch::nn::functional::cross_entropy(model(b->input.flatten(1)), b->target).backward();
      opt.step();
    }
  }
  torch::NoGradGuard ng;
  Batch v = epoch(*ds->valid());
  double acc =
      (model(v.input.flatten(1)).argmax(1) == v.target).to(torch::kFloat32).mean().item<double>();
  EXPECT_GT(acc, 0.9);
  auto same = epoch(*dataset(R"({"ktf.datasets.synthetic": {"num_examples": 2000,
      "num_valid": 500, "input_shape": [1, 8, 8], "num_classes": 5}})")
                         ->valid());
  EXPECT_TRUE(torch::equal(same.input, v.input));  // data depends on data_seed only
}

// ---- CSV and image folders
// -------------------------------------------------------------------------

TEST(Csv, ReadsColumnsLabelsAndMissingValues) {
  std::string file = std::string(KTF_DATASETS_TESTDATA) + "/tiny.csv";
  auto ds = dataset(R"({"ktf.datasets.csv": {"file": ")" + file +
                    R"(", "label_column": "label", "shuffle": false, "batch_size": 100}})");
  EXPECT_EQ(ds->input_shape(), (std::vector<int64_t>{3}));
  EXPECT_EQ(ds->num_classes(), 3);
  Batch all = epoch(*ds->train());
  EXPECT_EQ(all.input.size(0), 24);
  EXPECT_TRUE(torch::equal(all.target, torch::arange(24, torch::kLong).remainder(3)));
  auto by_index = dataset(R"({"ktf.datasets.csv": {"file": ")" + file +
                          R"(", "label_column": 3, "shuffle": false}})");
  EXPECT_TRUE(torch::equal(epoch(*by_index->train()).input, all.input));

  auto dir = scratch_dir("csv");
  spit(dir + "/m.csv", "a,b,y\n1,2,cat\n3,,dog\n5,6,cat\n");
  EXPECT_NE(error_of([&] {
              dataset(R"({"ktf.datasets.csv": {"file": ")" + dir + "/m.csv\"}}");
            }).find("CSV file '" + dir + "/m.csv': line 3, column 'b': missing value"),
            std::string::npos);
  auto filled = dataset(R"({"ktf.datasets.csv": {"file": ")" + dir +
                        R"(/m.csv", "fill_value": -1, "shuffle": false}})");
  Batch f = epoch(*filled->train());
  EXPECT_TRUE(torch::equal(f.input, torch::tensor({1.f, 2.f, 3.f, -1.f, 5.f, 6.f}).view({3, 2})));
  EXPECT_TRUE(torch::equal(f.target, torch::tensor({0, 1, 0}, torch::kLong)));
  EXPECT_EQ(filled->class_names(), (std::vector<std::string>{"cat", "dog"}));
  spit(dir + "/bad.csv", "a,y\n1,0\nx1,1\n");
  EXPECT_NE(error_of([&] {
              dataset(R"({"ktf.datasets.csv": {"file": ")" + dir + "/bad.csv\"}}");
            }).find("line 3, column 'a': 'x1' is not a number"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] {
        dataset(R"({"ktf.datasets.csv": {"file": ")" + file + R"(", "label_column": "nope"}})");
      }).find("label_column 'nope' is not a column"),
      std::string::npos);
}

TEST(ImageFolder, DecodesClassesAndResizes) {
  std::string dir = std::string(KTF_DATASETS_TESTDATA) + "/tiny-images";
  auto ds = dataset(R"({"ktf.datasets.image_folder": {"data_dir": ")" + dir +
                    R"(", "shuffle": false, "scale": false, "dtype": "uint8"}})");
  EXPECT_EQ(ds->class_names(), (std::vector<std::string>{"left", "right"}));
  EXPECT_EQ(ds->input_shape(), (std::vector<int64_t>{1, 8, 8}));
  Batch all = epoch(*ds->train());
  EXPECT_TRUE(torch::equal(all.target, torch::tensor({0, 0, 0, 1, 1, 1}, torch::kLong)));
  auto png = decode_png(slurp(dir + "/right/1.png"), "right/1.png");
  EXPECT_TRUE(torch::equal(all.input[4][0], png.select(2, 0)));
  auto small = dataset(R"({"ktf.datasets.image_folder": {"data_dir": ")" + dir +
                       R"(", "image_size": [4, 4], "channels": 3}})");
  EXPECT_EQ(small->input_shape(), (std::vector<int64_t>{3, 4, 4}));
  auto scratch = scratch_dir("image_folder");
  fs::create_directories(scratch + "/a");
  spit(scratch + "/a/broken.png", "\x89PNG\r\n\x1a\nnot really");
  EXPECT_NE(error_of([&] {
              dataset(R"({"ktf.datasets.image_folder": {"data_dir": ")" + scratch + "\"}}");
            }).find("image file '" + scratch + "/a/broken.png': cannot decode PNG"),
            std::string::npos);
}

// ---- viewer
// ----------------------------------------------------------------------------------------

TEST(Viewer, WritesContactSheetsWithLabels) {
  auto ds = dataset(R"({"ktf.datasets.synthetic": {"num_examples": 64, "input_shape": [1, 8, 8],
      "transforms": [{"ktf.transforms.RandomFlip": {"p": 1}}]}})");
  auto dir = scratch_dir("viewer");
  write_contact_sheet(*ds, dir + "/raw.png", 9, false);
  write_contact_sheet(*ds, dir + "/aug.png", 9, true);
  auto raw = decode_png(slurp(dir + "/raw.png"), "raw.png");
  auto aug = decode_png(slurp(dir + "/aug.png"), "aug.png");
  EXPECT_EQ(raw.size(2), 3);
  EXPECT_EQ(raw.size(1), aug.size(1));
  EXPECT_GT(aug.size(0), raw.size(0) * 3 / 2);                  // two rows per grid row
  EXPECT_GT((raw == 255).all(2).sum().item<int64_t>(), 9 * 5);  // white label digits
  // The augmented row is the raw row flipped (p = 1).
  auto sheet = render_contact_sheet(*ds, 1, true);
  auto top = sheet.narrow(0, 2, 8).narrow(1, 2, 8),
       below = sheet.narrow(0, 2 + 8 + 14 + 2, 8).narrow(1, 2, 8);
  EXPECT_TRUE(torch::equal(top.flip({1}), below));
}

// ---- every component's spec example builds and works -------------------------------------------

TEST(Examples, EveryDatasetAndTransformExampleWorks) {
  int datasets = 0, transforms = 0;
  for (const ComponentDef* def : plugins().list()) {
    if (def->spec.plugin != "ktf_datasets") continue;
    SCOPED_TRACE(def->spec.name);
    Json component = Json::object({{def->spec.name, def->spec.example}});
    if (def->spec.kind == Kind::Dataset) {
      auto ds = build<Dataset>(component);
      auto s = ds->train();
      s->start_epoch(0);
      auto b = s->next();
      ASSERT_TRUE(b);
      std::vector<int64_t> shape(b->input.sizes().begin() + 1, b->input.sizes().end());
      EXPECT_EQ(shape, ds->input_shape());
      ++datasets;
    } else if (def->spec.kind == Kind::Transform) {
      auto t = build<Transform>(component);
      std::vector<int64_t> shape{4};
      shape.insert(shape.end(), def->spec.example_input.begin(), def->spec.example_input.end());
      auto gen = at::detail::createCPUGenerator(0);
      auto out = t->apply(Batch{torch::rand(shape), torch::zeros({4}, torch::kLong)}, gen);
      EXPECT_EQ(out.input.sizes(), torch::IntArrayRef(shape));
      ++transforms;
    }
  }
  EXPECT_EQ(datasets, 7);
  EXPECT_EQ(transforms, 5);
}

// ---- IDX errors
// ------------------------------------------------------------------------------------

TEST(IdxErrors, MissingFilesBadMagicCountsTruncationCorruptGzip) {
  EXPECT_NE(
      error_of([] {
        dataset(R"({"ktf.datasets.digits.mnist.from_idx": {"data_dir": "/nonexistent/mnist"}})");
      }).find("data_dir '/nonexistent/mnist' not found"),
      std::string::npos);
  auto dir = scratch_dir("idx_errors");
  std::string images = gunzip(fashion("t10k-images-idx3-ubyte.gz"));
  std::string labels = gunzip(fashion("t10k-labels-idx1-ubyte.gz"));
  auto build_with = [&](const std::string& img, const std::string& lab) {
    dataset(R"({"ktf.datasets.from_idx": {"train_images": ")" + img + R"(", "train_labels": ")" +
            lab + "\"}}");
  };
  std::string good_img = dir + "/images", good_lab = dir + "/labels";
  spit(good_img, images);
  spit(good_lab, labels);
  EXPECT_NE(error_of([&] {
              build_with(dir + "/absent", good_lab);
            }).find("IDX file '" + dir + "/absent' not found"),
            std::string::npos);
  std::string bad = images;
  bad[2] = 0x42;
  spit(dir + "/magic", bad);
  EXPECT_NE(error_of([&] {
              build_with(dir + "/magic", good_lab);
            }).find("IDX file '" + dir + "/magic': bad magic number 0x00004203"),
            std::string::npos);
  // A valid type byte does not make a magic number: the first two bytes must be zero, and the
  // dimension count 1..8.
  for (auto [at, value, text] : {std::tuple<int, char, const char*>{0, 0x12, "0x12000803"},
                                 {1, 0x01, "0x00010803"},
                                 {3, 0x00, "0x00000800"},
                                 {3, 0x09, "0x00000809"}}) {
    std::string wrong = images;
    wrong[at] = value;
    spit(dir + "/magic2", wrong);
    EXPECT_NE(error_of([&] {
                build_with(dir + "/magic2", good_lab);
              }).find(std::string("bad magic number ") + text),
              std::string::npos)
        << text;
  }
  std::string fewer = labels;
  fewer[6] = static_cast<char>(0x27);  // 9999 = 0x270f labels declared
  fewer[7] = static_cast<char>(0x0f);
  spit(dir + "/fewer", fewer.substr(0, 8 + 9999));
  EXPECT_NE(error_of([&] {
              build_with(good_img, dir + "/fewer");
            }).find("(10000 images) and '" + dir + "/fewer' (9999 labels): counts differ"),
            std::string::npos);
  // Dimensions whose product overflows 64 bits: refused by the size check, not allocated.
  std::string huge = images.substr(0, 16);
  for (int i = 4; i < 16; ++i) huge[i] = static_cast<char>(0xff);
  spit(dir + "/huge", huge + std::string(64, '\0'));
  EXPECT_NE(error_of([&] { build_with(dir + "/huge", good_lab); })
                .find("IDX file '" + dir +
                      "/huge': the header declares dimensions 4294967295 x 4294967295 x "
                      "4294967295, more data than any file holds (their product overflows 64 "
                      "bits)"),
            std::string::npos);
  // A label no class index: the file and the record named, at build time (exit code 2).
  std::string big_label = labels;
  big_label[8 + 123] = 12;
  spit(dir + "/label12", big_label);
  const std::string label_error = error_of([&] {
    dataset(R"({"ktf.datasets.from_idx": {"train_images": ")" + good_img +
            R"(", "train_labels": ")" + dir + R"(/label12", "num_classes": 10}})");
  });
  EXPECT_NE(label_error.find("IDX file '" + dir +
                             "/label12': label 12 of record 123 is not a class index from 0 to 9 "
                             "(num_classes 10)"),
            std::string::npos)
      << label_error;
  spit(dir + "/truncated", images.substr(0, 5000));
  EXPECT_NE(error_of([&] { build_with(dir + "/truncated", good_lab); })
                .find("IDX file '" + dir +
                      "/truncated': truncated: the header declares 7840000 bytes of data but the "
                      "file has 4984"),
            std::string::npos);
  std::string gz = slurp(fashion("t10k-images-idx3-ubyte.gz"));
  spit(dir + "/cut.gz", gz.substr(0, gz.size() / 2));
  EXPECT_NE(error_of([&] {
              build_with(dir + "/cut.gz", good_lab);
            }).find("IDX file '" + dir + "/cut.gz': corrupt compressed data"),
            std::string::npos);
  std::string flipped = gz;
  for (size_t i = 1000; i < 1100; ++i) flipped[i] = static_cast<char>(~flipped[i]);
  spit(dir + "/flipped.gz", flipped);
  EXPECT_NE(error_of([&] {
              build_with(dir + "/flipped.gz", good_lab);
            }).find("IDX file '" + dir + "/flipped.gz': corrupt compressed data"),
            std::string::npos);
}

}  // namespace
}  // namespace ktf::test
