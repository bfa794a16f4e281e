// ktf.callbacks.JSONLogger: one JSON object per epoch per line ({"cycle", "epoch", <logs>}), with
// epochs counted from 1 as in metrics.jsonl. Non-finite values are written as null.
#include <ktf/components.h>
#include <ktf/registry.h>

#include "train.h"

namespace ktf::train {
namespace {

struct JSONLoggerOptions {
  std::string filename = "training.jsonl";  ///< JSON-lines file, relative to the run directory
  bool append = false;                      ///< append to an existing file instead of replacing it
};

class JSONLogger : public Callback {
 public:
  explicit JSONLogger(const JSONLoggerOptions& o) : o_(o) {
    KTF_CHECK(!o.filename.empty(), "filename must not be empty");
  }

  void on_train_begin(TrainContext& ctx) override {
    auto path = resolve_run_path(ctx.run_dir, o_.filename);
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
    out_.open(path, /*fresh=*/!o_.append && !ctx.resuming);
  }

  void on_epoch_end(TrainContext& ctx, int64_t epoch, const Logs& logs) override {
    if (!out_.is_open()) return;
    Json line =
        Json::object({{"cycle", static_cast<int64_t>(ctx.cycle + 1)}, {"epoch", epoch + 1}});
    for (const auto& [k, v] : logs) line.set(k, v.to_json());
    out_.write(line.dump() + "\n");
    out_.flush();
  }

  void on_train_end(TrainContext&, const Logs&) override { out_.close(); }
  void save_state(State& s) override { out_.save_state(s); }
  void load_state(const State& s) override { out_.load_state(s); }

 private:
  JSONLoggerOptions o_;
  RunLog out_;
};

}  // namespace

void register_json_logger(Registrar& r) {
  r.add(define<Callback, JSONLoggerOptions>("ktf.callbacks.JSONLogger",
                                            "writes each epoch's logs as one JSON line")
            .arg("filename", &JSONLoggerOptions::filename,
                 "JSON-lines file, relative to the run directory (absolute allowed)")
            .non_empty()
            .arg("append", &JSONLoggerOptions::append,
                 "append to an existing file instead of replacing it")
            .example(Json::object({{"filename", "training.jsonl"}}))
            .build([](const JSONLoggerOptions& o, BuildContext&) {
              return std::make_shared<JSONLogger>(o);
            }));
}

}  // namespace ktf::train
