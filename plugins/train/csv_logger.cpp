// ktf.callbacks.CSVLogger: one CSV row per epoch, as tf.keras.callbacks.CSVLogger writes it
// (column "epoch" counted from 0, then the log keys sorted by name, "NA" for a missing value).
#include <ktf/components.h>
#include <ktf/registry.h>

#include <algorithm>
#include <sstream>

#include "train.h"

namespace ktf::train {
namespace {

struct CSVLoggerOptions {
  std::string filename = "training.csv";  ///< CSV file, relative to the run directory
  std::string separator = ",";            ///< column separator
  bool append = false;                    ///< append to an existing file instead of replacing it
};

class CSVLogger : public Callback {
 public:
  explicit CSVLogger(const CSVLoggerOptions& o) : o_(o) {
    KTF_CHECK(!o.filename.empty(), "filename must not be empty");
    KTF_CHECK(!o.separator.empty(), "separator must not be empty");
  }

  void on_train_begin(TrainContext& ctx) override {
    path_ = resolve_run_path(ctx.run_dir, o_.filename);
    if (path_.has_parent_path()) std::filesystem::create_directories(path_.parent_path());
    std::error_code ec;
    header_written_ = o_.append && std::filesystem::file_size(path_, ec) > 0 && !ec;
    out_.open(path_, /*fresh=*/!o_.append && !ctx.resuming);
    keys_.clear();
    with_validation_ = ctx.valid_data != nullptr;
  }

  void on_epoch_end(TrainContext&, int64_t epoch, const Logs& logs) override {
    if (!out_.is_open()) return;
    std::ostringstream row;
    if (keys_.empty()) {
      // Validation may be skipped on this epoch (valid_freq > 1): reserve its columns anyway.
      for (const auto& [k, v] : logs) {
        keys_.push_back(k);
        if (with_validation_ && k.rfind("val_", 0) != 0 && k != "lr") keys_.push_back("val_" + k);
      }
      std::sort(keys_.begin(), keys_.end());
      keys_.erase(std::unique(keys_.begin(), keys_.end()), keys_.end());
      if (!header_written_) {
        row << "epoch";
        for (const auto& k : keys_) row << o_.separator << k;
        row << "\n";
        header_written_ = true;
      }
    }
    row << epoch;
    for (const auto& k : keys_) {
      auto v = find_log(logs, k);
      row << o_.separator << (v ? format_double(*v) : "NA");
    }
    row << "\n";
    out_.write(row.str());
    out_.flush();
  }

  /// The file's length and the columns chosen (a resumed run writes the same columns).
  void save_state(State& s) override {
    out_.save_state(s.child("file"));
    Json::Array keys;
    for (const auto& k : keys_) keys.emplace_back(k);
    s.set("keys", Json(std::move(keys)));
    s.set("header_written", header_written_);
  }
  void load_state(const State& s) override {
    out_.load_state(s.child("file"));
    keys_.clear();
    for (const auto& k : s.at("keys").as_array()) keys_.push_back(k.as_string());
    header_written_ = s.at("header_written").as_bool();
  }

  void on_train_end(TrainContext&, const Logs&) override { out_.close(); }

 private:
  CSVLoggerOptions o_;
  std::filesystem::path path_;
  RunLog out_;
  std::vector<std::string> keys_;
  bool header_written_ = false;
  bool with_validation_ = false;
};

}  // namespace

void register_csv_logger(Registrar& r) {
  r.add(define<Callback, CSVLoggerOptions>("ktf.callbacks.CSVLogger",
                                           "writes each epoch's logs as a CSV row")
            .alias("tf.keras.callbacks.CSVLogger")
            .arg("filename", &CSVLoggerOptions::filename,
                 "CSV file, relative to the run directory (absolute allowed)")
            .non_empty()
            .arg("separator", &CSVLoggerOptions::separator, "column separator")
            .non_empty()
            .arg("append", &CSVLoggerOptions::append,
                 "append to an existing file instead of replacing it")
            .example(Json::object({{"filename", "training.csv"}}))
            .build([](const CSVLoggerOptions& o, BuildContext&) {
              return std::make_shared<CSVLogger>(o);
            }));
}

}  // namespace ktf::train
