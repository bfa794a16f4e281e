// ktf/predict.h — running a finished run's model on new data (ktf-host --predict RUN_DIR INPUT...).
//
//   ktf::PredictOptions o;
//   o.run_dir = "runs/fashion_mnist_cnn-20261126-101500";
//   o.inputs = {"photos/", "extra.png", "t10k-images-idx3-ubyte.gz"};
//   auto result = ktf::predict(o);   // result.output: a CSV of each input's top-k classes
//
// Inputs are PNG or JPEG files, folders of them (searched recursively, in name order) and IDX
// files (raw or .gz, one example per row), for any run; CSV and TFRecord files (one example per
// row or record) are read by the run's dataset in its own format (ktf::InputFiles: the CSV
// reader's feature columns, the TFRecord reader's input feature; labels ignored). Each input is
// brought to the form of the run's raw examples (their channels and, for images, their height and
// width: resized bilinearly where they differ), then through the run's own preprocessing for
// validation data (scaling, mean/std, resize_to, pad_to, force_rgb; no augmentation), in batches.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "ktf/registry.h"

namespace ktf {

struct PredictOptions {
  std::filesystem::path run_dir;
  std::vector<std::string> inputs;
  int cycle = 0;  ///< 1-based cycle whose weights to use; 0 = the last
  std::string device = "auto";
  int threads = 0;
  std::string memory_format = "contiguous";
  std::vector<std::string> overrides;  ///< POINTER=JSON applied to the resolved config
  std::filesystem::path output;        ///< CSV; default <run_dir>/predict-cycle-<k>.csv
  int64_t top_k = 5;                   ///< classes per input (at most the model's outputs)
  int64_t batch_size = 0;              ///< 0 = the dataset's validation batch size
  bool quiet = false;
};

struct PredictResult {
  int64_t examples = 0;
  std::filesystem::path output;
};

/// Writes one CSV row per example: input,index, then class_<i>,probability_<i> for i = 1..top_k
/// (class names where the dataset has them, else indices; probabilities are the softmax of the
/// model's outputs); for a model whose output is not one score per class, output_<j> columns.
/// Throws ktf::Error (exit code 2) naming an input that is missing, unreadable, of another kind,
/// or whose examples do not fit the run's.
PredictResult predict(const PredictOptions& options, Registry& registry = Registry::global());

}  // namespace ktf
