// Bad data files end in one clear error naming the file and the place (issue 15): NUL bytes and
// labels outside the classes in CSV files, empty class folders, image headers declaring more
// pixels than memory or the file can hold, TFRecord labels outside the classes, synthetic shapes
// whose size overflows.
#include <gtest/gtest.h>
#include <ktf/example.h>
#include <ktf/image.h>
#include <ktf/tfrecord.h>
#include <zlib.h>

#include <filesystem>

#include "test_util.h"

namespace ktf::test {
namespace {

namespace fs = std::filesystem;

std::string csv_error(const std::string& dir, const std::string& name, const std::string& text,
                      const std::string& extra = "") {
  spit(dir + "/" + name, text);
  return error_of([&] {
    dataset(R"({"ktf.datasets.csv": {"file": ")" + dir + "/" + name + "\"" + extra + "}}");
  });
}

TEST(CsvErrors, NulBytesLabelsOutsideTheClassesAndNonFiniteValuesNameTheLine) {
  auto dir = scratch_dir("csv_errors");
  using namespace std::string_literals;
  EXPECT_EQ(csv_error(dir, "nul.csv", "a,y\n1,0\n2\0,1\n"s),
            "ktf.datasets.csv: CSV file '" + dir +
                "/nul.csv': line 3 holds a NUL byte (byte 9): a CSV file is text; is it a "
                "binary file?");
  EXPECT_NE(csv_error(dir, "negative.csv", "a,y\n1,0\n2,-1\n")
                .find("CSV file '" + dir +
                      "/negative.csv': line 3, column 'y': label -1 is not a class index "
                      "(negative)"),
            std::string::npos);
  EXPECT_NE(csv_error(dir, "above.csv", "a,y\n1,0\n2,1\n3,5\n", R"(, "num_classes": 2)")
                .find("CSV file '" + dir +
                      "/above.csv': line 4, column 'y': label 5 is not a class index from 0 to 1 "
                      "(num_classes 2)"),
            std::string::npos);
  EXPECT_NE(csv_error(dir, "overflow.csv", "a,y\n1,0\n2,99999999999999999999\n")
                .find("line 3, column 'y': label '99999999999999999999' is not a class index (an "
                      "integer too large)"),
            std::string::npos);
  // Without num_classes the class count comes from the labels: a label of 20 million would make a
  // model head of 20 million outputs.
  EXPECT_NE(csv_error(dir, "inferred.csv", "a,y\n1,0\n2,20000000\n")
                .find("line 3, column 'y': label 20000000 is too large for a class index counted "
                      "from the labels (set num_classes to have more than 16777216 classes)"),
            std::string::npos);
  EXPECT_NE(csv_error(dir, "inf.csv", "a,y\ninf,0\n")
                .find("line 2, column 'a': 'inf' is not a finite number"),
            std::string::npos);
  EXPECT_NE(csv_error(dir, "prefix.csv", "a,y\n1.5x,0\n")
                .find("line 2, column 'a': '1.5x' is not a number"),
            std::string::npos);
  // A huge cell is not echoed whole: the message keeps its start and end.
  const std::string huge = csv_error(dir, "huge.csv", "a,y\n" + std::string(1 << 20, 'z') + ",0\n");
  EXPECT_LT(huge.size(), 2500u);
  EXPECT_NE(huge.find("CSV file '" + dir + "/huge.csv': line 2, column 'a': 'zzz"),
            std::string::npos)
      << huge.substr(0, 300);
  EXPECT_NE(huge.find("bytes ...] zzz"), std::string::npos);
  EXPECT_NE(huge.find("' is not a number"), std::string::npos);
}

TEST(CsvErrors, AFileLargerThanMemoryIsRefusedBeforeReading) {
  auto dir = scratch_dir("csv_huge");
  const std::string path = dir + "/huge.csv";
  spit(path, "a,y\n");
  fs::resize_file(path, uintmax_t{1} << 42);  // 4 TiB, sparse: nothing is written
  const std::string e =
      error_of([&] { dataset(R"({"ktf.datasets.csv": {"file": ")" + path + "\"}}"); });
  EXPECT_EQ(
      e.rfind("ktf.datasets.csv: reading CSV file '" + path + "' needs 4.0 TiB, more than the ", 0),
      0u)
      << e;
  EXPECT_NE(e.find(" of memory this machine has available"), std::string::npos) << e;
}

TEST(IdxErrors, ADimensionOfZeroIsRefused) {
  // Found by fuzz_idx: an empty tensor's null data pointer went to memcpy (undefined behaviour).
  auto dir = scratch_dir("idx_zero");
  spit(dir + "/images", std::string("\0\0\x08\x03\0\0\0\0\0\0\0\x02\0\0\0\x02", 16));
  spit(dir + "/labels", std::string("\0\0\x08\x01\0\0\0\0", 8));
  EXPECT_EQ(error_of([&] {
              dataset(R"({"ktf.datasets.from_idx": {"train_images": ")" + dir +
                      R"(/images", "train_labels": ")" + dir + "/labels\"}}");
            }),
            "ktf.datasets.from_idx: IDX file '" + dir +
                "/images': the header declares a dimension of 0: the file holds no data");
}

TEST(ImageFolderErrors, AnEmptyClassFolderIsAnError) {
  auto dir = scratch_dir("image_folder_empty");
  fs::copy(std::string(KTF_DATASETS_TESTDATA) + "/tiny-images", dir + "/data",
           fs::copy_options::recursive);
  fs::create_directories(dir + "/data/middle");
  spit(dir + "/data/middle/notes.txt", "not an image");
  EXPECT_EQ(error_of([&] {
              dataset(R"({"ktf.datasets.image_folder": {"data_dir": ")" + dir + "/data\"}}");
            }),
            "ktf.datasets.image_folder: data_dir '" + dir +
                "/data': class folder 'middle' holds no .png/.jpg/.jpeg images (remove the "
                "folder, or add its images)");
}

/// A PNG whose IHDR declares width x height (8-bit RGB) and whose IDAT is a few bytes.
std::string png_declaring(uint32_t width, uint32_t height) {
  auto be32 = [](uint32_t v) {
    return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                       static_cast<char>(v >> 8), static_cast<char>(v)};
  };
  auto chunk = [&](const std::string& kind, const std::string& data) {
    std::string body = kind + data;
    uLong crc = crc32(0, reinterpret_cast<const Bytef*>(body.data()), body.size());
    return be32(static_cast<uint32_t>(data.size())) + body + be32(static_cast<uint32_t>(crc));
  };
  std::string ihdr = be32(width) + be32(height) + std::string{8, 2, 0, 0, 0};
  return std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) +
         chunk("IDAT", std::string("\x78\x9c\x03\x00\x00\x00\x00\x01", 8)) + chunk("IEND", "");
}

TEST(ImageErrors, HeadersDeclaringHugeImagesAreRefusedBeforeAllocating) {
  EXPECT_EQ(error_of([] { decode_png(png_declaring(1000000, 1000000), "big.png"); }),
            "big.png: cannot decode PNG (1000000 x 1000000 pixels: more than the 1024 MiB an "
            "image may decode to)");
  EXPECT_EQ(error_of([] { decode_png(png_declaring(4000, 4000), "bomb.png"); }),
            "bomb.png: cannot decode PNG (the header declares 4000 x 4000 pixels, more than its "
            "65 bytes can hold)");
  // Declaring what its data can hold, the file gets to the decoder, which names it.
  EXPECT_NE(error_of([] { decode_png(png_declaring(2, 2), "small.png"); }).find("small.png"),
            std::string::npos);
  // A JPEG whose frame header (SOF0) claims 60000 x 60000: the seed of the fuzz corpus, patched.
  std::string jpeg =
      slurp(std::string(KTF_SOURCE_DIR) + "/fuzz/corpus/fuzz_image/jpeg-rgb").substr(1);
  size_t sof = jpeg.find("\xff\xc0");
  ASSERT_NE(sof, std::string::npos);
  for (size_t i : {sof + 5, sof + 7}) {
    jpeg[i] = static_cast<char>(60000 >> 8);
    jpeg[i + 1] = static_cast<char>(60000 & 255);
  }
  auto dir = scratch_dir("jpeg_huge");
  fs::create_directories(dir + "/data/a");
  spit(dir + "/data/a/x.jpg", jpeg);
  EXPECT_NE(error_of([&] {
              dataset(R"({"ktf.datasets.image_folder": {"data_dir": ")" + dir + "/data\"}}");
            })
                .find("image file '" + dir +
                      "/data/a/x.jpg': cannot decode JPEG (60000 x 60000 pixels: more than the "
                      "1024 MiB an image may decode to)"),
            std::string::npos);
}

TEST(TFRecordErrors, LabelsOutsideTheClassesNameFileAndRecord) {
  auto dir = scratch_dir("tfrecord_labels");
  {
    TFRecordWriter w(dir + "/l.tfrecord");
    for (int64_t label : {0, 2, 5})
      w.write(serialize_example(
          {{"image", Feature::float_list({1.f, 2.f})}, {"label", Feature::int64_list({label})}}));
  }
  const std::string features = R"("features": {"image": {"dtype": "float32", "shape": [2]},
      "label": {"dtype": "int64", "shape": []}})";
  auto ds = dataset(R"({"ktf.datasets.from_tfrecord": {"files": [")" + dir +
                    R"(/l.tfrecord"], "shuffle": false, "num_classes": 3, )" + features + "}}");
  EXPECT_NE(error_of([&] { epoch(*ds->train()); })
                .find("TFRecord file '" + dir +
                      "/l.tfrecord': record 2: label 5 is not a class index from 0 to 2 "
                      "(num_classes 3)"),
            std::string::npos);
  spit(dir + "/features.json", R"({"features": {"image": {"dtype": "float32", "shape": [2]},
      "label": {"dtype": "int64", "shape": []}}, "num_classes": -2})");
  EXPECT_NE(error_of([&] {
              dataset(R"({"ktf.datasets.from_tfrecord": {"files": [")" + dir + "/l.tfrecord\"]}}");
            })
                .find("features file '" + dir +
                      "/features.json': num_classes must be a positive integer (or -1: not "
                      "classes), got integer -2"),
            std::string::npos);
}

TEST(SyntheticErrors, ShapesWhoseSizeOverflowsAreRefused) {
  EXPECT_EQ(error_of([] {
              dataset(R"({"ktf.datasets.synthetic": {"input_shape": [100000, 100000, 100000,
                  100000]}})");
            }),
            "ktf.datasets.synthetic: input_shape [100000, 100000, 100000, 100000] "
            "with 1024 + 256 examples is more data than any machine holds (its size overflows 64 "
            "bits)");
}

}  // namespace
}  // namespace ktf::test
