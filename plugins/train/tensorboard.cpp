// ktf.callbacks.TensorBoard: TensorBoard event files as tf.keras.callbacks.TensorBoard writes them.
//
// <log_dir>/train/ and <log_dir>/validation/ each get an events.out.tfevents.* file: TFRecord
// framed tensorflow.Event protos, the first holding file_version "brain.Event:2". Per epoch (step
// = epoch, from 0, counted across the run's cycles so a later cycle continues the curves) the
// train/ file gets "epoch_<key>" scalars of the training logs and the
// validation/ file the same tags for the "val_" logs; "lr" is written as "epoch_learning_rate".
// With update_freq "batch" or N, "batch_<key>" scalars are written every N optimizer steps
// (step = optimizer steps since the run began). histogram_freq N writes a histogram of every
// parameter ("fc/weight") every N epochs; write_graph writes the model's structure as a text
// summary; write_images writes a few input images of the first validation batch as PNG image
// summaries. With hparams (the default), log_dir itself gets the run's HParams session (below).
#include <ktf/components.h>
#include <ktf/image.h>
#include <ktf/registry.h>
#include <ktf/tfrecord.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <variant>

#include "profiler.h"
#include "tensorboard/event.pb.h"
#include "tensorboard/hparams.pb.h"
#include "train.h"

namespace ktf::train {
namespace {
namespace fs = std::filesystem;

struct TensorBoardOptions {
  std::string log_dir = "logs";  ///< event directory, relative to the run directory
  int64_t histogram_freq = 0;    ///< parameter histograms every N epochs; 0 = never
  /// "epoch", "batch" or N: batch-level scalars every N steps
  std::variant<std::string, int64_t> update_freq = std::string("epoch");
  bool write_graph = true;              ///< write the model's structure as a text summary
  bool write_images = false;            ///< write input images of the first validation batch
  int64_t max_images = 3;               ///< images written by write_images
  bool write_steps_per_second = false;  ///< write "epoch_steps_per_second"
  /// batches to profile: N, [first, last] or "first,last" (1-based, as Keras); 0 = none
  std::variant<int64_t, std::string, std::vector<int64_t>> profile_batch = int64_t{0};
  int64_t embeddings_freq = 0;  ///< accepted for Keras configs; embeddings are not supported
  bool hparams = true;          ///< write the run's HParams session into log_dir
};

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// One events.out.tfevents.* file. Its name is fixed for a run and cycle (the run's first start
/// time and the cycle; not the host, which a restarted job may not keep), so a resumed cycle
/// appends to the file it wrote before, cut back to the checkpoint's length (RunLog), and a cycle
/// started again after a crash replaces it.
class EventWriter {
 public:
  EventWriter(const fs::path& dir, const TrainContext& ctx, bool fresh) {
    char cycle[16];
    std::snprintf(cycle, sizeof cycle, "%03d", ctx.cycle + 1);
    const std::string name =
        "events.out.tfevents." + std::to_string(ctx.run_started) + ".ktf-cycle-" + cycle;
    file_.open(dir / name, fresh);
    if (fresh) {
      tensorflow::Event e;
      e.set_file_version("brain.Event:2");
      write(e);
    }
  }

  void scalar(const std::string& tag, int64_t step, double value) {
    tensorflow::Event e;
    e.set_step(step);
    auto* v = e.mutable_summary()->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
    write(e);
  }

  void histogram(const std::string& tag, int64_t step, const torch::Tensor& values) {
    auto x = values.detach().to(torch::kCPU, torch::kDouble).flatten();
    if (x.numel() == 0) return;
    tensorflow::Event e;
    e.set_step(step);
    auto* v = e.mutable_summary()->add_value();
    v->set_tag(tag);
    auto* h = v->mutable_histo();
    const double lo = x.min().item<double>(), hi = x.max().item<double>();
    h->set_min(lo);
    h->set_max(hi);
    h->set_num(static_cast<double>(x.numel()));
    h->set_sum(x.sum().item<double>());
    h->set_sum_squares(x.square().sum().item<double>());
    if (!(hi > lo)) {
      h->add_bucket_limit(hi);
      h->add_bucket(static_cast<double>(x.numel()));
    } else {
      const int64_t bins = 30;
      auto counts = torch::histc(x, bins, lo, hi).contiguous();
      const double* c = counts.data_ptr<double>();
      for (int64_t i = 0; i < bins; ++i) {
        h->add_bucket_limit(i + 1 == bins ? hi : lo + (hi - lo) * (i + 1) / bins);
        h->add_bucket(c[i]);
      }
    }
    write(e);
  }

  void image(const std::string& tag, int64_t step, const torch::Tensor& hwc_uint8) {
    tensorflow::Event e;
    e.set_step(step);
    auto* v = e.mutable_summary()->add_value();
    v->set_tag(tag);
    auto* img = v->mutable_image();
    img->set_height(static_cast<int32_t>(hwc_uint8.size(0)));
    img->set_width(static_cast<int32_t>(hwc_uint8.size(1)));
    img->set_colorspace(static_cast<int32_t>(hwc_uint8.size(2)));
    img->set_encoded_image_string(encode_png(hwc_uint8));
    write(e);
  }

  void text(const std::string& tag, int64_t step, const std::string& text) {
    tensorflow::Event e;
    e.set_step(step);
    auto* v = e.mutable_summary()->add_value();
    v->set_tag(tag);
    v->mutable_metadata()->mutable_plugin_data()->set_plugin_name("text");
    auto* t = v->mutable_tensor();
    t->set_dtype(tensorflow::DT_STRING);
    t->mutable_tensor_shape();  // a scalar
    t->add_string_val(text);
    write(e);
  }

  void flush() { file_.flush(); }
  RunLog& file() { return file_; }

 private:
  void write(tensorflow::Event& e) {
    e.set_wall_time(now_seconds());
    file_.write(tfrecord_frame(e.SerializeAsString()));
  }
  RunLog file_;
};

/// The run's TensorBoard HParams session, in log_dir itself (a run of its own there, beside train/
/// and validation/, as Keras's hp.KerasCallback writes it): the session's start with the resolved
/// config's values by JSON Pointer ("/0/optimizer/tf.keras.optimizers.Adam/learning_rate") in one
/// event file, and per cycle an event file of its final logs as "final_<key>" scalars, the last
/// cycle's with the session's end. Each file is written whole (write_file_atomic), once, so a
/// resumed or restarted run never leaves half of one.
class HParamsSession {
 public:
  HParamsSession(const fs::path& dir, const TrainContext& ctx)
      : dir_(dir),
        stem_("events.out.tfevents." + std::to_string(ctx.run_started) + ".ktf-hparams") {}

  /// Writes the session's start unless this directory has it; `config` is config.resolved.json.
  void start(const Json& config, double start_time) const {
    const fs::path path = dir_ / stem_;
    std::error_code ec;
    if (fs::exists(path, ec)) return;
    tensorboard::hparams::HParamsPluginData data;
    data.set_version(0);
    auto* info = data.mutable_session_start_info();
    info->set_start_time_secs(start_time);
    auto& values = *info->mutable_hparams();
    for (const auto& [pointer, value] : json_leaves(config)) {
      if (values.size() >= kMaxHParams) break;
      tensorboard::hparams::HParamValue v;
      if (value.is_bool())
        v.set_bool_value(value.as_bool());
      else if (value.is_number())
        v.set_number_value(value.as_number());
      else if (value.is_string())
        v.set_string_value(excerpt(value.as_string(), 200));
      else if (!value.is_null())
        v.set_string_value(value.dump());  // [] or {}
      else
        continue;  // TensorBoard has no null hyperparameter
      values[pointer] = v;
    }
    write_file_atomic(path, header() + record(plugin_event("_hparams_/session_start_info", data)));
  }

  /// Writes cycle `cycle`'s final logs at `step`; `last`: the run ends with this cycle.
  void finish_cycle(int cycle, int64_t step, const Logs& logs, bool last) const {
    std::string bytes = header();
    for (const auto& [key, value] : logs) {
      tensorflow::Event e;
      e.set_step(step);
      auto* v = e.mutable_summary()->add_value();
      v->set_tag("final_" + key);
      v->set_simple_value(static_cast<float>(value.value()));
      bytes += record(e);
    }
    if (last) {
      tensorboard::hparams::HParamsPluginData data;
      data.set_version(0);
      data.mutable_session_end_info()->set_status(tensorboard::hparams::STATUS_SUCCESS);
      data.mutable_session_end_info()->set_end_time_secs(now_seconds());
      bytes += record(plugin_event("_hparams_/session_end_info", data));
    }
    char name[32];
    std::snprintf(name, sizeof name, "-cycle-%03d", cycle + 1);
    write_file_atomic(dir_ / (stem_ + name), bytes);
  }

 private:
  static constexpr int kMaxHParams = 4096;
  static std::string record(tensorflow::Event e) {
    e.set_wall_time(now_seconds());
    return tfrecord_frame(e.SerializeAsString());
  }
  static std::string header() {
    tensorflow::Event e;
    e.set_file_version("brain.Event:2");
    return record(e);
  }
  /// A summary holding the plugin data, as TensorBoard's hparams summaries are: no value but an
  /// empty float tensor.
  static tensorflow::Event plugin_event(const std::string& tag,
                                        const tensorboard::hparams::HParamsPluginData& data) {
    tensorflow::Event e;
    auto* v = e.mutable_summary()->add_value();
    v->set_tag(tag);
    auto* plugin = v->mutable_metadata()->mutable_plugin_data();
    plugin->set_plugin_name("hparams");
    plugin->set_content(data.SerializeAsString());
    auto* t = v->mutable_tensor();
    t->set_dtype(tensorflow::DT_FLOAT);
    t->mutable_tensor_shape()->add_dim()->set_size(0);
    return e;
  }
  fs::path dir_;
  std::string stem_;
};

/// update_freq as a step interval: 0 = per epoch only.
int64_t parse_update_freq(const std::variant<std::string, int64_t>& v) {
  if (const auto* s = std::get_if<std::string>(&v)) {
    if (*s == "epoch") return 0;
    if (*s == "batch") return 1;
  } else if (std::get<int64_t>(v) >= 1) {
    return std::get<int64_t>(v);
  }
  throw Error("update_freq must be \"epoch\", \"batch\" or a positive integer, got " +
              describe_value(ArgTraits<std::variant<std::string, int64_t>>::to_json(v)));
}

/// profile_batch as Keras reads it: N (batch N), [first, last] or "first,last", batches counted
/// from 1 over the cycle's training; 0, "0", "0,0" or [] profile nothing.
ProfileWindow parse_profile_batch(
    const std::variant<int64_t, std::string, std::vector<int64_t>>& v) {
  std::vector<int64_t> range;
  if (const auto* n = std::get_if<int64_t>(&v)) {
    range = {*n};
  } else if (const auto* list = std::get_if<std::vector<int64_t>>(&v)) {
    range = *list;
  } else {
    const std::string& text = std::get<std::string>(v);
    std::istringstream in(text);
    for (std::string part; std::getline(in, part, ',');) {
      int64_t x = 0;
      const auto first = part.find_first_not_of(' '), last = part.find_last_not_of(' ');
      const char* b = first == std::string::npos ? part.data() : part.data() + first;
      const char* e = first == std::string::npos ? b : part.data() + last + 1;
      auto [end, ec] = std::from_chars(b, e, x);
      if (ec != std::errc() || end != e || b == e)
        throw Error("profile_batch must be N, [first, last] or \"first,last\", got " +
                    describe_value(Json(text)));
      range.push_back(x);
    }
  }
  if (range.empty() || (range.size() <= 2 &&
                        std::all_of(range.begin(), range.end(), [](int64_t x) { return x == 0; })))
    return {};
  if (range.size() == 1) range.push_back(range[0]);
  if (range.size() != 2 || range[0] < 1 || range[1] < range[0])
    throw Error(
        "profile_batch must be N, [first, last] or \"first,last\" with 1 <= first <= "
        "last (0 = none), got " +
        describe_value(
            ArgTraits<std::variant<int64_t, std::string, std::vector<int64_t>>>::to_json(v)));
  return {range[0], range[1]};
}

/// [C, H, W] float or uint8 -> [H, W, C] uint8 scaled to 0..255 per image.
torch::Tensor to_hwc_uint8(const torch::Tensor& chw) {
  auto x = chw.detach().to(torch::kCPU);
  if (x.scalar_type() != torch::kByte) {
    x = x.to(torch::kFloat);
    auto lo = x.min(), hi = x.max();
    x = ((x - lo) / (hi - lo).clamp_min(1e-12) * 255).round().clamp(0, 255).to(torch::kByte);
  }
  return x.permute({1, 2, 0}).contiguous();
}

class TensorBoard : public Callback {
 public:
  explicit TensorBoard(const TensorBoardOptions& o)
      : o_(o),
        update_every_(parse_update_freq(o.update_freq)),
        profile_(parse_profile_batch(o.profile_batch)) {
    KTF_CHECK(!o.log_dir.empty(), "log_dir must not be empty");
    KTF_CHECK(o.histogram_freq >= 0, "histogram_freq must be >= 0, got ", o.histogram_freq);
    KTF_CHECK(o.max_images >= 1, "max_images must be >= 1, got ", o.max_images);
  }

  void on_train_begin(TrainContext& ctx) override {
    context_ = &ctx;
    dir_ = resolve_run_path(ctx.run_dir, o_.log_dir);
    if (!profile_.empty() && ctx.is_main())
      profiler_ = std::make_unique<BatchProfiler>(profile_, dir_);
    train_ = std::make_unique<EventWriter>(dir_ / "train", ctx, /*fresh=*/!ctx.resuming);
    validation_.reset();
    last_batch_step_ = -1;
    if (o_.hparams && !ctx.dry_run && ctx.is_main()) {
      hparams_ = std::make_unique<HParamsSession>(dir_, ctx);
      const fs::path config = ctx.run_dir / "config.resolved.json";
      std::error_code ec;
      if (fs::is_regular_file(config, ec))
        hparams_->start(Json::parse_file(config.string()), static_cast<double>(ctx.run_started));
    }
    if (ctx.resuming) return;  // the summaries below were written when the cycle started
    if (o_.embeddings_freq != 0)
      ctx.log("TensorBoard: embeddings_freq is not supported by ktf; ignored");
    if (o_.write_graph && ctx.model) {
      std::ostringstream structure;
      structure << *ctx.model;
      std::string text, line;
      std::istringstream lines(structure.str());
      while (std::getline(lines, line)) text += "    " + line + "\n";  // markdown code block
      train_->text("model_structure", ctx.epochs_before, text);
    }
    if (o_.write_images) write_images(ctx);
    train_->flush();
  }

  void on_epoch_begin(TrainContext& ctx, int64_t) override {
    epoch_start_ = std::chrono::steady_clock::now();
    batches_ = 0;
    if (profiler_) profiler_->on_epoch_begin(ctx);
  }

  bool wants_batch_logs(const TrainContext& ctx, int64_t) override {
    const int64_t step = ctx.steps_before + ctx.global_step;
    return update_every_ > 0 && step != last_batch_step_ && step % update_every_ == 0;
  }

  void on_batch_end(TrainContext& ctx, int64_t, const Logs& logs) override {
    ++batches_;
    if (profiler_) profiler_->on_batch_end(ctx);
    if (!train_ || logs.empty() || !wants_batch_logs(ctx, 0)) return;
    last_batch_step_ = ctx.steps_before + ctx.global_step;
    for (const auto& [k, v] : logs) train_->scalar("batch_" + k, last_batch_step_, v);
  }

  void on_epoch_end(TrainContext& ctx, int64_t cycle_epoch, const Logs& logs) override {
    if (profiler_) profiler_->on_epoch_end(ctx);
    if (!train_) return;
    const int64_t epoch = ctx.epochs_before + cycle_epoch;  // continuous across cycles
    for (const auto& [k, v] : logs) {
      if (k.rfind("val_", 0) == 0) {
        if (!validation_)
          validation_ = std::make_unique<EventWriter>(dir_ / "validation", ctx, /*fresh=*/true);
        validation_->scalar("epoch_" + k.substr(4), epoch, v);
      } else {
        train_->scalar(k == "lr" ? "epoch_learning_rate" : "epoch_" + k, epoch, v);
      }
    }
    if (o_.write_steps_per_second) {
      double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start_).count();
      train_->scalar("epoch_steps_per_second", epoch, s > 0 ? batches_ / s : 0.0);
    }
    if (o_.histogram_freq > 0 && cycle_epoch % o_.histogram_freq == 0 && ctx.model) {
      for (const auto& p : ctx.model->named_parameters()) {
        std::string tag = p.key();
        std::replace(tag.begin(), tag.end(), '.', '/');
        train_->histogram(tag, epoch, p.value());
      }
    }
    train_->flush();
    if (validation_) validation_->flush();
  }

  void on_train_end(TrainContext& ctx, const Logs& logs) override {
    if (profiler_) profiler_->on_train_end(ctx);
    if (train_) train_->flush();
    if (validation_) validation_->flush();
    if (hparams_)
      hparams_->finish_cycle(ctx.cycle, ctx.epochs_before + ctx.epoch, logs,
                             ctx.cycle + 1 == ctx.num_cycles);
  }

  /// The event files' lengths (a resumed run cuts them back to these) and the step counters.
  void save_state(State& s) override {
    train_->file().save_state(s.child("train"));
    s.set("has_validation", validation_ != nullptr);
    if (validation_) validation_->file().save_state(s.child("validation"));
    s.set("last_batch_step", last_batch_step_);
    s.set("batches", batches_);
    if (profiler_) s.set("profiled_batches_seen", profiler_->batches_seen());
  }
  void load_state(const State& s) override {
    train_->file().load_state(s.child("train"));
    if (s.at("has_validation").as_bool()) {
      validation_ = std::make_unique<EventWriter>(dir_ / "validation", *context_, false);
      validation_->file().load_state(s.child("validation"));
    }
    last_batch_step_ = s.at("last_batch_step").as_int();
    batches_ = s.at("batches").as_int();
    if (profiler_ && s.has("profiled_batches_seen"))
      profiler_->set_batches_seen(s.at("profiled_batches_seen").as_int());
  }

 private:
  void write_images(TrainContext& ctx) {
    auto stream = ctx.valid_data ? ctx.valid_data : ctx.train_data;
    if (!stream) return;
    stream->start_epoch(0);
    auto batch = stream->next();
    if (!batch) return;
    const auto& x = batch->input;
    if (x.dim() != 4 || (x.size(1) != 1 && x.size(1) != 3 && x.size(1) != 4)) {
      ctx.log(
          "TensorBoard: write_images needs image inputs [N, C, H, W] with 1, 3 or 4 "
          "channels; skipped");
      return;
    }
    const int64_t n = std::min<int64_t>(o_.max_images, x.size(0));
    for (int64_t i = 0; i < n; ++i)
      train_->image("input_images/image/" + std::to_string(i), 0, to_hwc_uint8(x[i]));
  }

  TensorBoardOptions o_;
  const TrainContext* context_ = nullptr;  ///< the cycle's, from on_train_begin
  int64_t update_every_;
  fs::path dir_;
  std::unique_ptr<EventWriter> train_, validation_;
  std::unique_ptr<HParamsSession> hparams_;
  ProfileWindow profile_;
  std::unique_ptr<BatchProfiler> profiler_;
  int64_t last_batch_step_ = -1;
  int64_t batches_ = 0;
  std::chrono::steady_clock::time_point epoch_start_ = std::chrono::steady_clock::now();
};

}  // namespace

void register_tensorboard(Registrar& r) {
  r.add(define<Callback, TensorBoardOptions>("ktf.callbacks.TensorBoard",
                                             "writes TensorBoard event files (scalars, "
                                             "histograms, images, model structure)")
            .alias("tf.keras.callbacks.TensorBoard")
            .arg("log_dir", &TensorBoardOptions::log_dir,
                 "event directory, relative to the run directory (absolute allowed)")
            .non_empty()
            .arg("histogram_freq", &TensorBoardOptions::histogram_freq,
                 "parameter histograms every N epochs; 0 = never")
            .min(0)
            .arg("update_freq", &TensorBoardOptions::update_freq,
                 "\"epoch\", \"batch\" or N: also write batch-level scalars every N steps")
            .choices({"epoch", "batch"})
            .min(1)
            .arg("write_graph", &TensorBoardOptions::write_graph,
                 "write the model's module structure as a text summary")
            .arg("write_images", &TensorBoardOptions::write_images,
                 "write input images of the first validation batch as image summaries")
            .arg("max_images", &TensorBoardOptions::max_images, "images written by write_images")
            .min(1)
            .arg("write_steps_per_second", &TensorBoardOptions::write_steps_per_second,
                 "write the training speed as \"epoch_steps_per_second\"")
            .arg("profile_batch", &TensorBoardOptions::profile_batch,
                 "training batches to profile (counted from 1 over the cycle, as Keras): N, "
                 "[first, last] or \"first,last\"; 0 = none. The Chrome trace goes to "
                 "<log_dir>/plugins/profile/cycle-<k>/ (ktf.callbacks.Profiler)")
            .min(0)
            .arg("embeddings_freq", &TensorBoardOptions::embeddings_freq,
                 "accepted for Keras configs; embeddings are not supported (a warning is logged)")
            .min(0)
            .arg("hparams", &TensorBoardOptions::hparams,
                 "write the run's HParams session into log_dir for TensorBoard's HParams "
                 "dashboard: the resolved config's values by JSON Pointer, each cycle's final "
                 "logs as final_<key> scalars")
            .example(Json::object({{"log_dir", "tensorboard"}, {"histogram_freq", 1}}))
            .build([](const TensorBoardOptions& o, BuildContext&) {
              return std::make_shared<TensorBoard>(o);
            }));
}

}  // namespace ktf::train
