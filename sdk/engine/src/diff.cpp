// ktf-host --diff (ktf/diff.h).
#include "ktf/diff.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "ktf/error.h"

namespace ktf {
namespace fs = std::filesystem;

std::vector<JsonChange> plugin_changes(const Json& before, const Json& after) {
  auto by_name = [](const Json& list) {
    Json out = Json::object();
    if (!list.is_array()) return out;
    for (const auto& p : list.as_array()) {
      if (!p.is_object() || !p.find("name") || !p.at("name").is_string()) continue;
      Json entry = Json::object();
      for (const char* key : {"version", "fnv1a64", "sdk_version", "torch_version"})
        if (const Json* v = p.find(key)) entry.set(key, *v);
      out.set(p.at("name").as_string(), entry);
    }
    return out;
  };
  return json_diff(by_name(before), by_name(after));
}

namespace {

/// A run directory's parts, read once.
struct Run {
  fs::path dir;
  Json config;
  std::optional<Json> plugins;
  FinalEpochs final_epochs;
  std::map<int64_t, Json> evaluations;  ///< evaluation-cycle-<k>.json by k
};

Run read_run(const fs::path& dir) {
  Run run;
  run.dir = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error("--diff '" + dir.string() + "': not a directory", {}, kExitConfig);
  const fs::path config = dir / "config.resolved.json";
  if (!fs::is_regular_file(config, ec))
    throw Error(
        "--diff '" + dir.string() + "' is not a ktf run directory (no config.resolved.json)", {},
        kExitConfig);
  run.config = Json::parse_file(config.string());
  if (fs::is_regular_file(dir / "plugins.json", ec))
    run.plugins = Json::parse_file((dir / "plugins.json").string());
  run.final_epochs = read_final_epochs(dir);
  for (const auto& f : fs::directory_iterator(dir, ec)) {
    const std::string name = f.path().filename().string();
    int64_t k = 0;
    char tail = 0;
    if (std::sscanf(name.c_str(), "evaluation-cycle-%ld.jso%c", &k, &tail) == 2 && tail == 'n' &&
        name == "evaluation-cycle-" + std::to_string(k) + ".json")
      run.evaluations[k] = Json::parse_file(f.path().string());
  }
  return run;
}

std::string cell(const std::optional<Json>& v, size_t max = 40) {
  return v ? excerpt(table_cell(*v), max) : "-";
}

/// Rows of cells as a table with aligned columns, each line indented by two spaces.
std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size(); ++i) {
      if (widths.size() <= i) widths.push_back(0);
      widths[i] = std::max(widths[i], row[i].size());
    }
  std::string out;
  for (const auto& row : rows) {
    std::string line = " ";
    for (size_t i = 0; i < row.size(); ++i)
      line +=
          " " + row[i] + (i + 1 < row.size() ? std::string(widths[i] - row[i].size(), ' ') : "");
    out += line + "\n";
  }
  return out;
}

std::string plural(size_t n, const char* what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

/// The changes as a table: pointer, A's value, B's value.
std::string change_table(const std::vector<JsonChange>& changes) {
  std::vector<std::vector<std::string>> rows{{"JSON Pointer", "A", "B"}};
  for (const auto& c : changes)
    rows.push_back(
        {c.pointer.empty() ? "(the whole document)" : c.pointer, cell(c.before), cell(c.after)});
  return table(rows);
}

/// The metrics of two records side by side with B - A; `skip` leaves keys out.
std::string metric_table(const Json* a, const Json* b, const std::vector<std::string>& skip) {
  std::vector<std::string> keys;
  for (const Json* record : {a, b}) {
    if (!record || !record->is_object()) continue;
    for (const auto& [key, value] : record->as_object())
      if (value.is_number() && !is_timing_key(key) &&
          std::find(skip.begin(), skip.end(), key) == skip.end() &&
          std::find(keys.begin(), keys.end(), key) == keys.end())
        keys.push_back(key);
  }
  std::vector<std::vector<std::string>> rows{{"", "A", "B", "B - A"}};
  for (const auto& key : keys) {
    const Json* x = a ? a->find(key) : nullptr;
    const Json* y = b ? b->find(key) : nullptr;
    std::string delta;
    if (x && y && x->is_number() && y->is_number()) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%+.6g", y->as_number() - x->as_number());
      delta = buf;
    }
    rows.push_back({key, cell(x ? std::optional<Json>(*x) : std::nullopt),
                    cell(y ? std::optional<Json>(*y) : std::nullopt), delta});
  }
  return table(rows);
}

}  // namespace

FinalEpochs read_final_epochs(const fs::path& run_dir) {
  FinalEpochs out;
  std::ifstream metrics(run_dir / "metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    if (line.empty()) continue;
    Json record;
    try {
      record = Json::parse(line);
    } catch (const Error&) {
      ++out.unreadable_lines;  // a line a crash cut short
      continue;
    }
    const Json* cycle = record.find("cycle");
    const Json* phase = record.find("phase");
    if (!record.is_object() || !cycle || !cycle->is_int() || !phase || !phase->is_string() ||
        phase->as_string() != "epoch")
      continue;
    auto& entry = out.by_cycle[cycle->as_int()];
    entry.first = record;
    ++entry.second;
  }
  return out;
}

bool is_timing_key(const std::string& key) {
  return key.rfind("time_", 0) == 0 || key == "train_seconds" || key == "train_samples" ||
         key == "train_steps" || key == "first_step_after_start";
}

std::string table_cell(const Json& value) {
  if (value.is_number() && !value.is_int()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", value.as_number());
    return buf;
  }
  return value.is_string() ? value.as_string() : value.dump();
}

std::string diff_runs(const fs::path& a_dir, const fs::path& b_dir) {
  const Run a = read_run(a_dir), b = read_run(b_dir);
  std::ostringstream out;
  out << "A: " << a.dir.string() << "\nB: " << b.dir.string() << "\n";

  const auto config = json_diff(a.config, b.config);
  out << "\nconfig (config.resolved.json): "
      << (config.empty() ? "the same\n" : plural(config.size(), "difference") + "\n");
  if (!config.empty()) out << change_table(config);

  out << "\nplugins (plugins.json): ";
  if (!a.plugins || !b.plugins) {
    out << "missing in " << (!a.plugins && !b.plugins ? "both" : !a.plugins ? "A" : "B") << "\n";
  } else {
    const auto plugins = plugin_changes(*a.plugins, *b.plugins);
    out << (plugins.empty() ? "the same\n" : plural(plugins.size(), "difference") + "\n");
    if (!plugins.empty()) out << change_table(plugins);
  }

  std::vector<int64_t> cycles;
  for (const Run* r : {&a, &b})
    for (const auto& [k, entry] : r->final_epochs.by_cycle)
      if (std::find(cycles.begin(), cycles.end(), k) == cycles.end()) cycles.push_back(k);
  std::sort(cycles.begin(), cycles.end());
  out << "\nfinal metrics (each cycle's last epoch in metrics.jsonl): "
      << (cycles.empty() ? "none in either run\n" : "\n");
  for (int64_t k : cycles) {
    auto find = [k](const Run& r) -> const std::pair<Json, int64_t>* {
      auto it = r.final_epochs.by_cycle.find(k);
      return it == r.final_epochs.by_cycle.end() ? nullptr : &it->second;
    };
    const auto *x = find(a), *y = find(b);
    auto epochs = [](const std::pair<Json, int64_t>* e) {
      return e ? std::to_string(e->second) + (e->second == 1 ? " epoch" : " epochs")
               : std::string("not trained");
    };
    out << " cycle " << k << ": A " << epochs(x) << ", B " << epochs(y) << "\n";
    out << metric_table(x ? &x->first : nullptr, y ? &y->first : nullptr, {"cycle", "epoch"});
  }
  for (const Run* r : {&a, &b})
    if (r->final_epochs.unreadable_lines > 0)
      out << "  (" << (r == &a ? "A" : "B") << ": "
          << plural(r->final_epochs.unreadable_lines, "line")
          << " of metrics.jsonl unreadable, left out)\n";

  std::vector<int64_t> evaluated;
  for (const Run* r : {&a, &b})
    for (const auto& [k, e] : r->evaluations)
      if (std::find(evaluated.begin(), evaluated.end(), k) == evaluated.end())
        evaluated.push_back(k);
  std::sort(evaluated.begin(), evaluated.end());
  for (int64_t k : evaluated) {
    auto find = [k](const Run& r) -> const Json* {
      auto it = r.evaluations.find(k);
      return it == r.evaluations.end() ? nullptr : &it->second;
    };
    out << "\nevaluation of cycle " << k << " (evaluation-cycle-" << k << ".json, --evaluate):\n"
        << metric_table(find(a), find(b), {"cycle"});
  }
  return out.str();
}

}  // namespace ktf
