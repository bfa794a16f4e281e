// Metrics derived from a confusion matrix over class-index targets: macro-averaged
// ktf.metrics.Precision, Recall, F1, and ktf.metrics.ConfusionMatrix. The matrix is accumulated on
// the device with index_add (no host sync per batch).
#include <ktf/components.h>
#include <ktf/registry.h>

#include "train.h"

namespace ktf::train {
namespace {

struct ClassMetricOptions {
  std::optional<int64_t> num_classes;  ///< classes; null = the dataset's number of classes
  std::string name = "";               ///< log key; empty = the metric's default name
  std::string filename = "confusion_matrix.jsonl";  ///< ConfusionMatrix: per-epoch matrices
};

int64_t resolve_num_classes(const ClassMetricOptions& o, const BuildContext& ctx) {
  int64_t n = o.num_classes.value_or(ctx.num_classes);
  KTF_CHECK(o.num_classes || ctx.num_classes > 0,
            "num_classes is not given and the dataset does not declare its number of classes");
  KTF_CHECK(n >= 2, "num_classes must be >= 2, got ", n);
  return n;
}

/// rows = target class, columns = predicted class.
class ConfusionCounter {
 public:
  explicit ConfusionCounter(int64_t num_classes) : c_(num_classes) {}

  void reset() { counts_ = torch::Tensor(); }
  void update(const char* metric, const torch::Tensor& output, const torch::Tensor& target) {
    torch::NoGradGuard no_grad;
    KTF_CHECK(output.dim() == 2 && output.size(1) == c_, metric, ": expected output [batch, ", c_,
              "] (num_classes = ", c_, "), got ", output.sizes());
    KTF_CHECK(target.numel() == output.size(0), metric, ": expected ", output.size(0),
              " class-index targets, got target of shape ", target.sizes());
    auto t = target.reshape({-1}).to(output.device(), torch::kLong);
    auto index = t * c_ + output.argmax(1);
    // Targets outside [0, num_classes) land in one extra bucket that is dropped.
    auto valid = t.ge(0).logical_and(t.lt(c_));
    index = torch::where(valid, index, torch::full_like(index, c_ * c_));
    if (!counts_.defined())
      counts_ = torch::zeros({c_ * c_ + 1}, torch::dtype(torch::kLong).device(output.device()));
    counts_ = counts_.index_add(0, index, torch::ones_like(index));
  }
  /// [C, C] int64 on the CPU.
  torch::Tensor matrix() const {
    if (!counts_.defined()) return torch::zeros({c_, c_}, torch::kLong);
    return counts_.slice(0, 0, c_ * c_).view({c_, c_}).cpu();
  }
  int64_t num_classes() const { return c_; }
  void save_state(State& s) const { s.set_tensor("counts", counts_); }
  void load_state(const State& s) { counts_ = s.tensor("counts"); }

 private:
  int64_t c_;
  torch::Tensor counts_;
};

enum class Average { Precision, Recall, F1 };

class MacroMetric : public Metric {
 public:
  MacroMetric(std::string name, int64_t num_classes, Average what)
      : name_(std::move(name)), counter_(num_classes), what_(what) {}
  std::string name() const override { return name_; }
  void reset() override { counter_.reset(); }
  void save_state(State& s) override { counter_.save_state(s); }
  void load_state(const State& s) override { counter_.load_state(s); }
  void update(const torch::Tensor& output, const torch::Tensor& target) override {
    counter_.update(label(), output, target);
  }
  /// Mean over all classes of the per-class value; a class with a 0/0 value counts as 0.
  double compute() override {
    auto m = counter_.matrix().to(torch::kDouble);
    auto tp = m.diag(), predicted = m.sum(0), actual = m.sum(1);
    torch::Tensor denominator = what_ == Average::Precision ? predicted
                                : what_ == Average::Recall  ? actual
                                                            : (predicted + actual) / 2;
    auto per_class =
        torch::where(denominator > 0, tp / denominator.clamp_min(1e-300), torch::zeros_like(tp));
    return per_class.mean().item<double>();
  }

 private:
  const char* label() const {
    return what_ == Average::Precision ? "Precision" : what_ == Average::Recall ? "Recall" : "F1";
  }
  std::string name_;
  ConfusionCounter counter_;
  Average what_;
};

class ConfusionMatrix : public Metric {
 public:
  ConfusionMatrix(std::string name, int64_t num_classes, std::string filename)
      : name_(std::move(name)), counter_(num_classes), filename_(std::move(filename)) {}
  std::string name() const override { return name_; }
  void reset() override { counter_.reset(); }
  void save_state(State& s) override { counter_.save_state(s); }
  void load_state(const State& s) override { counter_.load_state(s); }
  void update(const torch::Tensor& output, const torch::Tensor& target) override {
    counter_.update("ConfusionMatrix", output, target);
  }
  /// Overall accuracy: trace / total.
  double compute() override {
    auto m = counter_.matrix();
    int64_t total = m.sum().item<int64_t>();
    return total ? static_cast<double>(m.trace().item<int64_t>()) / static_cast<double>(total)
                 : 0.0;
  }
  std::string report_file() const override { return filename_; }
  /// The matrix as rows (target class) of counts per predicted class.
  Json report() const override {
    auto m = counter_.matrix().contiguous();
    const int64_t c = counter_.num_classes();
    const int64_t* data = m.data_ptr<int64_t>();
    Json::Array rows;
    for (int64_t i = 0; i < c; ++i) {
      Json::Array row;
      for (int64_t j = 0; j < c; ++j) row.emplace_back(static_cast<int64_t>(data[i * c + j]));
      rows.emplace_back(std::move(row));
    }
    return Json(std::move(rows));
  }

 private:
  std::string name_;
  ConfusionCounter counter_;
  std::string filename_;
};

template <class Options>
Definition<Metric, Options>& class_args(Definition<Metric, Options>& d, const char* name_doc) {
  return d
      .template arg<std::optional<int64_t>>("num_classes", &Options::num_classes,
                                            "number of classes; null = the dataset's")
      .min(2)
      .template arg<std::string>("name", &Options::name, name_doc)
      .example(Json::object())
      .example_target({});
}

}  // namespace

void register_classification_metrics(Registrar& r) {
  struct Variant {
    const char* name;
    const char* summary;
    const char* default_name;
    Average what;
  };
  for (const Variant& k : {
           Variant{"ktf.metrics.Precision", "macro-averaged precision over class-index targets",
                   "precision", Average::Precision},
           Variant{"ktf.metrics.Recall", "macro-averaged recall over class-index targets", "recall",
                   Average::Recall},
           Variant{"ktf.metrics.F1", "macro-averaged F1 score over class-index targets", "f1",
                   Average::F1},
       }) {
    auto d = define<Metric, ClassMetricOptions>(k.name, k.summary);
    std::string doc = std::string("log key; empty = \"") + k.default_name + "\"";
    class_args(d, doc.c_str());
    std::string default_name = k.default_name;
    Average what = k.what;
    r.add(d.build([default_name, what](const ClassMetricOptions& o, BuildContext& ctx) {
      return std::make_shared<MacroMetric>(o.name.empty() ? default_name : o.name,
                                           resolve_num_classes(o, ctx), what);
    }));
  }
  auto d = define<Metric, ClassMetricOptions>(
      "ktf.metrics.ConfusionMatrix",
      "confusion matrix written per epoch to a JSON-lines file; logs the overall accuracy");
  class_args(d, "log key of the overall accuracy; empty = \"confusion_accuracy\"");
  d.arg("filename", &ClassMetricOptions::filename,
        "JSON-lines file (relative to the run directory) receiving each epoch's matrices")
      .non_empty();
  r.add(d.build([](const ClassMetricOptions& o, BuildContext& ctx) {
    KTF_CHECK(!o.filename.empty(), "filename must not be empty");
    return std::make_shared<ConfusionMatrix>(o.name.empty() ? "confusion_accuracy" : o.name,
                                             resolve_num_classes(o, ctx), o.filename);
  }));
}

}  // namespace ktf::train
