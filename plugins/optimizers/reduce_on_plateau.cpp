// Reduce the learning rate when a monitored quantity stops improving (Keras ReduceLROnPlateau's
// rule, run as a schedule at the end of every epoch).
#include <ktf/components.h>
#include <ktf/registry.h>

#include <algorithm>
#include <limits>

#include "optimizers.h"

namespace ktf::optimizers {
namespace {

struct ReduceOnPlateauOptions {
  std::string monitor = "val_loss";  ///< epoch log to watch
  std::string mode = "auto";         ///< "min", "max", or "auto" (max when monitor has "acc")
  double factor = 0.1;               ///< new lr = lr * factor
  int64_t patience = 10;             ///< epochs without improvement before a reduction
  double min_delta = 1e-4;           ///< smallest change that counts as an improvement
  int64_t cooldown = 0;              ///< epochs to wait after a reduction before counting again
  double min_lr = 0.0;               ///< lower bound of the lr
};

class ReduceOnPlateau : public Schedule {
 public:
  ReduceOnPlateau(const ReduceOnPlateauOptions& o, BuildContext& ctx)
      : Schedule(ctx, "ReduceOnPlateau"), o_(o) {
    KTF_CHECK(o.mode == "min" || o.mode == "max" || o.mode == "auto",
              "mode must be \"min\", \"max\" or \"auto\", got \"", o.mode, "\"");
    KTF_CHECK(o.factor > 0 && o.factor < 1, "factor must be in (0, 1), got ", o.factor);
    KTF_CHECK(o.patience >= 0, "patience must be >= 0, got ", o.patience);
    KTF_CHECK(o.min_delta >= 0, "min_delta must be >= 0, got ", o.min_delta);
    KTF_CHECK(o.cooldown >= 0, "cooldown must be >= 0, got ", o.cooldown);
    KTF_CHECK(o.min_lr >= 0, "min_lr must be >= 0, got ", o.min_lr);
    maximize_ = o.mode == "max" || (o.mode == "auto" && o.monitor.find("acc") != std::string::npos);
    best_ = maximize_ ? -std::numeric_limits<double>::infinity()
                      : std::numeric_limits<double>::infinity();
  }

  void on_epoch_end(int64_t /*epoch*/, const Logs& logs) override {
    auto value = find_log(logs, o_.monitor);
    if (!value) {
      std::string keys;
      for (const auto& [k, v] : logs) keys += (keys.empty() ? "" : ", ") + k;
      KTF_CHECK(false, "ReduceOnPlateau: monitor '", o_.monitor,
                "' is not in the epoch logs (they have: ", keys.empty() ? "nothing" : keys,
                "); validation logs need validation data");
    }
    const double current = *value;
    if (cooldown_left_ > 0) {
      --cooldown_left_;
      wait_ = 0;
    }
    bool improved = maximize_ ? current > best_ + o_.min_delta : current < best_ - o_.min_delta;
    if (improved) {
      best_ = current;
      wait_ = 0;
    } else if (cooldown_left_ == 0 && ++wait_ >= o_.patience) {
      for (auto& group : optimizer_->param_groups()) {
        double lr = group.options().get_lr();
        if (lr > o_.min_lr) group.options().set_lr(std::max(lr * o_.factor, o_.min_lr));
      }
      cooldown_left_ = o_.cooldown;
      wait_ = 0;
    }
  }

 private:
  void save_extra(State& s) const override {
    s.set_number("best", best_);
    s.set("wait", wait_);
    s.set("cooldown_left", cooldown_left_);
  }
  void load_extra(const State& s) override {
    best_ = s.number("best");
    wait_ = s.at("wait").as_int();
    cooldown_left_ = s.at("cooldown_left").as_int();
  }

  ReduceOnPlateauOptions o_;
  bool maximize_ = false;
  double best_ = 0;
  int64_t wait_ = 0;
  int64_t cooldown_left_ = 0;
};

}  // namespace

void register_reduce_on_plateau(Registrar& r) {
  r.add(
      define<LrSchedule, ReduceOnPlateauOptions>(
          "ktf.optimizers.schedules.ReduceOnPlateau",
          "per epoch: multiply the lr by factor when a monitored log stops improving")
          .arg("monitor", &ReduceOnPlateauOptions::monitor,
               "epoch log to watch, e.g. \"val_loss\" (default) or \"val_accuracy\"")
          .non_empty()
          .arg("mode", &ReduceOnPlateauOptions::mode,
               "\"min\", \"max\", or \"auto\" (default: max when monitor contains \"acc\")",
               {"auto", "min", "max"})
          .arg("factor", &ReduceOnPlateauOptions::factor,
               "new lr = lr * factor, in (0, 1) (default 0.1)")
          .above(0)
          .below(1)
          .arg("patience", &ReduceOnPlateauOptions::patience,
               "epochs without improvement before a reduction, >= 0 (default 10)")
          .min(0)
          .arg("min_delta", &ReduceOnPlateauOptions::min_delta,
               "smallest change that counts as an improvement, >= 0 (default 1e-4)")
          .min(0)
          .arg("cooldown", &ReduceOnPlateauOptions::cooldown,
               "epochs after a reduction before counting again, >= 0 (default 0)")
          .min(0)
          .arg("min_lr", &ReduceOnPlateauOptions::min_lr, "lower bound of the lr, >= 0 (default 0)")
          .min(0)
          .example(Json::object({{"monitor", "val_loss"}, {"patience", 1}}))
          .build([](const ReduceOnPlateauOptions& o, BuildContext& ctx) {
            return std::make_shared<ReduceOnPlateau>(o, ctx);
          }));
}

}  // namespace ktf::optimizers
