// ktf.callbacks.EarlyStopping: stops training when the monitored quantity has stopped improving,
// with tf.keras.callbacks.EarlyStopping's rules (patience, min_delta, baseline, start_from_epoch,
// restore_best_weights).
#include <ktf/components.h>
#include <ktf/registry.h>

#include "train.h"

namespace ktf::train {
namespace {

struct EarlyStoppingOptions {
  std::string monitor = "val_loss";   ///< log key to watch
  double min_delta = 0.0;             ///< smallest change counted as an improvement
  int64_t patience = 0;               ///< epochs without improvement before stopping
  std::string mode = "auto";          ///< auto, min or max
  std::optional<double> baseline;     ///< value the quantity must beat to reset the patience
  bool restore_best_weights = false;  ///< on stopping, restore the weights of the best epoch
  int64_t start_from_epoch = 0;       ///< epochs to wait before watching
  int64_t verbose = 0;                ///< 1 = log when stopping and restoring
};

class EarlyStopping : public Callback {
 public:
  explicit EarlyStopping(const EarlyStoppingOptions& o) : o_(o), monitor_(o.monitor, o.mode) {
    KTF_CHECK(o.min_delta >= 0, "min_delta must be >= 0, got ", o.min_delta);
    KTF_CHECK(o.patience >= 0, "patience must be >= 0, got ", o.patience);
    KTF_CHECK(o.start_from_epoch >= 0, "start_from_epoch must be >= 0, got ", o.start_from_epoch);
  }

  void on_train_begin(TrainContext&) override {
    wait_ = 0;
    stopped_epoch_ = -1;
    best_epoch_ = 0;
    best_ = monitor_.worst();
    best_weights_.clear();
    warned_ = false;
  }

  void on_epoch_end(TrainContext& ctx, int64_t epoch, const Logs& logs) override {
    auto current = find_log(logs, monitor_.key());
    if (!current) {
      if (!warned_)
        ctx.log("EarlyStopping: '" + monitor_.key() +
                "' is not in the logs; epochs without it are"
                " not counted");
      warned_ = true;
      return;
    }
    if (epoch < o_.start_from_epoch) return;
    if (o_.restore_best_weights && best_weights_.empty()) best_weights_ = snapshot(*ctx.model);
    ++wait_;
    if (monitor_.improved(*current, best_, o_.min_delta)) {
      best_ = *current;
      best_epoch_ = epoch;
      if (o_.restore_best_weights) best_weights_ = snapshot(*ctx.model);
      // The patience restarts only when the baseline is beaten too.
      if (!o_.baseline || monitor_.improved(*current, *o_.baseline, o_.min_delta)) wait_ = 0;
      return;
    }
    if (wait_ >= o_.patience && epoch > 0) {
      stopped_epoch_ = epoch;
      ctx.stop_training = true;
      ctx.log("Epoch " + std::to_string(epoch + 1) + ": early stopping (" + monitor_.key() +
              " did not improve for " + std::to_string(wait_) + " epochs; best " +
              format_double(best_) + " at epoch " + std::to_string(best_epoch_ + 1) + ")");
      if (o_.restore_best_weights && !best_weights_.empty()) {
        restore(*ctx.model, best_weights_);
        ctx.log("EarlyStopping: restored the model weights from the end of epoch " +
                std::to_string(best_epoch_ + 1));
      }
    }
  }

 private:
  using Snapshot = std::vector<std::pair<std::string, torch::Tensor>>;

  static Snapshot snapshot(torch::nn::Module& model) {
    torch::NoGradGuard no_grad;
    Snapshot s;
    for (const auto& p : model.named_parameters())
      s.emplace_back(p.key(), p.value().detach().clone());
    for (const auto& b : model.named_buffers()) s.emplace_back(b.key(), b.value().detach().clone());
    return s;
  }

  static void restore(torch::nn::Module& model, const Snapshot& s) {
    torch::NoGradGuard no_grad;
    auto params = model.named_parameters();
    auto buffers = model.named_buffers();
    for (const auto& [name, value] : s) {
      if (auto* p = params.find(name))
        p->copy_(value);
      else if (auto* b = buffers.find(name))
        b->copy_(value);
    }
  }

  void save_state(State& s) override {
    s.set("wait", wait_);
    s.set("stopped_epoch", stopped_epoch_);
    s.set("best_epoch", best_epoch_);
    s.set_number("best", best_);
    s.set("warned", warned_);
    Json::Array names;
    State& weights = s.child("best_weights");
    for (const auto& [name, value] : best_weights_) {
      names.emplace_back(name);
      weights.set_tensor(name, value);
    }
    s.set("best_weight_names", Json(std::move(names)));
  }
  void load_state(const State& s) override {
    wait_ = s.at("wait").as_int();
    stopped_epoch_ = s.at("stopped_epoch").as_int();
    best_epoch_ = s.at("best_epoch").as_int();
    best_ = s.number("best");
    warned_ = s.at("warned").as_bool();
    best_weights_.clear();
    const State& weights = s.child("best_weights");
    for (const auto& name : s.at("best_weight_names").as_array())
      best_weights_.emplace_back(name.as_string(), weights.tensor(name.as_string()).clone());
  }

  EarlyStoppingOptions o_;
  Monitor monitor_;
  int64_t wait_ = 0, stopped_epoch_ = -1, best_epoch_ = 0;
  double best_ = 0;
  Snapshot best_weights_;
  bool warned_ = false;
};

}  // namespace

void register_early_stopping(Registrar& r) {
  r.add(define<Callback, EarlyStoppingOptions>(
            "ktf.callbacks.EarlyStopping",
            "stops training when the monitored quantity has stopped improving")
            .alias("tf.keras.callbacks.EarlyStopping")
            .arg("monitor", &EarlyStoppingOptions::monitor, "log key to watch")
            .non_empty()
            .arg("min_delta", &EarlyStoppingOptions::min_delta,
                 "smallest change counted as an improvement")
            .min(0)
            .arg("patience", &EarlyStoppingOptions::patience,
                 "epochs without improvement before stopping")
            .min(0)
            .arg("mode", &EarlyStoppingOptions::mode,
                 "auto (max for accuracy-like keys), min or max", {"auto", "min", "max"})
            .arg("baseline", &EarlyStoppingOptions::baseline,
                 "value the quantity must beat to reset the patience; null = none")
            .arg("restore_best_weights", &EarlyStoppingOptions::restore_best_weights,
                 "on stopping, restore the weights of the best epoch")
            .arg("start_from_epoch", &EarlyStoppingOptions::start_from_epoch,
                 "epochs to wait before watching")
            .min(0)
            .arg("verbose", &EarlyStoppingOptions::verbose,
                 "accepted for Keras configs (stops are always logged)")
            .example(Json::object({{"monitor", "val_loss"}, {"patience", 2}}))
            .build([](const EarlyStoppingOptions& o, BuildContext&) {
              return std::make_shared<EarlyStopping>(o);
            }));
}

}  // namespace ktf::train
