// The train loops' weight averaging (weight_average.h).
#include "weight_average.h"

#include <ktf/state.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace ktf::train {

namespace {

/// The object's keys must be among `allowed`.
void check_keys(const Json& object, const char* what, const std::vector<std::string>& allowed) {
  for (const auto& [key, value] : object.as_object())
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      throw Error(std::string(what) + ": unknown key '" + excerpt(key) + "' (it takes " + list +
                  ")");
    }
}

double number_of(const Json& object, const char* what, const char* key, double fallback) {
  const Json* v = object.find(key);
  if (!v || v->is_null()) return fallback;
  if (!v->is_number())
    throw Error(std::string(what) + " › " + key + ": expected a number, got " + describe_value(*v));
  return v->as_number();
}

int64_t int_of(const Json& object, const char* what, const char* key, int64_t fallback) {
  const Json* v = object.find(key);
  if (!v || v->is_null()) return fallback;
  if (!v->is_int())
    throw Error(std::string(what) + " › " + key + ": expected an integer, got " +
                describe_value(*v));
  return v->as_int();
}

}  // namespace

std::optional<WeightAverage> WeightAverage::from_options(const std::optional<JsonObject>& ema,
                                                         const std::optional<JsonObject>& swa) {
  if (ema && swa) throw Error("ema and swa cannot both be set: choose one way to average");
  if (!ema && !swa) return std::nullopt;
  WeightAverage a;
  if (ema) {
    const Json& o = ema->value;
    check_keys(o, "ema", {"decay", "warmup", "start_step"});
    a.ema_ = true;
    a.decay_ = number_of(o, "ema", "decay", 0.999);
    if (!(a.decay_ > 0 && a.decay_ < 1))
      throw Error("ema › decay: must be in (0, 1), got " + describe_value(Json(a.decay_)));
    if (const Json* w = o.find("warmup"); w && !w->is_null()) {
      if (!w->is_bool()) throw Error("ema › warmup: expected a boolean, got " + describe_value(*w));
      a.warmup_ = w->as_bool();
    }
    a.start_step_ = int_of(o, "ema", "start_step", 0);
    if (a.start_step_ < 0)
      throw Error("ema › start_step: must be >= 0, got " + std::to_string(a.start_step_));
  } else {
    const Json& o = swa->value;
    check_keys(o, "swa", {"start_epoch"});
    a.ema_ = false;
    a.start_epoch_ = int_of(o, "swa", "start_epoch", 1);
    if (a.start_epoch_ < 1)
      throw Error("swa › start_epoch: must be >= 1, got " + std::to_string(a.start_epoch_));
  }
  return a;
}

std::string WeightAverage::describe() const {
  std::ostringstream out;
  if (ema_) {
    out << "ema (decay " << decay_ << (warmup_ ? ", with warm-up" : "");
    if (start_step_ > 0) out << ", from step " << start_step_ + 1;
    out << ")";
  } else {
    out << "swa (from epoch " << start_epoch_ << ")";
  }
  return out.str();
}

std::vector<torch::Tensor> WeightAverage::targets(Network& model) const {
  std::vector<torch::Tensor> out;
  for (const auto& p : model.parameters()) out.push_back(p);
  if (ema_)  // BatchNorm's running statistics average too (as timm's ModelEmaV2); counts do not
    for (const auto& b : model.buffers())
      if (b.is_floating_point()) out.push_back(b);
  return out;
}

void WeightAverage::begin(Network& model) {
  torch::NoGradGuard no_grad;
  auto t = targets(model);
  if (average_.empty()) {
    for (const auto& x : t) average_.push_back(x.detach().clone());
  } else {
    KTF_CHECK_RUNTIME(average_.size() == t.size(), "the checkpoint's weight averages hold ",
                      average_.size(), " tensors, the model has ", t.size());
    for (size_t i = 0; i < t.size(); ++i)
      KTF_CHECK_RUNTIME(average_[i].sizes() == t[i].sizes(), "the checkpoint's weight average ", i,
                        " has shape ", average_[i].sizes(), ", the model's tensor ", t[i].sizes());
    for (auto& a : average_) a = a.to(t.front().device());
  }
  if (!raw_.empty()) swap_out(model);  // resumed inside validation: the model holds the averages
}

void WeightAverage::after_step(Network& model, int64_t global_step) {
  if (!ema_) return;
  torch::NoGradGuard no_grad;
  auto t = targets(model);
  if (global_step <= start_step_) {
    for (size_t i = 0; i < t.size(); ++i) average_[i].copy_(t[i]);
    return;
  }
  ++updates_;
  const double n = static_cast<double>(updates_);
  const double decay = warmup_ ? std::min(decay_, (1 + n) / (10 + n)) : decay_;
  for (size_t i = 0; i < t.size(); ++i) average_[i].lerp_(t[i], 1 - decay);
}

void WeightAverage::after_epoch(Network& model, int64_t epoch) {
  if (ema_ || epoch + 1 < start_epoch_) return;
  torch::NoGradGuard no_grad;
  auto t = targets(model);
  ++updates_;
  for (size_t i = 0; i < t.size(); ++i) {
    if (updates_ == 1)
      average_[i].copy_(t[i]);
    else
      average_[i].lerp_(t[i], 1.0 / static_cast<double>(updates_));  // the running mean
  }
}

bool WeightAverage::ready() const { return ema_ || updates_ > 0; }

void WeightAverage::swap_in(Network& model) {
  if (!ready() || !raw_.empty()) return;
  torch::NoGradGuard no_grad;
  auto t = targets(model);
  for (size_t i = 0; i < t.size(); ++i) {
    raw_.push_back(t[i].detach().clone());
    t[i].copy_(average_[i]);
  }
}

void WeightAverage::swap_out(Network& model) {
  if (raw_.empty()) return;
  torch::NoGradGuard no_grad;
  auto t = targets(model);
  for (size_t i = 0; i < t.size(); ++i) t[i].copy_(raw_[i]);
  raw_.clear();
}

void WeightAverage::finish(Network& model, const std::filesystem::path& raw_path) {
  swap_out(model);
  if (finished_ || !ready()) return;
  if (!raw_path.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(raw_path.parent_path(), ec);
    std::ostringstream bytes;
    torch::save(std::shared_ptr<torch::nn::Module>(&model, [](torch::nn::Module*) {}), bytes);
    write_file_atomic(raw_path, bytes.str());
  }
  torch::NoGradGuard no_grad;
  auto t = targets(model);
  for (size_t i = 0; i < t.size(); ++i) t[i].copy_(average_[i]);
  finished_ = true;
}

void WeightAverage::save_state(State& s) const {
  s.set("updates", updates_);
  s.set("finished", finished_);
  s.set("count", static_cast<int64_t>(average_.size()));
  for (size_t i = 0; i < average_.size(); ++i)
    s.set_tensor("average/" + std::to_string(i), average_[i]);
  // A checkpoint inside validation: the model holds the averages, these are the raw weights.
  s.set("raw_count", static_cast<int64_t>(raw_.size()));
  for (size_t i = 0; i < raw_.size(); ++i) s.set_tensor("raw/" + std::to_string(i), raw_[i]);
}

void WeightAverage::load_state(const State& s) {
  updates_ = s.at("updates").as_int();
  finished_ = s.at("finished").as_bool();
  average_.clear();
  raw_.clear();
  for (int64_t i = 0; i < s.at("count").as_int(); ++i)
    average_.push_back(s.tensor("average/" + std::to_string(i)));
  for (int64_t i = 0; i < s.at("raw_count").as_int(); ++i)
    raw_.push_back(s.tensor("raw/" + std::to_string(i)));
}

}  // namespace ktf::train
