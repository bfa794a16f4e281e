// TFRecord reader (framing, CRCs, GZIP) and ktf.datasets.from_tfrecord's decoding of the
// records' tf.train.Examples: a uint8 image [2, 2, 1] stored raw and an int64 label of 3 classes.
#include <ktf/example.h>
#include <ktf/tfrecord.h>

#include "fuzz_common.h"

KTF_FUZZ_TARGET(fuzz_tfrecord)(const uint8_t* data, size_t size) {
  using namespace ktf;
  auto path = fuzz::write_file("data.tfrecord", {reinterpret_cast<const char*>(data), size});
  fuzz::expect_clean([&] {
    TFRecordReader reader(path);
    std::string record;
    for (int i = 0; i < 64 && reader.read(record); ++i)
      parse_example(record, "record " + std::to_string(i));
  });
  fuzz::expect_clean([&] {
    Json features =
        Json::object({{"image", Json::object({{"dtype", "uint8"},
                                              {"shape", Json::array({2, 2, 1})},
                                              {"encoding", "raw"}})},
                      {"label", Json::object({{"dtype", "int64"}, {"shape", Json::array()}})}});
    fuzz::build_and_read("ktf.datasets.from_tfrecord", Json::object({{"files", Json::array({path})},
                                                                     {"features", features},
                                                                     {"num_classes", 3},
                                                                     {"batch_size", 2}}));
  });
  return 0;
}
