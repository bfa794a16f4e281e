#include "ktf/convert.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "ktf/error.h"
#include "ktf/example.h"
#include "ktf/json.h"
#include "ktf/tfrecord.h"

namespace ktf {
namespace {

namespace fs = std::filesystem;

std::string shard_name(const std::string& split, int64_t i, int64_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s-%05lld-of-%05lld.tfrecord", split.c_str(),
                static_cast<long long>(i), static_cast<long long>(n));
  return buf;
}

Json shape_json(const std::vector<int64_t>& shape) {
  Json out = Json::array();
  out.as_array().reserve(shape.size());
  for (int64_t d : shape) out.as_array().emplace_back(d);
  return out;
}

struct SplitInfo {
  int64_t examples = 0;
  Json files = Json::array();
  Json image_spec, label_spec;
};

SplitInfo write_split(BatchStream& stream, const std::string& split, const fs::path& dir,
                      int64_t shards, bool gzip) {
  SplitInfo info;
  std::vector<std::unique_ptr<TFRecordWriter>> writers;
  for (int64_t i = 0; i < shards; ++i) {
    std::string name = shard_name(split, i, shards);
    writers.push_back(std::make_unique<TFRecordWriter>((dir / name).string(), gzip));
    info.files.as_array().push_back(Json(name));
  }
  stream.start_epoch(0);
  while (auto batch = stream.next()) {
    auto x = batch->input.to(torch::kCPU);
    auto y = batch->target.to(torch::kCPU);
    KTF_CHECK(x.size(0) == y.size(0), "convert: batch has ", x.size(0), " inputs but ", y.size(0),
              " targets");
    if (x.scalar_type() == torch::kFloat64) x = x.to(torch::kFloat32);
    KTF_CHECK(x.scalar_type() == torch::kUInt8 || x.scalar_type() == torch::kFloat32,
              "convert: inputs must be uint8 or float32, got ", x.scalar_type());
    if (x.dim() == 4) x = x.permute({0, 2, 3, 1});  // [N, C, H, W] -> [N, H, W, C]
    x = x.contiguous();
    bool int_labels = !torch::isFloatingType(y.scalar_type());
    y = (int_labels ? y.to(torch::kLong) : y.to(torch::kFloat32)).contiguous();
    std::vector<int64_t> shape(x.sizes().begin() + 1, x.sizes().end());
    std::vector<int64_t> label_shape(y.sizes().begin() + 1, y.sizes().end());
    if (info.image_spec.is_null()) {
      info.image_spec =
          Json::object({{"dtype", x.scalar_type() == torch::kUInt8 ? "uint8" : "float32"},
                        {"shape", shape_json(shape)},
                        {"encoding", "raw"}});
      info.label_spec = Json::object({{"dtype", int_labels ? "int64" : "float32"},
                                      {"shape", shape_json(label_shape)},
                                      {"encoding", int_labels ? "int64" : "float"}});
    }
    size_t row = static_cast<size_t>(x[0].numel()) * x.element_size();
    int64_t label_n = y.numel() / std::max<int64_t>(1, y.size(0));
    const char* bytes = static_cast<const char*>(x.data_ptr());
    for (int64_t i = 0; i < x.size(0); ++i) {
      std::map<std::string, Feature> f;
      f["image"] = Feature::bytes_list({std::string(bytes + i * row, row)});
      if (int_labels) {
        const int64_t* p = y.data_ptr<int64_t>() + i * label_n;
        f["label"] = Feature::int64_list(std::vector<int64_t>(p, p + label_n));
      } else {
        const float* p = y.data_ptr<float>() + i * label_n;
        f["label"] = Feature::float_list(std::vector<float>(p, p + label_n));
      }
      f["shape"] = Feature::int64_list(shape);
      writers[info.examples % shards]->write(serialize_example(f));
      ++info.examples;
    }
  }
  for (auto& w : writers) w->close();
  return info;
}

}  // namespace

void convert_to_tfrecord(Dataset& dataset, const std::string& out_dir, int64_t shards, bool gzip,
                         const std::function<void(const std::string&)>& log) {
  KTF_CHECK(shards >= 1, "convert: shards must be >= 1, got ", shards);
  KTF_CHECK(!out_dir.empty(), "convert: the output directory is empty");
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec)
    throw Error("convert: cannot create output directory '" + out_dir + "': " + ec.message(), {},
                kExitRuntime);
  Json splits = Json::object();
  Json image_spec, label_spec;
  for (const char* split : {"train", "valid"}) {
    // The examples as stored when the dataset can give them (RawExamples), else as it streams.
    auto* raw = dynamic_cast<RawExamples*>(&dataset);
    auto stream = raw                             ? raw->raw_split(split)
                  : std::string(split) == "train" ? dataset.train()
                                                  : dataset.valid();
    if (!stream) continue;
    SplitInfo info = write_split(*stream, split, out_dir, shards, gzip);
    KTF_CHECK(info.examples > 0, "convert: the ", split, " split is empty");
    if (image_spec.is_null()) {
      image_spec = info.image_spec;
      label_spec = info.label_spec;
    } else {
      KTF_CHECK(image_spec == info.image_spec && label_spec == info.label_spec,
                "convert: the validation data (", info.image_spec.dump(),
                ") differs from the training data (", image_spec.dump(), ")");
    }
    splits.set(split, Json::object({{"files", info.files}, {"num_examples", info.examples}}));
    if (log)
      log("convert: wrote " + std::to_string(info.examples) + " " + split + " examples to " +
          std::to_string(shards) + " shard(s) in " + out_dir);
  }
  KTF_CHECK(!image_spec.is_null(), "convert: the dataset has no data");
  Json features =
      Json::object({{"image", image_spec},
                    {"label", label_spec},
                    {"shape", Json::object({{"dtype", "int64"},
                                            {"shape", Json::array({Json(static_cast<int64_t>(
                                                          image_spec.at("shape").size()))})},
                                            {"encoding", "int64"}})}});
  Json names = Json::array();
  for (const auto& n : dataset.class_names()) names.as_array().push_back(Json(n));
  Json doc = Json::object({{"features", features},
                           {"image_key", "image"},
                           {"label_key", "label"},
                           {"num_classes", dataset.num_classes()},
                           {"class_names", names},
                           {"compression", gzip ? "GZIP" : "NONE"},
                           {"splits", splits}});
  fs::path path = fs::path(out_dir) / "features.json";
  std::ofstream file(path);
  file << doc.dump(2) << "\n";
  file.close();
  if (!file) throw Error("convert: cannot write '" + path.string() + "'", {}, kExitRuntime);
  if (log) log("convert: feature spec written to " + path.string());
}

}  // namespace ktf
