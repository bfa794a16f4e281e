// ktf.callbacks.ModelCheckpoint: saves the model (torch::save of the torch::nn::Module) after each
// epoch, or only when the monitored quantity improves, as tf.keras.callbacks.ModelCheckpoint.
// The file path may hold Keras-style fields: "{epoch:02d}" (counted from 1) and any log key,
// "{val_loss:.4f}".
#include <ktf/components.h>
#include <ktf/registry.h>

#include <cctype>
#include <cstdio>
#include <sstream>
#include <variant>

#include "train.h"

namespace ktf::train {
namespace {

struct ModelCheckpointOptions {
  std::string filepath = "checkpoints/model-{epoch:03d}.pt";  ///< path pattern (run-dir relative)
  std::string monitor = "val_loss";                           ///< log key deciding the best model
  std::string mode = "auto";                                  ///< auto, min or max
  bool save_best_only = false;                                ///< save only when `monitor` improves
  bool save_weights_only = false;  ///< accepted for Keras configs: the module is saved either way
  int64_t verbose = 0;             ///< 1 = log a line per save
};

struct Field {
  std::string key, spec;  // "{key:spec}"
};

/// Splits a Keras-style pattern into literal text and {key[:spec]} fields.
std::vector<std::variant<std::string, Field>> parse_pattern(const std::string& pattern) {
  std::vector<std::variant<std::string, Field>> parts;
  std::string text;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '{') {
      text += pattern[i];
      continue;
    }
    size_t close = pattern.find('}', i);
    KTF_CHECK(close != std::string::npos, "filepath '", pattern, "': unclosed '{'");
    std::string body = pattern.substr(i + 1, close - i - 1);
    Field f;
    size_t colon = body.find(':');
    f.key = body.substr(0, colon);
    if (colon != std::string::npos) f.spec = body.substr(colon + 1);
    KTF_CHECK(!f.key.empty(), "filepath '", pattern, "': empty field '{}'");
    if (!f.spec.empty()) {
      char type = f.spec.back();
      bool ok = std::string("dfeg").find(type) != std::string::npos;
      for (size_t k = 0; ok && k + 1 < f.spec.size(); ++k)
        ok = std::isdigit(static_cast<unsigned char>(f.spec[k])) || f.spec[k] == '.';
      KTF_CHECK(ok, "filepath '", pattern, "': unsupported format '", f.spec,
                "' (use d, f, e or g with an optional width/precision, e.g. 02d or .4f)");
    }
    if (!text.empty()) parts.emplace_back(std::move(text));
    text.clear();
    parts.emplace_back(std::move(f));
    i = close;
  }
  if (!text.empty()) parts.emplace_back(std::move(text));
  return parts;
}

class ModelCheckpoint : public Callback {
 public:
  explicit ModelCheckpoint(const ModelCheckpointOptions& o)
      : o_(o), monitor_(o.monitor, o.mode), pattern_(parse_pattern(o.filepath)) {
    KTF_CHECK(!o.filepath.empty(), "filepath must not be empty");
  }

  void on_train_begin(TrainContext&) override {
    best_ = monitor_.worst();
    warned_ = false;
  }

  void on_epoch_end(TrainContext& ctx, int64_t epoch, const Logs& logs) override {
    auto current = find_log(logs, monitor_.key());
    if (o_.save_best_only) {
      if (!current) {
        if (!warned_)
          ctx.log("ModelCheckpoint: can save the best model only with '" + monitor_.key() +
                  "' in the logs; skipping epochs without it");
        warned_ = true;
        return;
      }
      if (!monitor_.improved(*current, best_)) {
        if (o_.verbose)
          ctx.log("Epoch " + std::to_string(epoch + 1) + ": " + monitor_.key() +
                  " did not improve from " + format_double(best_));
        return;
      }
    }
    auto path = resolve_run_path(ctx.run_dir, format_path(epoch, logs));
    if (o_.verbose) {
      std::string why = o_.save_best_only
                            ? monitor_.key() + " improved from " + format_double(best_) + " to " +
                                  format_double(*current) + ", "
                            : "";
      ctx.log("Epoch " + std::to_string(epoch + 1) + ": " + why + "saving model to " +
              path.string());
    }
    if (current && o_.save_best_only) best_ = *current;
    save(ctx, path);
  }

 private:
  std::string format_path(int64_t epoch, const Logs& logs) const {
    std::string out;
    for (const auto& part : pattern_) {
      if (const auto* text = std::get_if<std::string>(&part)) {
        out += *text;
        continue;
      }
      const auto& f = std::get<Field>(part);
      double value;
      if (f.key == "epoch") {
        value = static_cast<double>(epoch + 1);
      } else if (auto v = find_log(logs, f.key)) {
        value = *v;
      } else {
        std::string keys;
        for (const auto& [k, v] : logs) keys += (keys.empty() ? "" : ", ") + k;
        throw Error("ModelCheckpoint: filepath '" + o_.filepath + "' names '{" + f.key +
                    "}', which is not in the logs (epoch, " + keys + ")");
      }
      char buf[64];
      if (f.spec.empty()) {
        std::snprintf(
            buf, sizeof buf, "%s",
            f.key == "epoch" ? std::to_string(epoch + 1).c_str() : format_double(value).c_str());
      } else if (f.spec.back() == 'd') {
        std::string fmt = "%" + f.spec.substr(0, f.spec.size() - 1) + "lld";
        std::snprintf(buf, sizeof buf, fmt.c_str(), static_cast<long long>(value));
      } else {
        std::string fmt = "%" + f.spec;
        std::snprintf(buf, sizeof buf, fmt.c_str(), value);
      }
      out += buf;
    }
    return out;
  }

  static void save(TrainContext& ctx, const std::filesystem::path& path) {
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
    std::ostringstream bytes;
    torch::save(std::static_pointer_cast<torch::nn::Module>(ctx.model), bytes);
    write_file_atomic(path, bytes.str());  // the old file or the new one, never part of one
  }

 public:
  void save_state(State& s) override {
    s.set_number("best", best_);
    s.set("warned", warned_);
  }
  void load_state(const State& s) override {
    best_ = s.number("best");
    warned_ = s.at("warned").as_bool();
  }

 private:
  ModelCheckpointOptions o_;
  Monitor monitor_;
  std::vector<std::variant<std::string, Field>> pattern_;
  double best_ = 0;
  bool warned_ = false;
};

}  // namespace

void register_model_checkpoint(Registrar& r) {
  r.add(
      define<Callback, ModelCheckpointOptions>(
          "ktf.callbacks.ModelCheckpoint",
          "saves the model every epoch or when the monitored quantity improves")
          .alias("tf.keras.callbacks.ModelCheckpoint")
          .arg(
              "filepath", &ModelCheckpointOptions::filepath,
              "path pattern relative to the run directory, e.g. ckpt/{epoch:02d}-{val_loss:.3f}.pt")
          .non_empty()
          .arg("monitor", &ModelCheckpointOptions::monitor, "log key deciding the best model")
          .non_empty()
          .arg("mode", &ModelCheckpointOptions::mode,
               "auto (max for accuracy-like keys), min or max", {"auto", "min", "max"})
          .arg("save_best_only", &ModelCheckpointOptions::save_best_only,
               "save only when the monitored quantity improves")
          .arg("save_weights_only", &ModelCheckpointOptions::save_weights_only,
               "accepted for Keras configs; the module's parameters and buffers are saved either "
               "way")
          .arg("verbose", &ModelCheckpointOptions::verbose, "1 = log a line per decision")
          .example(Json::object({{"filepath", "checkpoints/best.pt"}, {"save_best_only", true}}))
          .build([](const ModelCheckpointOptions& o, BuildContext&) {
            return std::make_shared<ModelCheckpoint>(o);
          }));
}

}  // namespace ktf::train
