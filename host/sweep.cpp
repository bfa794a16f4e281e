// ktf-host --sweep (host/sweep.h).
#include "sweep.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include "ktf/config.h"
#include "ktf/diff.h"
#include "ktf/error.h"
#include "ktf/files.h"
#include "ktf/json.h"
#include "ktf/state.h"

namespace ktf::host {
namespace {
namespace fs = std::filesystem;

volatile sig_atomic_t g_stop = 0;
void on_stop(int sig) { g_stop = sig; }

struct Axis {
  std::string pointer;
  std::vector<Json> values;
};

struct Point {
  int index = 0;                   ///< 1-based
  std::vector<Json> values;        ///< one per axis
  std::string dir;                 ///< its run directory, relative to the sweep's
  std::string status = "pending";  ///< pending, done, failed
  int exit_code = 0;
  pid_t pid = 0;
  std::chrono::steady_clock::time_point started;
};

Axis parse_axis(const std::string& text) {
  const auto eq = text.find('=');
  auto bad = [&](const std::string& why) {
    return Error("--sweep '" + excerpt(text) + "': " + why, {}, kExitConfig);
  };
  if (eq == std::string::npos || eq == 0 || text[0] != '/')
    throw bad("expected POINTER=[v1, v2, ...] (a JSON Pointer into the config, '=', a JSON list)");
  Json list;
  try {
    list = Json::parse(text.substr(eq + 1));
  } catch (const Error& e) {
    throw bad(std::string("the values are not a JSON list: ") + e.what());
  }
  if (!list.is_array() || list.size() == 0)
    throw bad("the values must be a non-empty JSON list, got " + describe_value(list));
  return {text.substr(0, eq), list.as_array()};
}

/// "learning_rate=0.001" for the last token of each axis's pointer, file-name safe.
std::string point_name(int index, const std::vector<Axis>& axes, const std::vector<Json>& values,
                       size_t width) {
  std::ostringstream name;
  name << std::setw(static_cast<int>(width)) << std::setfill('0') << index;
  for (size_t a = 0; a < axes.size(); ++a) {
    std::string key = axes[a].pointer.substr(axes[a].pointer.rfind('/') + 1);
    std::string value = values[a].is_string() ? values[a].as_string() : values[a].dump();
    std::string part = "-" + key + "=" + value;
    for (char& c : part)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '=' && c != '-' &&
          c != '_')
        c = '_';
    name << part.substr(0, 60);
  }
  return name.str();
}

/// The last epoch record of the run's last cycle in metrics.jsonl (empty when none).
Json final_record(const fs::path& run) {
  const auto epochs = read_final_epochs(run).by_cycle;
  return epochs.empty() ? Json::object() : epochs.rbegin()->second.first;
}

/// A final metric for the table: not the record's position nor the machine's speed.
bool is_result_key(const std::string& k) {
  return k != "cycle" && k != "epoch" && k != "phase" && !is_timing_key(k) &&
         k != "samples_per_second";
}

}  // namespace

int run_sweep(const SweepOptions& o, const Registry& registry, int argc, char** argv) {
  if (o.config_path.empty()) throw Error("--sweep needs a config (-c CONFIG)", {}, kExitConfig);
  if (o.jobs < 1 || o.jobs > 256)
    throw Error("--sweep-jobs '" + std::to_string(o.jobs) + "': expected 1 to 256", {},
                kExitConfig);
  std::vector<Axis> axes;
  for (const auto& text : o.axes) axes.push_back(parse_axis(text));
  // The grid, first axis slowest; every point's config is resolved before anything trains.
  std::vector<Point> points;
  size_t total = 1;
  for (const auto& a : axes) {
    total *= a.values.size();
    if (total > 10000) throw Error("--sweep: more than 10000 points in the grid", {}, kExitConfig);
  }
  const Json base = Json::parse_file(o.config_path);
  const size_t width = std::to_string(total).size();
  for (size_t i = 0; i < total; ++i) {
    Point p;
    p.index = static_cast<int>(i + 1);
    size_t rest = i;
    for (size_t a = axes.size(); a-- > 0;) {
      p.values.insert(p.values.begin(), axes[a].values[rest % axes[a].values.size()]);
      rest /= axes[a].values.size();
    }
    Json config = base;
    for (const auto& s : o.overrides) apply_override(config, s);
    for (size_t a = 0; a < axes.size(); ++a)
      apply_override(config, axes[a].pointer + "=" + p.values[a].dump());
    try {
      resolve_config(config, registry);
    } catch (const Error& e) {
      throw Error(std::string("--sweep point ") + std::to_string(p.index) + " (" +
                      point_name(p.index, axes, p.values, width).substr(width + 1) +
                      "): " + e.what(),
                  {}, kExitConfig);
    }
    p.dir = point_name(p.index, axes, p.values, width);
    points.push_back(std::move(p));
  }

  fs::path dir = o.output_dir;
  if (dir.empty()) {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    std::ostringstream name;
    name << "runs/" << fs::path(o.config_path).stem().string() << "-sweep-"
         << std::put_time(&tm, "%Y%m%d-%H%M%S");
    dir = name.str();
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw Error("--sweep: cannot create '" + dir.string() + "': " + ec.message(), {}, kExitConfig);
  // The manifest: a sweep run again continues, one of another grid is refused.
  Json axes_json = Json::array();
  for (const auto& a : axes)
    axes_json.as_array().push_back(
        Json::object({{"pointer", a.pointer}, {"values", Json(Json::Array(a.values))}}));
  const fs::path manifest = dir / "sweep.json";
  if (fs::exists(manifest, ec)) {
    Json old = Json::parse_file(manifest.string());
    if (!old.find("axes") || old.at("axes") != axes_json)
      throw Error("'" + dir.string() + "' holds another sweep (its sweep.json has other axes: " +
                      excerpt(old.find("axes") ? old.at("axes").dump() : "none", 200) +
                      "); use another -o",
                  {}, kExitConfig);
    for (const auto& saved : old.at("points").as_array())
      for (auto& p : points)
        if (p.dir == saved.at("dir").as_string() && saved.at("status") == Json("done"))
          p.status = "done";
  }
  auto write_manifest = [&] {
    Json list = Json::array();
    for (const auto& p : points) {
      Json values = Json::object();
      for (size_t a = 0; a < axes.size(); ++a) values.set(axes[a].pointer, p.values[a]);
      list.as_array().push_back(Json::object({{"index", p.index},
                                              {"dir", p.dir},
                                              {"values", values},
                                              {"status", p.status},
                                              {"exit_code", p.exit_code}}));
    }
    write_file_atomic(manifest, Json::object({{"config", fs::absolute(o.config_path).string()},
                                              {"axes", axes_json},
                                              {"points", list}})
                                        .dump(2) +
                                    "\n");
  };
  write_manifest();

  // A point's command line: ktf-host's own without --sweep, --sweep-jobs and -o, with the axes'
  // --set, its run directory and --resume auto (a point interrupted before continues).
  std::vector<std::string> base_args{"ktf-host"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto takes_value = [&](const char* name) { return a == name && i + 1 < argc; };
    if (takes_value("--sweep") || takes_value("--sweep-jobs") || takes_value("-o") ||
        takes_value("--output-dir") || takes_value("--threads")) {
      ++i;
      continue;
    }
    if (a.rfind("--sweep=", 0) == 0 || a.rfind("--sweep-jobs=", 0) == 0 ||
        a.rfind("--output-dir=", 0) == 0 || a.rfind("--threads=", 0) == 0 ||
        (a.size() > 2 && a.rfind("-o", 0) == 0 && a[2] != '-'))
      continue;
    base_args.push_back(a);
  }
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const int threads = o.threads > 0 ? o.threads : std::max(1, static_cast<int>(cores) / o.jobs);

  struct sigaction sa {
  }, old_int{}, old_term{};
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);
  g_stop = 0;

  size_t done_before = 0;
  for (const auto& p : points) done_before += p.status == "done";
  if (!o.quiet)
    std::cout << "sweep: " << points.size() << " points in " << dir.string()
              << (done_before ? " (" + std::to_string(done_before) + " done before)" : "") << ", "
              << o.jobs << " at a time" << std::endl;

  auto start = [&](Point& p) {
    std::vector<std::string> args = base_args;
    for (size_t a = 0; a < axes.size(); ++a)
      args.push_back("--set"), args.push_back(axes[a].pointer + "=" + p.values[a].dump());
    args.insert(args.end(), {"-o", (dir / p.dir).string(), "--resume", "auto", "--threads",
                             std::to_string(threads)});
    fs::create_directories(dir / p.dir, ec);
    const std::string log = (dir / p.dir / "sweep-output.txt").string();
    pid_t pid = ::fork();
    if (pid == 0) {
      ::setpgid(0, 0);  // a Ctrl-C reaches the point once, from the sweep, not twice
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) ::dup2(fd, STDOUT_FILENO), ::dup2(fd, STDERR_FILENO), ::close(fd);
      std::vector<char*> cargv;
      for (auto& s : args) cargv.push_back(s.data());
      cargv.push_back(nullptr);
      ::execv("/proc/self/exe", cargv.data());
      std::fprintf(stderr, "ktf-host: cannot start: %s\n", std::strerror(errno));
      ::_exit(127);
    }
    if (pid < 0)
      throw Error(std::string("--sweep: cannot start a training: ") + std::strerror(errno));
    p.pid = pid;
    p.started = std::chrono::steady_clock::now();
  };

  std::vector<Point*> running;
  size_t next = 0;
  bool stopping = false;
  int forwarded = 0;
  while (true) {
    while (!stopping && static_cast<int>(running.size()) < o.jobs && next < points.size()) {
      Point& p = points[next++];
      if (p.status == "done") continue;
      start(p);
      running.push_back(&p);
    }
    if (running.empty()) break;
    if (g_stop && forwarded != g_stop) {
      stopping = true;
      forwarded = g_stop;
      for (Point* p : running) ::kill(p->pid, g_stop);  // each checkpoints and exits 130
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    auto it = std::find_if(running.begin(), running.end(), [&](Point* p) { return p->pid == pid; });
    if (it == running.end()) continue;
    Point& p = **it;
    running.erase(it);
    p.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    p.status = p.exit_code == 0 ? "done" : (p.exit_code == 130 || stopping) ? "pending" : "failed";
    write_manifest();
    if (!o.quiet) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - p.started).count();
      std::ostringstream line;
      line << "sweep: point " << p.index << "/" << points.size() << " " << p.dir << ": ";
      if (p.status == "done") {
        line << "done in " << std::fixed << std::setprecision(0) << seconds << " s";
        const Json r = final_record(dir / p.dir);
        for (const char* k : {"val_accuracy", "val_loss"})
          if (r.find(k)) line << ", " << k << " " << table_cell(r.at(k));
      } else if (p.status == "pending") {
        line << "stopped (exit " << p.exit_code << "); it continues when the sweep is run again";
      } else {
        line << "failed with exit code " << p.exit_code << " ("
             << (dir / p.dir / "sweep-output.txt").string() << ")";
      }
      std::cout << line.str() << std::endl;
    }
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  if (stopping) {
    std::cerr << "ktf-host: sweep interrupted: run the same command again to continue it\n";
    return 130;
  }

  // The table, best first: by val_accuracy, else val_loss, accuracy, loss; failed points last.
  std::vector<std::pair<const Point*, Json>> rows;
  std::vector<std::string> keys;
  for (const auto& p : points) {
    Json r = p.status == "done" ? final_record(dir / p.dir) : Json::object();
    for (const auto& [k, v] : r.as_object())
      if (is_result_key(k) && v.is_number() && std::find(keys.begin(), keys.end(), k) == keys.end())
        keys.push_back(k);
    rows.emplace_back(&p, r);
  }
  std::string by;
  bool higher = true;
  for (const auto& [k, up] : {std::pair<const char*, bool>{"val_accuracy", true},
                              {"val_loss", false},
                              {"accuracy", true},
                              {"loss", false}})
    if (std::find(keys.begin(), keys.end(), k) != keys.end()) {
      by = k, higher = up;
      break;
    }
  std::stable_sort(rows.begin(), rows.end(), [&](const auto& a, const auto& b) {
    const Json* x = by.empty() ? nullptr : a.second.find(by);
    const Json* y = by.empty() ? nullptr : b.second.find(by);
    if (!x || !y) return x != nullptr && y == nullptr;
    return higher ? x->as_number() > y->as_number() : x->as_number() < y->as_number();
  });
  std::vector<std::string> header{"rank", "point"};
  for (const auto& a : axes) header.push_back(a.pointer);
  header.push_back("status");
  for (const auto& k : keys) header.push_back(k);
  header.push_back("run");
  std::vector<std::vector<std::string>> table;
  int rank = 0;
  for (const auto& [p, r] : rows) {
    std::vector<std::string> row{p->status == "done" ? std::to_string(++rank) : "-",
                                 std::to_string(p->index)};
    for (const auto& v : p->values) row.push_back(table_cell(v));
    row.push_back(p->status);
    for (const auto& k : keys) row.push_back(r.find(k) ? table_cell(r.at(k)) : "");
    row.push_back(p->dir);
    table.push_back(row);
  }
  std::ostringstream csv, md;
  for (size_t i = 0; i < header.size(); ++i) csv << (i ? "," : "") << csv_field(header[i]);
  csv << "\n";
  for (const auto& row : table) {
    for (size_t i = 0; i < row.size(); ++i) csv << (i ? "," : "") << csv_field(row[i]);
    csv << "\n";
  }
  md << "| ";
  for (size_t i = 0; i < header.size(); ++i) md << (i ? " | " : "") << "`" << header[i] << "`";
  md << " |\n|";
  for (size_t i = 0; i < header.size(); ++i) md << "---|";
  md << "\n";
  for (const auto& row : table) {
    md << "|";
    for (const auto& c : row) md << " " << c << " |";
    md << "\n";
  }
  write_file_atomic(dir / "sweep.csv", csv.str());
  write_file_atomic(dir / "sweep.md", md.str());
  if (!o.quiet)
    std::cout << "sweep: " << (by.empty() ? "points" : "points, best " + by + " first") << " ("
              << (dir / "sweep.csv").string() << ", " << (dir / "sweep.md").string() << "):\n"
              << md.str() << std::flush;
  const bool failed = std::any_of(points.begin(), points.end(),
                                  [](const Point& p) { return p.status == "failed"; });
  return failed ? 1 : 0;
}

}  // namespace ktf::host
