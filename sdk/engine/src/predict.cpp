// ktf-host --predict (ktf/predict.h).
#include "ktf/predict.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>

#include "ktf/data.h"
#include "ktf/error.h"
#include "ktf/evaluate.h"
#include "ktf/files.h"
#include "ktf/image.h"
#include "ktf/network.h"
#include "ktf/train.h"

namespace ktf {
namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool is_image_name(const fs::path& p) {
  const std::string ext = lower(p.extension().string());
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

/// One input file: an image (one example), or an IDX, CSV or TFRecord file (one example per row
/// or record).
struct InputFile {
  enum Kind { Image, Idx, Csv, TFRecord };
  std::string path;
  Kind kind = Image;
};

/// The kind of a file by its name, or nullopt.
std::optional<InputFile::Kind> kind_of(const fs::path& p) {
  const std::string name = lower(p.filename().string());
  auto ends = [&](const std::string& tail) {
    return name.size() >= tail.size() &&
           name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
  };
  auto ends_gz = [&](const std::string& tail) { return ends(tail) || ends(tail + ".gz"); };
  if (is_image_name(p)) return InputFile::Image;
  if (ends_gz("-ubyte") || ends_gz(".idx")) return InputFile::Idx;
  if (ends_gz(".csv")) return InputFile::Csv;
  if (ends_gz(".tfrecord") || ends_gz(".tfrecords") || ends_gz(".tfrec"))
    return InputFile::TFRecord;
  return std::nullopt;
}

/// The files `inputs` name, folders searched recursively for images in name order.
std::vector<InputFile> list_inputs(const std::vector<std::string>& inputs) {
  std::vector<InputFile> out;
  for (const auto& input : inputs) {
    std::error_code ec;
    if (fs::is_directory(input, ec)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(
               input, fs::directory_options::skip_permission_denied, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
        if (it->is_regular_file(ec) && is_image_name(it->path())) found.push_back(it->path());
      if (ec) throw Error("--predict '" + input + "': cannot list the folder: " + ec.message());
      if (found.empty())
        throw Error("--predict '" + input + "': the folder holds no PNG or JPEG image");
      std::sort(found.begin(), found.end());
      for (auto& f : found) out.push_back({std::move(f), InputFile::Image});
      continue;
    }
    if (!fs::exists(input, ec)) throw Error("--predict '" + input + "': no such file or folder");
    if (!fs::is_regular_file(input, ec))
      throw Error("--predict '" + input + "': not a regular file or a folder");
    const auto kind = kind_of(input);
    if (!kind)
      throw Error("--predict '" + input +
                  "': not a PNG or JPEG image (.png, .jpg, .jpeg), a folder of them, an IDX file "
                  "(-ubyte, .idx), a CSV file (.csv) or a TFRecord file (.tfrecord, .tfrecords, "
                  ".tfrec); each optionally .gz but images");
    out.push_back({input, *kind});
  }
  return out;
}

/// Resizes uint8 or float [N, C, H, W] to (h, w), bilinearly, keeping the dtype.
torch::Tensor resize(const torch::Tensor& x, int64_t h, int64_t w) {
  if (x.size(2) == h && x.size(3) == w) return x;
  auto y = torch::nn::functional::interpolate(x.to(torch::kFloat),
                                              torch::nn::functional::InterpolateFuncOptions()
                                                  .size(std::vector<int64_t>{h, w})
                                                  .mode(torch::kBilinear)
                                                  .align_corners(false));
  return x.scalar_type() == torch::kUInt8 ? y.round().clamp(0, 255).to(torch::kUInt8)
                                          : y.to(x.scalar_type());
}

std::string shape_of_examples(const torch::Tensor& raw_example) {
  const auto shape = raw_example.sizes().vec();  // [1, ...]
  return shape_str(std::vector<int64_t>(shape.begin() + 1, shape.end()));
}

/// The examples of one input as raw examples of the run's kind: [n, ...raw shape], raw dtype.
/// CSV and TFRecord files are read by the run's dataset (`files`, nullptr when it reads none).
torch::Tensor read_examples(const InputFile& in, const torch::Tensor& raw_example,
                            InputFiles* files) {
  const auto shape = raw_example.sizes().vec();  // [1, ...]
  if (in.kind == InputFile::Csv || in.kind == InputFile::TFRecord) {
    const std::string format = in.kind == InputFile::Csv ? "CSV" : "TFRecord";
    if (!files || files->input_format() != format)
      throw Error("--predict '" + in.path + "': a " + format +
                  " file, but the run's dataset reads no " + format + " files (" +
                  (files ? "it reads " + files->input_format() + " files, " : std::string()) +
                  "--predict reads PNG/JPEG images and IDX files for any dataset)");
    torch::Tensor x = files->read_inputs(in.path);
    if (x.dim() < 1 || x.sizes().slice(1) != raw_example.sizes().slice(1) ||
        x.scalar_type() != raw_example.scalar_type())
      throw Error("--predict '" + in.path + "': its examples are " +
                  std::string(c10::toString(x.scalar_type())) + " " +
                  shape_str(x.dim() < 1 ? std::vector<int64_t>{} : x.sizes().slice(1).vec()) +
                  ", the run's are " + std::string(c10::toString(raw_example.scalar_type())) + " " +
                  shape_of_examples(raw_example));
    return x;
  }
  if (in.kind == InputFile::Idx) {
    torch::Tensor x = read_idx(in.path);
    const int64_t per = raw_example.numel();
    if (x.dim() < 1 || x.numel() % per != 0 || x.numel() / std::max<int64_t>(x.size(0), 1) != per)
      throw Error("--predict '" + in.path + "': its examples have shape " +
                  shape_str(x.sizes().slice(1).vec()) + ", the run's have " +
                  shape_of_examples(raw_example) + " (" + std::to_string(per) + " values)");
    std::vector<int64_t> to = shape;
    to[0] = x.size(0);
    return x.reshape(to).to(raw_example.scalar_type());
  }
  if (shape.size() != 4 || (shape[1] != 1 && shape[1] != 3 && shape[1] != 4))
    throw Error("--predict '" + in.path + "': an image, but the run's examples are not images (" +
                shape_of_examples(raw_example) + ")");
  const int channels = static_cast<int>(shape[1]);
  torch::Tensor hwc =
      decode_image(read_file(in.path, "image file"), "--predict '" + in.path + "'", channels);
  torch::Tensor x = hwc.permute({2, 0, 1}).unsqueeze(0).contiguous();
  if (x.size(1) != channels)  // a JPEG has no alpha channel: an opaque one
    x = torch::cat({x, torch::full({1, 1, x.size(2), x.size(3)}, 255, x.options())}, 1);
  x = resize(x, shape[2], shape[3]);
  if (raw_example.scalar_type() != torch::kUInt8) x = x.to(raw_example.scalar_type()) / 255.0;
  return x;
}

}  // namespace

PredictResult predict(const PredictOptions& options, Registry& registry) {
  if (options.inputs.empty()) throw Error("--predict RUN_DIR INPUT...: no input given");
  if (options.top_k < 1) throw Error("--top-k must be >= 1, got " + std::to_string(options.top_k));
  const auto files = list_inputs(options.inputs);  // bad inputs fail before the model is built
  TrainedCycle trained =
      load_trained_cycle(options.run_dir, options.cycle, options.overrides, options.device,
                         options.threads, options.memory_format, registry);
  const Cycle& cycle = trained.cycle;
  auto* indexed = dynamic_cast<IndexedDataset*>(cycle.dataset.get());
  auto* files_reader = dynamic_cast<InputFiles*>(cycle.dataset.get());
  auto* raw_examples = dynamic_cast<RawExamples*>(cycle.dataset.get());
  if ((!indexed && !files_reader) || !raw_examples)
    throw Error(
        "the run's dataset does not say how it preprocesses its examples (neither a "
        "ktf::IndexedDataset nor a ktf::InputFiles with ktf::RawExamples): --predict cannot "
        "prepare inputs like it",
        cycle.path("datasets"));
  const PipelineConfig pipeline =
      indexed ? indexed->pipeline().for_validation() : files_reader->input_pipeline();
  auto raw = raw_examples->raw_split("train");
  std::optional<Batch> first;
  if (raw) {
    raw->start_epoch(0);
    first = raw->next();
  }
  if (!first) throw Error("the run's training split is empty", cycle.path("datasets"));
  const torch::Tensor raw_example = first->input.slice(0, 0, 1);
  const auto names = cycle.dataset->class_names();
  const int64_t batch =
      options.batch_size > 0 ? options.batch_size : std::max<int64_t>(pipeline.valid_batch_size, 1);

  PredictResult result;
  result.output = options.output.empty()
                      ? options.run_dir / ("predict-cycle-" + std::to_string(trained.k) + ".csv")
                      : options.output;
  std::ofstream csv(result.output);
  if (!csv) throw Error("cannot write '" + result.output.string() + "'", {}, kExitRuntime);
  csv << std::setprecision(6);
  bool header = false;
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  auto last_report = std::chrono::steady_clock::now();
  auto report = [&](size_t done, bool final) {
    if (options.quiet) return;
    const auto now = std::chrono::steady_clock::now();
    if (!final && std::chrono::duration<double>(now - last_report).count() < (tty ? 0.25 : 10))
      return;
    last_report = now;
    const std::string line = "predict: " + std::to_string(done) + "/" +
                             std::to_string(files.size()) + " inputs, " +
                             std::to_string(result.examples) + " examples";
    if (tty)
      std::cout << "\r\033[K" << line << (final ? "\n" : "") << std::flush;
    else
      std::cout << line << std::endl;
  };

  torch::InferenceMode guard;
  // Examples are gathered into batches across inputs (an image is one example, an IDX file many).
  std::vector<torch::Tensor> pending;
  std::vector<std::pair<std::string, int64_t>> pending_ids;  // input, index within it
  int64_t pending_n = 0;
  auto flush = [&]() {
    if (pending_n == 0) return;
    torch::Tensor x = pipeline.preprocess(torch::cat(pending, 0));
    pending.clear();
    auto out = cycle.model->forward(to_device(x, trained.device, trained.format));
    out = out.to(torch::kCPU).to(torch::kFloat);
    const int64_t n = out.size(0);
    const bool classes = out.dim() == 2 && cycle.dataset->num_classes() > 0;
    const auto flat = out.reshape({n, -1});
    const int64_t k = classes ? std::min(options.top_k, flat.size(1)) : 0;
    torch::Tensor top_p, top_i;
    if (classes) std::tie(top_p, top_i) = torch::softmax(flat, 1).topk(k, 1);
    if (!header) {
      csv << "input,index";
      if (classes)
        for (int64_t c = 1; c <= k; ++c) csv << ",class_" << c << ",probability_" << c;
      else
        for (int64_t j = 0; j < flat.size(1); ++j) csv << ",output_" << j;
      csv << "\n";
      header = true;
    }
    for (int64_t i = 0; i < n; ++i) {
      csv << csv_field(pending_ids[i].first) << "," << pending_ids[i].second;
      if (classes) {
        for (int64_t c = 0; c < k; ++c) {
          const int64_t cls = top_i[i][c].item<int64_t>();
          csv << ","
              << (cls < static_cast<int64_t>(names.size()) ? csv_field(names[cls])
                                                           : std::to_string(cls))
              << "," << top_p[i][c].item<float>();
        }
      } else {
        for (int64_t j = 0; j < flat.size(1); ++j) csv << "," << flat[i][j].item<float>();
      }
      csv << "\n";
    }
    result.examples += n;
    pending_ids.clear();
    pending_n = 0;
  };
  for (size_t f = 0; f < files.size(); ++f) {
    torch::Tensor x = read_examples(files[f], raw_example, files_reader);
    for (int64_t start = 0; start < x.size(0);) {
      const int64_t take = std::min(batch - pending_n, x.size(0) - start);
      pending.push_back(x.slice(0, start, start + take));
      for (int64_t i = 0; i < take; ++i) pending_ids.emplace_back(files[f].path, start + i);
      pending_n += take;
      start += take;
      if (pending_n == batch) flush();
    }
    report(f + 1, false);
  }
  flush();
  report(files.size(), true);
  if (!csv.flush()) throw Error("cannot write '" + result.output.string() + "'", {}, kExitRuntime);
  if (!options.quiet)
    std::cout << "predict: cycle " << trained.k << ", " << result.examples
              << " examples; predictions written to " << result.output.string() << std::endl;
  return result;
}

}  // namespace ktf
