// The batch profiler (profiler.h).
#include "profiler.h"

#include <ATen/record_function.h>
#include <ktf/state.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <vector>

#include "train.h"

namespace ktf::train {
namespace fs = std::filesystem;

namespace {

/// Operators recorded in one window at most (about 100 bytes each); later ones are counted only.
constexpr size_t kMaxOps = 2'000'000;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct OpEvent {
  std::string name;
  uint64_t tid;
  int64_t start, end;
  bool user_scope;
};

struct StartMark : at::ObserverContext {
  int64_t ns = 0;
};

}  // namespace

struct BatchProfiler::Recording {
  std::mutex mutex;
  std::vector<OpEvent> ops;
  size_t dropped = 0;
  /// ProfilerStep#<n> spans: {n, start, end}.
  std::vector<std::tuple<int64_t, int64_t, int64_t>> steps;
  int64_t step_start = 0;
  uint64_t main_tid = 0;
  at::CallbackHandle handle = 0;
  /// system_clock minus steady_clock, in ns: trace times are wall-clock microseconds.
  int64_t wall_offset = 0;
};

namespace {

/// The recording the RecordFunction callbacks (plain function pointers) add to: one at a time.
std::atomic<BatchProfiler::Recording*> g_active{nullptr};

std::unique_ptr<at::ObserverContext> on_op_start(const at::RecordFunction&) {
  auto mark = std::make_unique<StartMark>();
  mark->ns = now_ns();
  return mark;
}

void on_op_end(const at::RecordFunction& fn, at::ObserverContext* context) {
  BatchProfiler::Recording* r = g_active.load();
  if (!r || !context) return;
  const int64_t end = now_ns();
  const int64_t start = static_cast<StartMark*>(context)->ns;
  std::lock_guard<std::mutex> lock(r->mutex);
  if (r->ops.size() >= kMaxOps) {
    ++r->dropped;
    return;
  }
  r->ops.push_back(
      {fn.name(), fn.threadId(), start, end, fn.scope() == at::RecordScope::USER_SCOPE});
}

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "localhost";
  std::string name = buf;
  std::replace(name.begin(), name.end(), '.', '-');  // the file name's dots separate its parts
  return name;
}

Json duration_event(const std::string& category, const std::string& name, uint64_t tid,
                    int64_t start, int64_t end, int64_t wall_offset, Json args) {
  return Json::object({{"ph", "X"},
                       {"cat", category},
                       {"name", name},
                       {"pid", static_cast<int64_t>(::getpid())},
                       {"tid", static_cast<int64_t>(tid)},
                       {"ts", static_cast<double>(start + wall_offset) / 1000.0},
                       {"dur", static_cast<double>(end - start) / 1000.0},
                       {"args", std::move(args)}});
}

}  // namespace

BatchProfiler::BatchProfiler(ProfileWindow window, fs::path log_dir)
    : window_(window), log_dir_(std::move(log_dir)) {}

BatchProfiler::~BatchProfiler() {
  if (recording_) {
    detach(*recording_);
    g_active.store(nullptr);
  }
}

void BatchProfiler::on_epoch_begin(TrainContext& ctx) {
  if (recording_ && !recording_->handle) {
    attach(*recording_);  // the window goes on in this epoch
    recording_->step_start = now_ns();
  } else if (!recording_ && !window_.empty() && seen_ + 1 == window_.first) {
    start(ctx);
  }
}

void BatchProfiler::on_epoch_end(TrainContext&) {
  if (recording_ && recording_->handle) detach(*recording_);  // validation is not a step
}

void BatchProfiler::on_batch_end(TrainContext& ctx) {
  ++seen_;
  if (recording_) {
    const int64_t now = now_ns();
    recording_->steps.emplace_back(seen_, recording_->step_start, now);
    recording_->step_start = now;
    if (seen_ >= window_.last) finish(ctx);
  } else if (!window_.empty() && seen_ + 1 == window_.first) {
    start(ctx);  // the next batch's data loading belongs to its step, as in PyTorch's profiler
  }
}

void BatchProfiler::on_train_end(TrainContext& ctx) {
  if (recording_) finish(ctx);  // the cycle ended inside the window
}

void BatchProfiler::start(TrainContext& ctx) {
  if (g_active.load()) {
    ctx.log("profiler: another profiler is recording; batches " + std::to_string(window_.first) +
            "-" + std::to_string(window_.last) + " are not profiled");
    window_ = {};
    return;
  }
  recording_ = std::make_unique<Recording>();
  recording_->main_tid = at::RecordFunction::currentThreadId();
  recording_->wall_offset = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count() -
                            now_ns();
  recording_->step_start = now_ns();
  g_active.store(recording_.get());
  attach(*recording_);
}

void BatchProfiler::attach(Recording& r) {
  r.handle = at::addGlobalCallback(
      at::RecordFunctionCallback(&on_op_start, &on_op_end)
          .needsInputs(false)
          .needsOutputs(false)
          .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION,
                   at::RecordScope::USER_SCOPE}));
}

void BatchProfiler::detach(Recording& r) {
  if (r.handle) at::removeCallback(r.handle);
  r.handle = 0;
}

void BatchProfiler::finish(TrainContext& ctx) {
  synchronize_device(ctx.device);
  detach(*recording_);
  g_active.store(nullptr);
  std::unique_ptr<Recording> r = std::move(recording_);
  std::lock_guard<std::mutex> lock(r->mutex);

  const int64_t pid = static_cast<int64_t>(::getpid());
  Json events = Json::array();
  auto& list = events.as_array();
  list.reserve(r->ops.size() + r->steps.size() + 8);
  list.push_back(Json::object({{"ph", "M"},
                               {"name", "process_name"},
                               {"pid", pid},
                               {"tid", 0},
                               {"args", Json::object({{"name", "ktf-host"}})}}));
  std::map<uint64_t, size_t> threads;
  for (const auto& op : r->ops) ++threads[op.tid];
  threads[r->main_tid];
  for (const auto& [tid, n] : threads)
    list.push_back(Json::object(
        {{"ph", "M"},
         {"name", "thread_name"},
         {"pid", pid},
         {"tid", static_cast<int64_t>(tid)},
         {"args",
          Json::object({{"name", tid == r->main_tid ? std::string("training")
                                                    : "thread " + std::to_string(tid)}})}}));
  for (const auto& [n, start, end] : r->steps)
    list.push_back(duration_event("user_annotation", "ProfilerStep#" + std::to_string(n),
                                  r->main_tid, start, end, r->wall_offset, Json::object()));
  int64_t id = 0;
  for (const auto& op : r->ops)
    list.push_back(duration_event(op.user_scope ? "user_annotation" : "cpu_op", op.name, op.tid,
                                  op.start, op.end, r->wall_offset,
                                  Json::object({{"External id", ++id}})));

  const int64_t wall_ms = (r->step_start + r->wall_offset) / 1'000'000;
  const std::string worker = host_name() + "_" + std::to_string(pid);
  char cycle[32];
  std::snprintf(cycle, sizeof cycle, "cycle-%d", ctx.cycle + 1);
  const fs::path dir = log_dir_ / "plugins" / "profile" / cycle;
  const fs::path path = dir / (worker + "." + std::to_string(wall_ms) + ".pt.trace.json");
  Json trace = Json::object({{"schemaVersion", 1},
                             {"deviceProperties", Json::array()},
                             {"displayTimeUnit", "ms"},
                             {"traceName", path.string()},
                             {"traceEvents", std::move(events)}});
  if (ctx.world_size > 1)
    trace.set(
        "distributedInfo",
        Json::object({{"backend", "gloo"}, {"rank", ctx.rank}, {"world_size", ctx.world_size}}));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error("profiler: cannot create '" + dir.string() + "': " + ec.message());
  write_file_atomic(path, trace.dump() + "\n");

  double step_ms = 0;
  for (const auto& [n, start, end] : r->steps) step_ms += static_cast<double>(end - start) / 1e6;
  if (!r->steps.empty()) step_ms /= static_cast<double>(r->steps.size());
  char mean[32];
  std::snprintf(mean, sizeof mean, "%.1f", step_ms);
  const int64_t first = r->steps.empty() ? seen_ : std::get<0>(r->steps.front());
  ctx.log("profiler: batches " + std::to_string(first) + "-" + std::to_string(seen_) +
          " of cycle " + std::to_string(ctx.cycle + 1) + ": " + std::to_string(r->ops.size()) +
          " operators, " + mean + " ms a step" +
          (r->dropped ? " (" + std::to_string(r->dropped) + " more not recorded)" : "") +
          "; Chrome trace " + path.string() +
          " (TensorBoard with torch-tb-profiler, ui.perfetto.dev or chrome://tracing)");
}

}  // namespace ktf::train

namespace ktf::train {
namespace {

struct ProfilerOptions {
  std::vector<int64_t> batches = {2, 4};  ///< [first, last], 1-based training batches of a cycle
  std::string log_dir = "logs";           ///< relative to the run directory
};

class Profiler : public Callback {
 public:
  explicit Profiler(const ProfilerOptions& o) : options_(o) {
    KTF_CHECK(o.batches.size() == 2 && o.batches[0] >= 1 && o.batches[1] >= o.batches[0],
              "batches must be [first, last] with 1 <= first <= last");
    KTF_CHECK(!o.log_dir.empty(), "log_dir must not be empty");
  }
  void on_train_begin(TrainContext& ctx) override {
    profiler_ =
        std::make_unique<BatchProfiler>(ProfileWindow{options_.batches[0], options_.batches[1]},
                                        resolve_run_path(ctx.run_dir, options_.log_dir));
  }
  void on_epoch_begin(TrainContext& ctx, int64_t) override { profiler_->on_epoch_begin(ctx); }
  void on_epoch_end(TrainContext& ctx, int64_t, const Logs&) override {
    profiler_->on_epoch_end(ctx);
  }
  void on_batch_end(TrainContext& ctx, int64_t, const Logs&) override {
    profiler_->on_batch_end(ctx);
  }
  void on_train_end(TrainContext& ctx, const Logs&) override { profiler_->on_train_end(ctx); }
  void save_state(State& s) override { s.set("batches_seen", profiler_->batches_seen()); }
  void load_state(const State& s) override {
    profiler_->set_batches_seen(s.at("batches_seen").as_int());
  }

 private:
  ProfilerOptions options_;
  std::unique_ptr<BatchProfiler> profiler_;
};

}  // namespace

void register_profiler(Registrar& r) {
  r.add(define<Callback, ProfilerOptions>(
            "ktf.callbacks.Profiler",
            "records libtorch's operators during a few training batches as a Chrome trace for "
            "TensorBoard's PyTorch profiler plugin, Perfetto and chrome://tracing")
            .arg("batches", &ProfilerOptions::batches,
                 "[first, last]: the training batches to record, counted from 1 over the cycle")
            .sizes({2})
            .min(1)
            .arg("log_dir", &ProfilerOptions::log_dir,
                 "relative to the run directory; the trace goes to "
                 "<log_dir>/plugins/profile/cycle-<k>/<host>_<pid>.<ms>.pt.trace.json")
            .non_empty()
            .example(Json::object({{"batches", Json::array({2, 3})}}))
            .build([](const ProfilerOptions& o, BuildContext&) {
              return std::make_shared<Profiler>(o);
            }));
}

}  // namespace ktf::train
