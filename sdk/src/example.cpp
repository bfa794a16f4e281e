#include "ktf/example.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "example.pb.h"
#include "ktf/error.h"

namespace ktf {

size_t Feature::size() const {
  switch (kind) {
    case Bytes:
      return bytes.size();
    case Float:
      return floats.size();
    case Int64:
      return ints.size();
    case None:
      break;
  }
  return 0;
}

Feature Feature::bytes_list(std::vector<std::string> values) {
  Feature f;
  f.kind = Bytes;
  f.bytes = std::move(values);
  return f;
}
Feature Feature::float_list(std::vector<float> values) {
  Feature f;
  f.kind = Float;
  f.floats = std::move(values);
  return f;
}
Feature Feature::int64_list(std::vector<int64_t> values) {
  Feature f;
  f.kind = Int64;
  f.ints = std::move(values);
  return f;
}

const char* feature_kind_name(Feature::Kind kind) {
  switch (kind) {
    case Feature::Bytes:
      return "bytes_list";
    case Feature::Float:
      return "float_list";
    case Feature::Int64:
      return "int64_list";
    case Feature::None:
      break;
  }
  return "none";
}

std::map<std::string, Feature> parse_example(std::string_view record, const std::string& context) {
  tensorflow::Example example;
  if (!example.ParseFromArray(record.data(), static_cast<int>(record.size())))
    throw Error(context + ": malformed tf.train.Example (" + std::to_string(record.size()) +
                " bytes)");
  std::map<std::string, Feature> out;
  for (const auto& [key, value] : example.features().feature()) {
    Feature& f = out[key];
    switch (value.kind_case()) {
      case tensorflow::Feature::kBytesList:
        f.kind = Feature::Bytes;
        f.bytes.assign(value.bytes_list().value().begin(), value.bytes_list().value().end());
        break;
      case tensorflow::Feature::kFloatList:
        f.kind = Feature::Float;
        f.floats.assign(value.float_list().value().begin(), value.float_list().value().end());
        break;
      case tensorflow::Feature::kInt64List:
        f.kind = Feature::Int64;
        f.ints.assign(value.int64_list().value().begin(), value.int64_list().value().end());
        break;
      case tensorflow::Feature::KIND_NOT_SET:
        f.kind = Feature::None;
        break;
    }
  }
  return out;
}

std::string serialize_example(const std::map<std::string, Feature>& features) {
  tensorflow::Example example;
  auto* map = example.mutable_features()->mutable_feature();
  for (const auto& [key, f] : features) {
    tensorflow::Feature& value = (*map)[key];
    switch (f.kind) {
      case Feature::Bytes:
        for (const auto& b : f.bytes) value.mutable_bytes_list()->add_value(b);
        value.mutable_bytes_list();
        break;
      case Feature::Float:
        value.mutable_float_list()->mutable_value()->Add(f.floats.begin(), f.floats.end());
        break;
      case Feature::Int64:
        value.mutable_int64_list()->mutable_value()->Add(f.ints.begin(), f.ints.end());
        break;
      case Feature::None:
        break;
    }
  }
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    example.SerializeToCodedStream(&coded);
  }
  return out;
}

}  // namespace ktf
