// ktf.callbacks.TerminateOnNaN: stops training as soon as the loss is NaN or infinite, as
// tf.keras.callbacks.TerminateOnNaN. It watches the epoch's running mean loss, which turns
// non-finite at the first non-finite batch loss.
#include <ktf/components.h>
#include <ktf/registry.h>

#include <cmath>

#include "train.h"

namespace ktf::train {
namespace {

struct TerminateOnNaNOptions {
  int64_t check_every = 1;  ///< check every N batches (each check reads the loss back: a sync)
};

class TerminateOnNaN : public Callback {
 public:
  explicit TerminateOnNaN(const TerminateOnNaNOptions& o) : every_(o.check_every) {
    KTF_CHECK(every_ >= 1, "check_every must be >= 1, got ", every_);
  }
  bool wants_batch_logs(const TrainContext&, int64_t batch) override {
    return (batch + 1) % every_ == 0;
  }
  void on_batch_end(TrainContext& ctx, int64_t batch, const Logs& logs) override {
    check(ctx, logs, "Batch " + std::to_string(batch + 1));
  }
  void on_epoch_end(TrainContext& ctx, int64_t epoch, const Logs& logs) override {
    check(ctx, logs, "Epoch " + std::to_string(epoch + 1));
  }

 private:
  void check(TrainContext& ctx, const Logs& logs, const std::string& where) {
    auto loss = find_log(logs, "loss");
    if (!loss || std::isfinite(*loss) || ctx.stop_training) return;
    ctx.log(where + ": invalid loss (" + format_double(*loss) + "), terminating training");
    ctx.stop_training = true;
  }
  int64_t every_;
};

}  // namespace

void register_terminate_on_nan(Registrar& r) {
  r.add(define<Callback, TerminateOnNaNOptions>(
            "ktf.callbacks.TerminateOnNaN", "stops training when the loss becomes NaN or infinite")
            .alias("tf.keras.callbacks.TerminateOnNaN")
            .arg("check_every", &TerminateOnNaNOptions::check_every,
                 "check every N batches (each check waits for the device)")
            .min(1)
            .example(Json::object())
            .build([](const TerminateOnNaNOptions& o, BuildContext&) {
              return std::make_shared<TerminateOnNaN>(o);
            }));
}

}  // namespace ktf::train
