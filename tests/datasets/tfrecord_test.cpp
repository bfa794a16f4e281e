// TFRecord: files written by TensorFlow, ktf.datasets.from_tfrecord, the converter round trip and
// corrupt files.
#include <gtest/gtest.h>
#include <ktf/convert.h>
#include <ktf/example.h>
#include <ktf/image.h>
#include <ktf/tfrecord.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "test_util.h"

namespace ktf::test {
namespace {

namespace fs = std::filesystem;

std::string toy_dir() {
  return std::string(KTF_SOURCE_DIR) + "/tests/datasets/testdata/tensorflow";
}
std::string toy_plain() { return toy_dir() + "/toy.nocompress-tfe-tfrecord-00000-of-00002"; }
std::string toy_gzip() { return toy_dir() + "/toy.tfe-tfrecord-00000-of-00002"; }

std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(slurp(path));
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields;
    std::string field;
    std::istringstream ls(line);
    while (std::getline(ls, field, ',')) fields.push_back(field);
    if (!line.empty() && line.back() == ',') fields.push_back("");
    rows.push_back(fields);
  }
  return rows;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Every value of both TensorFlow-written files against toy.csv: numbers are float_list, booleans
// int64_list, categories bytes_list, sets several bytes (the writer lower-cased set items), and
// missing cells (empty or NA) are features with no list.
TEST(TFRecordFromTensorFlow, EveryValueMatchesTheCsv) {
  auto csv = read_csv(toy_dir() + "/toy.csv");
  const auto& header = csv[0];
  for (const auto& path : {toy_plain(), toy_gzip()}) {
    TFRecordReader reader(path);
    std::string record;
    int64_t n = 0;
    while (reader.read(record)) {
      auto ex = parse_example(record, path);
      ASSERT_EQ(ex.size(), header.size());
      ASSERT_EQ(ex.at("Num_1").kind, Feature::Float);
      size_t row = static_cast<size_t>(ex.at("Num_1").floats.at(0));  // Num_1 is the row number
      ASSERT_GE(row, 1u);
      ASSERT_LT(row, csv.size());
      for (size_t c = 0; c < header.size(); ++c) {
        const std::string& name = header[c];
        const std::string& cell = csv[row][c];
        const Feature& f = ex.at(name);
        SCOPED_TRACE(path + " row " + std::to_string(row) + " column " + name);
        if (cell.empty() || cell == "NA") {
          EXPECT_EQ(f.kind, Feature::None);
          EXPECT_EQ(f.size(), 0u);
        } else if (name.rfind("Num", 0) == 0 || name == "Cat_3") {
          ASSERT_EQ(f.kind, Feature::Float);
          ASSERT_EQ(f.floats.size(), 1u);
          EXPECT_EQ(f.floats[0], std::stof(cell));
        } else if (name.rfind("Bool", 0) == 0) {
          ASSERT_EQ(f.kind, Feature::Int64);
          EXPECT_EQ(f.ints, (std::vector<int64_t>{std::stoll(cell)}));
        } else if (name.rfind("Cat_set", 0) == 0) {
          ASSERT_EQ(f.kind, Feature::Bytes);
          std::vector<std::string> items;
          std::istringstream is(cell);
          for (std::string s; is >> s;) items.push_back(lower(s));
          EXPECT_EQ(f.bytes, items);
        } else {
          ASSERT_EQ(f.kind, Feature::Bytes);
          EXPECT_EQ(f.bytes, (std::vector<std::string>{cell}));
        }
      }
      ++n;
    }
    EXPECT_EQ(n, 3) << path;  // the first shard holds rows 1..3
  }
}

TEST(TFRecordFromTensorFlow, FromTFRecordReadsFeaturesAndNamesBadOnes) {
  auto spec = [](const std::string& extra) {
    return R"({"ktf.datasets.from_tfrecord": {"files": [")" + toy_dir() +
           R"(/toy.*tfrecord*"], "shuffle": false, "image_key": "Num_1", "label_key": "Bool_1",
           "features": {"Num_1": {"dtype": "float32", "shape": [1], "encoding": "float"},
                        "Bool_1": {"dtype": "int64", "shape": [], "encoding": "int64"})" +
           extra + "}}}";
  };
  auto ds = dataset(spec(""));
  EXPECT_EQ(ds->input_shape(), (std::vector<int64_t>{1}));
  EXPECT_FALSE(ds->valid());
  Batch all = epoch(*ds->train());  // both files, read in turn
  EXPECT_TRUE(torch::equal(all.input.view({-1}), torch::tensor({1.f, 1.f, 2.f, 2.f, 3.f, 3.f})));
  EXPECT_TRUE(torch::equal(all.target, torch::tensor({0, 0, 1, 1, 0, 0}, torch::kLong)));
  EXPECT_EQ(ds->train()->num_examples(), 6);

  auto fails = [&](const std::string& image_key, const std::string& extra) {
    std::string json = spec(extra);
    json.replace(json.find("\"Num_1\", \"label_key\""), 7, "\"" + image_key + "\"");
    return error_of([&] { epoch(*dataset(json)->train()); });
  };
  std::string e =
      fails("Num_2", R"(, "Num_2": {"dtype": "float32", "shape": [1], "encoding": "float"})");
  EXPECT_NE(e.find("TFRecord file '" + toy_plain() +
                   "': record 0: feature 'Num_2' is empty (a missing value), expected float_list"),
            std::string::npos)
      << e;
  e = fails("Cat_1", R"(, "Cat_1": {"dtype": "float32", "shape": [1], "encoding": "float"})");
  EXPECT_NE(e.find("record 0: feature 'Cat_1' is bytes_list, expected float_list"),
            std::string::npos)
      << e;
  e = fails("nope", R"(, "nope": {"dtype": "float32", "shape": [1], "encoding": "float"})");
  EXPECT_NE(e.find("record 0: feature 'nope' absent (the record has: Bool_1, Bool_2, Cat_1"),
            std::string::npos)
      << e;
  e = fails("Cat_set_1", R"(, "Cat_set_1": {"dtype": "uint8", "shape": [1], "encoding": "raw"})");
  EXPECT_NE(e.find("record 1: feature 'Cat_set_1' has 2 bytes values, expected 1"),
            std::string::npos)
      << e;
  e = error_of([&] {
    dataset(R"({"ktf.datasets.from_tfrecord": {"files": [")" + toy_dir() + R"(/none-*"]}})");
  });
  EXPECT_NE(e.find("files: no file matches '" + toy_dir() + "/none-*'"), std::string::npos) << e;
}

TEST(TFRecordFiles, WriterAndReaderRoundTripPlainAndGzip) {
  auto dir = scratch_dir("tfrecord_rw");
  for (bool gzip : {false, true}) {
    std::string path = dir + (gzip ? "/a.gz" : "/a");
    {
      TFRecordWriter w(path, gzip);
      for (int i = 0; i < 100; ++i)
        w.write(serialize_example({{"i", Feature::int64_list({i, -i})},
                                   {"s", Feature::bytes_list({std::string(i, 'x')})},
                                   {"f", Feature::float_list({0.5f * i})}}));
    }
    EXPECT_EQ(slurp(path).substr(0, 2) == "\x1f\x8b", gzip);
    TFRecordReader r(path);
    std::string rec;
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE(r.read(rec));
      auto ex = parse_example(rec, "x");
      EXPECT_EQ(ex.at("i").ints, (std::vector<int64_t>{i, -i}));
      EXPECT_EQ(ex.at("s").bytes.at(0).size(), static_cast<size_t>(i));
      EXPECT_EQ(ex.at("f").floats.at(0), 0.5f * i);
    }
    EXPECT_FALSE(r.read(rec));
  }
  // The masked CRC-32C of TensorFlow's framing (crc32c("123456789") = 0xe3069283).
  EXPECT_EQ(crc32c("123456789"), 0xe3069283u);
}

TEST(TFRecordFiles, CorruptFilesNameFileRecordAndOffset) {
  auto dir = scratch_dir("tfrecord_corrupt");
  std::string plain = slurp(toy_plain());
  auto read_all = [](const std::string& path) {
    TFRecordReader r(path);
    std::string rec;
    while (r.read(rec)) parse_example(rec, path);
  };
  std::string crc = plain;
  // Record 1 starts after record 0 (16 + length bytes); flip a data byte of record 1.
  uint64_t len0 = static_cast<unsigned char>(plain[0]) | static_cast<unsigned char>(plain[1]) << 8;
  size_t start1 = 16 + len0;
  crc[start1 + 12 + 5] = static_cast<char>(crc[start1 + 12 + 5] ^ 0x20);
  spit(dir + "/crc", crc);
  EXPECT_NE(error_of([&] { read_all(dir + "/crc"); })
                .find("TFRecord file '" + dir + "/crc': record 1 at byte " +
                      std::to_string(start1) + ": data CRC mismatch"),
            std::string::npos);
  spit(dir + "/trunc", plain.substr(0, plain.size() - 10));
  EXPECT_NE(error_of([&] { read_all(dir + "/trunc"); }).find("record 2 at byte"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_all(dir + "/trunc"); }).find("truncated"), std::string::npos);
  std::string gz = slurp(toy_gzip());
  spit(dir + "/cut.gz", gz.substr(0, gz.size() - 30));
  EXPECT_NE(error_of([&] { read_all(dir + "/cut.gz"); }).find("TFRecord file '" + dir + "/cut.gz'"),
            std::string::npos);
  std::string bad = gz;
  for (size_t i = 20; i < 60; ++i) bad[i] = static_cast<char>(~bad[i]);
  spit(dir + "/bad.gz", bad);
  EXPECT_NE(error_of([&] { read_all(dir + "/bad.gz"); }).find("TFRecord file '" + dir + "/bad.gz'"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_example("\xff\xff\xff", "rec 7");
            }).find("rec 7: malformed tf.train.Example (3 bytes)"),
            std::string::npos);
  // Through the dataset, the error reaches next() from the prefetch thread.
  auto copy = dir + "/ds";
  fs::create_directories(copy);
  spit(copy + "/part-0.tfrecord", crc);
  auto ds = dataset(R"({"ktf.datasets.from_tfrecord": {"files": [")" + copy +
                    R"(/part-*"], "image_key": "Num_1", "label_key": "Bool_1", "batch_size": 1,
      "features": {"Num_1": {"dtype": "float32", "shape": [1]}, "Bool_1": {"dtype": "int64"}}}})");
  auto s = ds->train();
  s->start_epoch(0);
  EXPECT_NE(error_of([&] {
              while (s->next()) {
              }
            }).find("data CRC mismatch"),
            std::string::npos);
}

// Fashion-MNIST test split: IDX -> TFRecord shards -> from_tfrecord gives the same images and
// labels, and with the same seed the same shuffled, augmented batches.
TEST(Convert, IdxToTFRecordRoundTrip) {
  const std::string fm = fashion_mnist_dir();
  auto idx = [&](const std::string& extra) {
    return R"({"ktf.datasets.from_idx": {"train_images": ")" + fm +
           R"(/t10k-images-idx3-ubyte.gz", "train_labels": ")" + fm +
           R"(/t10k-labels-idx1-ubyte.gz", "validation": "none", "batch_size": 500)" + extra + "}}";
  };
  auto raw = dataset(idx(R"(, "shuffle": false, "scale": false, "dtype": "uint8")"));
  Batch expected = epoch(*raw->train());
  for (bool gzip : {false, true}) {
    auto dir = scratch_dir(gzip ? "convert_gz" : "convert");
    std::vector<std::string> lines;
    convert_to_tfrecord(*raw, dir, 3, gzip, [&](const std::string& l) { lines.push_back(l); });
    EXPECT_TRUE(fs::exists(dir + "/train-00002-of-00003.tfrecord"));
    EXPECT_TRUE(fs::exists(dir + "/features.json"));
    EXPECT_FALSE(fs::exists(dir + "/valid-00000-of-00003.tfrecord"));
    ASSERT_FALSE(lines.empty());
    EXPECT_NE(lines[0].find("wrote 10000 train examples to 3 shard(s)"), std::string::npos);
    auto back = dataset(R"({"ktf.datasets.from_tfrecord": {"files": [")" + dir +
                        R"(/train-*"], "shuffle": false, "scale": false, "dtype": "uint8",
                            "batch_size": 500}})");
    EXPECT_EQ(back->num_classes(), 10);
    EXPECT_EQ(back->input_shape(), (std::vector<int64_t>{1, 28, 28}));
    Batch got = epoch(*back->train());
    EXPECT_TRUE(torch::equal(got.input, expected.input));
    EXPECT_TRUE(torch::equal(got.target, expected.target));
    if (gzip) continue;
    const std::string aug = R"(, "seed": 11, "batch_size": 128, "transforms": [
        {"ktf.transforms.RandomCrop": {"padding": 2}}, {"ktf.transforms.RandomErasing": {}}])";
    auto a = dataset(idx(aug))->train();
    auto b = dataset(R"({"ktf.datasets.from_tfrecord": {"files": [")" + dir +
                     R"(/train-*"], "shuffle_buffer": 10000)" + aug + "}}")
                 ->train();
    for (int e = 0; e < 2; ++e) {
      a->start_epoch(e);
      b->start_epoch(e);
      int64_t batches = 0;
      while (auto x = a->next()) {
        auto y = b->next();
        ASSERT_TRUE(y);
        ASSERT_TRUE(torch::equal(x->input, y->input));
        ASSERT_TRUE(torch::equal(x->target, y->target));
        ++batches;
      }
      EXPECT_FALSE(b->next());
      EXPECT_EQ(batches, 79);
    }
    // Streaming restore: a small shuffle buffer, resumed mid-epoch.
    auto small = dataset(R"({"ktf.datasets.from_tfrecord": {"files": [")" + dir +
                         R"(/train-*"], "shuffle_buffer": 100, "batch_size": 64, "seed": 2}})");
    auto s = small->train();
    s->start_epoch(1);
    for (int i = 0; i < 4; ++i) s->next();
    ktf::State state;
    s->save_state(state);
    auto want = s->next();
    auto t = small->train();
    t->load_state(state);
    auto have = t->next();
    EXPECT_TRUE(torch::equal(want->input, have->input));
  }
}

TEST(Convert, PngFeaturesDecode) {
  auto dir = scratch_dir("png_features");
  auto img = torch::randint(0, 256, {5, 6, 3}, torch::kLong).to(torch::kUInt8);
  {
    TFRecordWriter w(dir + "/p.tfrecord");
    for (int i = 0; i < 3; ++i)
      w.write(serialize_example({{"image", Feature::bytes_list({encode_png(img)})},
                                 {"label", Feature::int64_list({i})}}));
  }
  auto ds = dataset(R"({"ktf.datasets.from_tfrecord": {"files": [")" + dir +
                    R"(/p.tfrecord"], "shuffle": false, "scale": false, "dtype": "uint8",
      "features": {"image": {"dtype": "uint8", "shape": [5, 6, 3], "encoding": "png"},
                   "label": {"dtype": "int64", "shape": [], "encoding": "int64"}}}})");
  EXPECT_EQ(ds->input_shape(), (std::vector<int64_t>{3, 5, 6}));
  Batch all = epoch(*ds->train());
  EXPECT_TRUE(torch::equal(all.input[2], img.permute({2, 0, 1})));
  auto wrong = dataset(R"({"ktf.datasets.from_tfrecord": {"files": [")" + dir +
                       R"(/p.tfrecord"], "features": {
      "image": {"dtype": "uint8", "shape": [6, 6, 3], "encoding": "png"},
      "label": {"dtype": "int64"}}}})");
  EXPECT_NE(error_of([&] {
              epoch(*wrong->train());
            }).find("record 0: feature 'image': image is 5x6, expected 6x6"),
            std::string::npos);
  auto jpeg = dataset(R"({"ktf.datasets.from_tfrecord": {"files": [")" + dir +
                      R"(/p.tfrecord"], "features": {
      "image": {"dtype": "uint8", "shape": [5, 6, 3], "encoding": "jpeg"},
      "label": {"dtype": "int64"}}}})");
  EXPECT_NE(error_of([&] {
              epoch(*jpeg->train());
            }).find("record 0: feature 'image': cannot decode JPEG"),
            std::string::npos);
}

}  // namespace
}  // namespace ktf::test
