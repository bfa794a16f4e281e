#include "loop.h"

#include <algorithm>
#include <chrono>
#include <fstream>

namespace ktf::train {
namespace {

std::string scoped(std::string name, char from, char to) {
  std::replace(name.begin(), name.end(), from, to);
  return name;
}

bool is_batch_norm(const torch::nn::Module& m) {
  return m.name().find("BatchNorm") != std::string::npos;
}

double current_lr(const Optimizer& optimizer) {
  const auto& groups = optimizer.param_groups();
  return groups.empty() ? 0.0 : groups.front().options().get_lr();
}

}  // namespace

LoopRunner::LoopRunner(const LoopOptions& options, BuildContext& ctx,
                       std::shared_ptr<TrainStep> step)
    : options_(options),
      step_(std::move(step)),
      average_(WeightAverage::from_options(options.ema, options.swa)) {
  KTF_CHECK(options.num_epochs >= 0, "num_epochs must be >= 0, got ", options.num_epochs);
  KTF_CHECK(!options.steps_per_epoch || *options.steps_per_epoch >= 1,
            "steps_per_epoch must be >= 1 or null, got ", options.steps_per_epoch.value_or(0));
  KTF_CHECK(!options.num_valid_steps || *options.num_valid_steps >= 0,
            "num_valid_steps must be >= 0 or null, got ", options.num_valid_steps.value_or(0));
  KTF_CHECK(options.valid_freq >= 1, "valid_freq must be >= 1, got ", options.valid_freq);
  KTF_CHECK(options.verbose >= 0 && options.verbose <= 2, "verbose must be 0, 1 or 2, got ",
            options.verbose);
  for (const auto& pattern : options.freeze_submodels)
    KTF_CHECK(!pattern.empty(), "freeze_submodels: names must not be empty");
  bool has_progress = false;
  for (const auto& ref : options.callbacks) {
    auto cb = ctx.build(ref);
    KTF_CHECK(cb, "callbacks: an entry is null");
    has_progress |= cb->shows_progress();
    callbacks_.push_back(std::move(cb));
  }
  if (options.verbose > 0 && !has_progress)
    callbacks_.insert(callbacks_.begin(), make_progress_bar(options.verbose, 10.0));
}

void LoopRunner::Pass::add_loss(const torch::Tensor& loss, int64_t n) {
  if (!loss_sum.defined())
    loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(loss.device()));
  loss_sum.add_(loss.dim() == 0 ? loss : loss.reshape({}), static_cast<double>(n));
  examples += n;
}

void LoopRunner::Pass::add_values(
    const std::vector<std::pair<std::string, torch::Tensor>>& step_values) {
  for (const auto& [name, value] : step_values) {
    KTF_CHECK_RUNTIME(value.defined() && value.numel() == 1, "the train step's value '", name,
                      "' must be a scalar");
    auto it = std::find_if(values.begin(), values.end(),
                           [&name = name](const auto& v) { return v.first == name; });
    if (it == values.end()) {
      values.emplace_back(
          name,
          std::make_pair(
              torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(value.device())),
              int64_t{0}));
      it = values.end() - 1;
    }
    it->second.first.add_(value.detach().reshape({}).to(torch::kDouble));
    ++it->second.second;
  }
}

void LoopRunner::prepare(TrainContext& ctx) {
  KTF_CHECK(ctx.model, "the train loop has no model");
  for (auto& p : ctx.model->parameters()) p.requires_grad_(true);
  frozen_norms_.clear();
  if (options_.freeze_submodels.empty()) return;
  auto modules = ctx.model->named_modules("", /*include_self=*/false);
  std::string names;
  for (const auto& pattern : options_.freeze_submodels) {
    const std::string path = scoped(pattern, '@', '.');
    const std::shared_ptr<torch::nn::Module>* found = modules.find(path);
    if (!found) {
      std::vector<std::string> candidates;
      for (const auto& item : modules) candidates.push_back(scoped(item.key(), '.', '@'));
      std::string msg = "freeze_submodels: '" + pattern + "' matches no submodule of the model";
      auto close = closest_names(scoped(pattern, '.', '@'), candidates, 3);
      if (!close.empty()) {
        msg += " (closest: ";
        for (size_t i = 0; i < close.size(); ++i) msg += (i ? "', '" : "'") + close[i];
        msg += "')";
      }
      throw Error(msg);
    }
    int64_t n = 0;
    for (auto& p : (*found)->parameters()) {
      p.requires_grad_(false);
      n += p.numel();
    }
    for (auto& m : (*found)->modules(/*include_self=*/true))
      if (is_batch_norm(*m)) frozen_norms_.push_back(m);
    names += (names.empty() ? "" : ", ") + pattern + " (" + std::to_string(n) + ")";
  }
  int64_t total = count_parameters(*ctx.model), trainable = count_parameters(*ctx.model, true);
  ctx.log("freeze_submodels: froze " + names + "; " + std::to_string(total - trainable) + " of " +
          std::to_string(total) + " parameters frozen, " + std::to_string(trainable) +
          " trainable");
}

Logs LoopRunner::running_logs(const Pass& pass) {
  Logs logs;
  if (pass.examples > 0)
    logs.emplace_back("loss", pass.loss_sum.item<double>() / static_cast<double>(pass.examples));
  for (const auto& [name, sum] : pass.values)
    set_log(logs, name, sum.first.item<double>() / static_cast<double>(sum.second));
  return logs;
}

LoopRunner::Pass LoopRunner::job_pass(const TrainContext& ctx, const Pass& pass) {
  if (ctx.world_size <= 1) return pass;
  auto number = [](double v) { return torch::tensor(v, torch::kDouble); };
  std::vector<torch::Tensor> sums{
      pass.loss_sum.defined() ? pass.loss_sum.detach().to(torch::kCPU).clone() : number(0),
      number(static_cast<double>(pass.examples)), number(static_cast<double>(pass.batches))};
  for (const auto& [name, sum] : pass.values) {
    sums.push_back(sum.first.detach().to(torch::kCPU).clone());
    sums.push_back(number(static_cast<double>(sum.second)));
  }
  ctx.all_reduce_sum(sums);
  Pass job = pass;
  job.loss_sum = sums[0];
  job.examples = static_cast<int64_t>(sums[1].item<double>());
  job.batches = static_cast<int64_t>(sums[2].item<double>());
  for (size_t i = 0; i < job.values.size(); ++i)
    job.values[i].second = {sums[3 + 2 * i], static_cast<int64_t>(sums[4 + 2 * i].item<double>())};
  return job;
}

void LoopRunner::add_metric_logs(TrainContext& ctx, int64_t epoch, const std::string& phase,
                                 const std::string& prefix, Logs& logs) {
  for (auto& m : ctx.metrics) {
    ctx.all_reduce_metric(*m);  // the job's sums in a distributed run
    set_log(logs, prefix + m->name(), m->compute());
    const std::string file = m->report_file();
    if (file.empty() || ctx.run_dir.empty()) continue;
    auto path = resolve_run_path(ctx.run_dir, file);
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::app);
    if (!out) throw Error("cannot write '" + path.string() + "'", {}, kExitRuntime);
    Json line = Json::object({{"cycle", static_cast<int64_t>(ctx.cycle + 1)},
                              {"epoch", epoch + 1},
                              {"phase", phase},
                              {"metric", m->name()},
                              {"value", m->report()}});
    out << line.dump() << "\n";
    out.close();
    if (!out) throw Error("cannot write '" + path.string() + "'", {}, kExitRuntime);
  }
}

void LoopRunner::train_epoch(TrainContext& ctx, int64_t epoch, Logs& logs, bool resume) {
  ctx.model->train();
  for (auto& bn : frozen_norms_) bn->eval();  // frozen BatchNorm keeps its statistics
  auto& data = *ctx.train_data;
  if (!resume) {  // a resumed epoch has its metrics, stream and sums from the checkpoint
    for (auto& m : ctx.metrics) m->reset();
    data.start_epoch(epoch);
    pass_ = Pass();
    seconds_before_ = 0;
  }
  phase_ = Phase::Train;
  Pass& pass = pass_;
  pass_started_ = std::chrono::steady_clock::now();
  // The breakdown covers this process's steps of the epoch (after a resume, those since it).
  StepTimes& times = ctx.step_times;
  times = StepTimes();
  const int64_t limit = options_.steps_per_epoch.value_or(-1);
  while (!ctx.stop_training && (limit < 0 || pass.batches < limit)) {
    times.start_step(ctx.device, pass.batches);
    const double data_before = times.data;
    std::optional<Batch> batch;
    {
      TimedPart waiting(times, &StepTimes::data, ctx.device);
      batch = data.next();
      if (batch) {
        batch->input = to_device(batch->input, ctx.device, ctx.input_format);
        batch->target = to_device(batch->target, ctx.device);
      }
    }
    if (!batch) {  // the end of the data: no step, so its wait is none of the steps' parts
      times.data = data_before;
      times.active = false;
      break;
    }
    const int64_t index = pass.batches++;
    ctx.batch = index;
    {
      TimedPart hooks(times, &StepTimes::callbacks, ctx.device);
      for (auto& cb : callbacks_) cb->on_batch_begin(ctx, index);
    }
    const int64_t steps_before = ctx.global_step;
    StepResult result = step_->step(ctx, *batch);
    if (average_ && ctx.global_step != steps_before)
      average_->after_step(*ctx.model, ctx.global_step);
    KTF_CHECK_RUNTIME(result.loss.defined() && result.loss.numel() == 1,
                      "the train step must return a scalar loss, got ",
                      result.loss.defined() ? result.loss.sizes() : torch::IntArrayRef{});
    const int64_t n = batch->input.dim() > 0 ? batch->input.size(0) : 1;
    pass.add_loss(result.loss.detach(), n);
    pass.add_values(result.values);
    if (ctx.cycle == 0 && epoch == 0 && index == 0) first_step_ = seconds_since_process_start();
    if (!result.output.defined()) pass.have_outputs = false;
    {
      TimedPart hooks(times, &StepTimes::callbacks, ctx.device);
      if (pass.have_outputs)
        for (auto& m : ctx.metrics) m->update(result.output, batch->target);

      bool wanted = false;
      for (auto& cb : callbacks_) wanted |= cb->wants_batch_logs(ctx, index);
      Logs batch_logs;
      if (wanted) {
        batch_logs = running_logs(pass);
        if (pass.have_outputs)
          for (auto& m : ctx.metrics) set_log(batch_logs, m->name(), m->compute());
      }
      for (auto& cb : callbacks_) cb->on_batch_end(ctx, index, batch_logs);
    }
    times.end_step(ctx.device);
    // Signals are acted on only here (and at the other safe points): a loop that also broke off
    // on the flag could see a signal that arrived after the safe point and end an epoch early.
    ctx.safe_point(SafePoint::Step);
  }
  if (ctx.finish_accumulation() && average_) average_->after_step(*ctx.model, ctx.global_step);
  if (pass.loss_sum.defined()) pass.loss_sum.item<double>();  // finish queued device work
  const double seconds =
      seconds_before_ +
      std::chrono::duration<double>(std::chrono::steady_clock::now() - pass_started_).count();
  KTF_CHECK_RUNTIME(pass.batches > 0, "the training data yielded no batch in epoch ", epoch + 1);
  const Pass job = job_pass(ctx, pass);  // every rank's examples: the job's throughput
  last_timing_ = {seconds, job.examples, pass.batches};
  logs = running_logs(job);
  if (pass.have_outputs) add_metric_logs(ctx, epoch, "train", "", logs);
}

void LoopRunner::validate(TrainContext& ctx, int64_t epoch, Logs& logs, bool resumed) {
  torch::NoGradGuard no_grad;
  // Validation draws nothing from the run's RNGs as far as training can tell (a model that samples
  // in eval mode): they are put back afterwards, and a resumed validation starts from them again.
  if (resumed)
    load_rng_state(rng_before_validation_);
  else
    rng_before_validation_ = State(), save_rng_state(rng_before_validation_);
  ctx.broadcast_buffers();  // a distributed job validates rank 0's model on every rank
  ctx.model->eval();
  for (auto& m : ctx.metrics) m->reset();
  auto& data = *ctx.valid_data;
  data.start_epoch(epoch);
  Pass pass;
  const int64_t limit = options_.num_valid_steps.value_or(-1);
  while (limit < 0 || pass.batches < limit) {
    auto batch = data.next();
    if (!batch) break;
    auto input = to_device(batch->input, ctx.device, ctx.input_format);
    auto target = to_device(batch->target, ctx.device);
    auto output = ctx.forward(input);
    auto loss = ctx.loss->compute(output, target);
    const int64_t n = input.dim() > 0 ? input.size(0) : 1;
    pass.add_loss(loss, n);
    ++pass.batches;
    for (auto& m : ctx.metrics) m->update(output, target);
    ctx.safe_point(SafePoint::Validation);  // a signal checkpoints here; validation is redone
  }
  load_rng_state(rng_before_validation_);
  const Pass job = job_pass(ctx, pass);  // a rank may have no validation batch, the job has
  if (job.batches == 0) return;
  set_log(logs, "val_loss", job.loss_sum.item<double>() / static_cast<double>(job.examples));
  add_metric_logs(ctx, epoch, "validation", "val_", logs);
}

void LoopRunner::restore_report_files(TrainContext& ctx) {
  for (const auto& [file, size] : report_restore_) {
    const auto path = resolve_run_path(ctx.run_dir, file);
    std::error_code ec;
    const auto have = static_cast<int64_t>(std::filesystem::file_size(path, ec));
    if (ec) continue;
    if (have > size) std::filesystem::resize_file(path, static_cast<uintmax_t>(size), ec);
    if (ec)
      throw Error("cannot truncate '" + path.string() + "': " + ec.message(), {}, kExitRuntime);
  }
  report_restore_.clear();
}

Logs LoopRunner::run(TrainContext& ctx) {
  KTF_CHECK(ctx.model && ctx.loss && ctx.optimizer && ctx.train_data,
            "the train loop needs a model, a loss, an optimizer and training data");
  ctx.stop_training = false;
  ctx.step_settings = StepSettings{options_.grad_accumulation, options_.clip_grad_norm};
  ctx.use_precision(options_.precision, options_.loss_scaling);
  ctx.cuda_graphs = options_.cuda_graphs;
  ctx.callbacks = callbacks_;
  run_dir_ = ctx.run_dir;
  ctx.num_epochs = ctx.dry_run ? 1 : options_.num_epochs;  // --dry-run: one epoch of one batch
  ctx.steps_per_epoch =
      options_.steps_per_epoch
          ? (ctx.train_data->num_batches() < 0
                 ? *options_.steps_per_epoch
                 : std::min(*options_.steps_per_epoch, ctx.train_data->num_batches()))
          : ctx.train_data->num_batches();
  for (auto& cb : callbacks_) cb->on_train_begin(ctx);
  phase_ = Phase::Done;
  epoch_ = -1;
  resumed_ = false;
  report_files_.clear();
  for (auto& m : ctx.metrics) {
    const std::string file = m->report_file();
    if (!file.empty() && !ctx.run_dir.empty() &&
        std::find(report_files_.begin(), report_files_.end(), file) == report_files_.end())
      report_files_.push_back(file);
  }
  // A run's report files hold its own rows: a fresh run (also one started again in the directory
  // of an attempt that died before its first checkpoint) starts them empty.
  if (ctx.cycle == 0 && !ctx.resuming)
    for (const auto& file : report_files_) {
      std::error_code ec;
      std::filesystem::resize_file(resolve_run_path(ctx.run_dir, file), 0, ec);
    }
  ctx.restore();  // a resumed cycle: load_state() set the position below
  restore_report_files(ctx);
  if (average_) {
    average_->begin(*ctx.model);
    if (!resumed_) ctx.log("train loop: " + average_->describe() + " of the weights");
  }
  Logs logs = resumed_ ? logs_ : Logs();
  bool within = resumed_ && phase_ != Phase::Done;  // resumed inside epoch epoch_
  int64_t epoch = resumed_ ? (within ? epoch_ : epoch_ + 1) : 0;
  if (resumed_ && phase_ == Phase::Done && ctx.stop_training) epoch = ctx.num_epochs;
  for (; epoch < ctx.num_epochs; ++epoch) {
    ctx.epoch = epoch;
    epoch_ = epoch;
    if (!within)
      for (auto& cb : callbacks_) cb->on_epoch_begin(ctx, epoch);
    bool resumed_validation = within && phase_ == Phase::Validate;
    if (!within || phase_ == Phase::Train) {
      train_epoch(ctx, epoch, logs, within);
      if (average_) average_->after_epoch(*ctx.model, epoch);
    } else {
      logs = logs_;  // resumed during validation: the training pass is done, validate again
    }
    // Validation and the epoch-end callbacks see the averaged weights; training the raw ones.
    if (average_) average_->swap_in(*ctx.model);
    within = false;
    phase_ = Phase::Validate;
    logs_ = logs;
    const bool last = epoch + 1 == ctx.num_epochs || ctx.stop_training;
    if (ctx.valid_data && (last || (epoch + 1) % options_.valid_freq == 0))
      validate(ctx, epoch, logs, resumed_validation);
    resumed_validation = false;
    set_log(logs, "lr", current_lr(*ctx.optimizer));  // before the schedule's epoch update
    Logs recorded = logs;  // metrics.jsonl also gets the training pass's timing
    recorded.emplace_back("train_seconds", last_timing_.seconds);
    recorded.emplace_back("train_samples", LogValue(last_timing_.examples));
    recorded.emplace_back("train_steps", LogValue(last_timing_.batches));
    recorded.emplace_back("samples_per_second",
                          last_timing_.examples / std::max(last_timing_.seconds, 1e-9));
    if (first_step_ >= 0) recorded.emplace_back("first_step_after_start", first_step_);
    for (const auto& [name, seconds] : ctx.step_times.parts(last_timing_.seconds))
      recorded.emplace_back("time_" + name, seconds);
    if (const GradScaler* scaler = ctx.loss_scaler()) {
      recorded.emplace_back("loss_scale", scaler->current_scale());
      recorded.emplace_back("skipped_steps", LogValue(scaler->skipped_steps()));
    }
    first_step_ = -1;
    ctx.record("epoch", epoch, recorded);
    if (ctx.lr_schedule) ctx.lr_schedule->on_epoch_end(epoch, logs);
    for (auto& cb : callbacks_) cb->on_epoch_end(ctx, epoch, logs);
    if (average_) average_->swap_out(*ctx.model);
    phase_ = Phase::Done;
    logs_ = logs;
    ctx.safe_point(SafePoint::EpochEnd);
    if (ctx.stop_training) break;
  }
  if (average_) {
    // The cycle's weights (weights/cycle-<k>.pt, the next cycle's start, --evaluate) are the
    // averages; rank 0 keeps the raw ones beside them.
    std::filesystem::path raw;
    if (ctx.is_main() && !ctx.run_dir.empty() && !ctx.dry_run)
      raw = ctx.run_dir / "weights" / ("cycle-" + std::to_string(ctx.cycle + 1) + ".raw.pt");
    average_->finish(*ctx.model, raw);
  }
  for (auto& cb : callbacks_) cb->on_train_end(ctx, logs);
  return logs;
}

namespace {

const char* phase_name(int phase) {
  static const char* names[] = {"train", "validate", "done"};
  return names[phase];
}

void save_logs(State& s, const Logs& logs) {
  Json::Array keys;
  for (const auto& [k, v] : logs) {
    keys.emplace_back(Json::array({k, v.is_int()}));
    s.set_number("value/" + k, v.value());
  }
  s.set("keys", Json(std::move(keys)));
}

Logs load_logs(const State& s) {
  Logs logs;
  for (const auto& entry : s.at("keys").as_array()) {
    const std::string& k = entry.as_array()[0].as_string();
    const double v = s.number("value/" + k);
    if (entry.as_array()[1].as_bool())
      logs.emplace_back(k, LogValue(static_cast<int64_t>(v)));
    else
      logs.emplace_back(k, LogValue(v));
  }
  return logs;
}

}  // namespace

void LoopRunner::save_state(State& s) {
  s.set("phase", phase_name(static_cast<int>(phase_)));
  s.set("epoch", epoch_);
  State& pass = s.child("pass");
  pass.set_tensor("loss_sum", pass_.loss_sum);
  pass.set("examples", pass_.examples);
  pass.set("batches", pass_.batches);
  pass.set("have_outputs", pass_.have_outputs);
  Json::Array names;
  for (const auto& [name, sum] : pass_.values) {
    names.emplace_back(name);
    pass.set_tensor("value/" + name, sum.first);
    pass.set("count/" + name, sum.second);
  }
  pass.set("values", Json(std::move(names)));
  save_logs(s.child("logs"), logs_);
  const double seconds =
      phase_ == Phase::Train
          ? seconds_before_ +
                std::chrono::duration<double>(std::chrono::steady_clock::now() - pass_started_)
                    .count()
          : last_timing_.seconds;
  s.set_number("seconds", seconds);
  s.set("timing_examples", last_timing_.examples);
  s.set("timing_batches", last_timing_.batches);
  s.set_number("first_step", first_step_);
  Json reports = Json::object();
  for (const auto& file : report_files_) {
    const auto path = resolve_run_path(run_dir_, file);
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    reports.set(file, ec ? int64_t{0} : static_cast<int64_t>(size));
    if (!ec) sync_file(path);
  }
  s.set("reports", reports);
  if (phase_ == Phase::Validate) s.child("rng_before_validation") = rng_before_validation_;
  step_->save_state(s.child("step"));
  if (average_) average_->save_state(s.child("weight_average"));
}

void LoopRunner::load_state(const State& s) {
  const std::string phase = s.at("phase").as_string();
  phase_ = phase == "train" ? Phase::Train : phase == "validate" ? Phase::Validate : Phase::Done;
  epoch_ = s.at("epoch").as_int();
  const State& pass = s.child("pass");
  pass_ = Pass();
  pass_.loss_sum = pass.tensor("loss_sum");
  pass_.examples = pass.at("examples").as_int();
  pass_.batches = pass.at("batches").as_int();
  pass_.have_outputs = pass.at("have_outputs").as_bool();
  for (const auto& name : pass.at("values").as_array())
    pass_.values.emplace_back(name.as_string(),
                              std::make_pair(pass.tensor("value/" + name.as_string()),
                                             pass.at("count/" + name.as_string()).as_int()));
  logs_ = load_logs(s.child("logs"));
  seconds_before_ = s.number("seconds");
  last_timing_ = {seconds_before_, s.at("timing_examples").as_int(),
                  s.at("timing_batches").as_int()};
  first_step_ = s.number("first_step");
  report_restore_.clear();
  for (const auto& [file, size] : s.at("reports").as_object())
    report_restore_.emplace_back(file, size.as_int());
  if (phase_ == Phase::Validate) rng_before_validation_ = s.child("rng_before_validation");
  step_->load_state(s.child("step"));
  if (average_) {
    if (!s.has_child("weight_average"))
      throw Error("the checkpoint has no weight averages: it was written without ema or swa", {},
                  kExitRuntime);
    average_->load_state(s.child("weight_average"));
  }
  resumed_ = true;
}

}  // namespace ktf::train
