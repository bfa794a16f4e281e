// ktf/example.h — tf.train.Example records, parsed and written without exposing protobuf.
//
// TFRecord files (tfrecord.h) hold one serialized `tf.train.Example` per record: a map from a
// feature key to a list of bytes, floats or int64s. This header turns such a record into plain C++
// values and back, with the exact wire format TensorFlow uses (the vendored protos in sdk/proto/
// keep TensorFlow's package, message names and field numbers).
//
//   ktf::TFRecordReader reader("train-00000-of-00004.tfrecord");
//   std::string record;
//   while (reader.read(record)) {
//     auto features = ktf::parse_example(record, "my.tfrecord");
//     const ktf::Feature& label = features.at("label");  // label.kind == ktf::Feature::Int64
//   }
//   ktf::TFRecordWriter writer("out.tfrecord");
//   writer.write(ktf::serialize_example({{"label", ktf::Feature::int64_list({3})}}));
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ktf {

/// One feature of a tf.train.Example: a list of bytes, floats or int64s. A feature that is
/// present with no list set (TensorFlow writes this for missing values) has kind None.
struct Feature {
  enum Kind { None, Bytes, Float, Int64 };
  Kind kind = None;
  std::vector<std::string> bytes;
  std::vector<float> floats;
  std::vector<int64_t> ints;

  /// Number of values in the list of this feature's kind.
  size_t size() const;
  static Feature bytes_list(std::vector<std::string> values);
  static Feature float_list(std::vector<float> values);
  static Feature int64_list(std::vector<int64_t> values);
};

/// "none", "bytes_list", "float_list", "int64_list".
const char* feature_kind_name(Feature::Kind kind);

/// Parses a serialized tf.train.Example. `context` names the record in errors (e.g. "TFRecord
/// file 'a.tfrecord': record 12"); a malformed proto throws ktf::Error
/// "<context>: malformed tf.train.Example (<n> bytes)".
std::map<std::string, Feature> parse_example(std::string_view record, const std::string& context);

/// Serializes features as a tf.train.Example (deterministic: keys in sorted order).
std::string serialize_example(const std::map<std::string, Feature>& features);

}  // namespace ktf
