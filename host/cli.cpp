// ktf-host proper (libktf_host_cli): loads plugins, then trains the config it is given (or answers
// an inspection verb). The launcher (host/launcher.cpp) has set the process up and parsed argv.
// It knows no component by name: everything comes from the plugins it loads.
#include <boost/program_options.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "ktf/config.h"
#include "ktf/convert.h"
#include "ktf/cycle.h"
#include "ktf/diff.h"
#include "ktf/distributed.h"
#include "ktf/environment.h"
#include "ktf/evaluate.h"
#include "ktf/export_weights.h"
#include "ktf/plugin.h"
#include "ktf/plugin_loader.h"
#include "ktf/predict.h"
#include "ktf/viewer.h"
#include "options.h"
#include "sweep.h"

namespace po = boost::program_options;

namespace {

void print_list(const ktf::Registry& registry, const std::string& kind_arg) {
  std::optional<ktf::Kind> kind;
  if (!kind_arg.empty()) {
    kind = ktf::kind_from_name(kind_arg);
    if (!kind) {
      std::string kinds;
      for (ktf::Kind k : ktf::kAllKinds)
        kinds += (kinds.empty() ? "" : ", ") + std::string(ktf::kind_name(k));
      throw ktf::Error("--list '" + kind_arg + "': unknown kind (kinds: " + kinds + ")");
    }
  }
  std::optional<ktf::Kind> current;
  for (const ktf::ComponentDef* def : registry.list(kind)) {
    const ktf::Spec& s = def->spec;
    if (!current || *current != s.kind) {
      std::cout << (current ? "\n" : "") << ktf::kind_name(s.kind) << ":\n";
      current = s.kind;
    }
    std::cout << "  " << std::left << std::setw(48) << s.name << " " << s.summary;
    if (!s.plugin.empty()) std::cout << " [" << s.plugin << "]";
    std::cout << "\n";
    for (const auto& a : s.aliases) std::cout << "    alias " << a << "\n";
  }
  for (const auto& key : registry.cycle_keys())
    std::cout << "\ncycle key '" << key.name << "' (" << ktf::kind_name(key.kind)
              << (key.is_list ? " list" : "") << "): " << key.doc << " [" << key.plugin << "]\n";
}

void print_describe(const ktf::Registry& registry, const ktf::PluginLoader& loader,
                    const std::string& name) {
  auto defs = registry.find_any(name);
  if (defs.empty()) {
    std::vector<std::string> all;
    for (const auto* d : registry.list()) {
      all.push_back(d->spec.name);
      for (const auto& a : d->spec.aliases) all.push_back(a);
    }
    auto near = ktf::closest_names(name, all, 3);
    std::string hint;
    for (size_t i = 0; i < near.size(); ++i) hint += (i ? ", '" : "'") + near[i] + "'";
    throw ktf::Error("--describe '" + name + "': no component has this name" +
                     (hint.empty() ? "" : " (did you mean " + hint + "?)"));
  }
  for (const auto* def : defs) {
    const ktf::Spec& s = def->spec;
    std::cout << s.name << " (" << ktf::kind_name(s.kind) << ")\n  " << s.summary << "\n";
    if (!s.aliases.empty()) {
      std::cout << "  aliases:";
      for (const auto& a : s.aliases) std::cout << " " << a;
      std::cout << "\n";
    }
    std::string plugin = s.plugin.empty() ? "built into the host program" : s.plugin;
    for (const auto& p : loader.plugins())
      if (p.name == s.plugin) plugin += " " + p.version + " (" + p.path + ")";
    std::cout << "  provided by: " << plugin << "\n";
    if (s.params.empty()) {
      std::cout << "  parameters: none\n";
    } else {
      size_t wn = 4, wt = 4, wd = 7;
      for (const auto& p : s.params) {
        wn = std::max(wn, p.name.size());
        wt = std::max(wt, p.type_name().size());
        wd = std::max(wd, std::min<size_t>(24, p.required ? 8 : p.default_value.dump().size()));
      }
      std::cout << "  parameters:\n    " << std::left << std::setw(wn + 2) << "name"
                << std::setw(wt + 2) << "type" << std::setw(wd + 2) << "default"
                << "description\n";
      for (const auto& p : s.params) {
        std::string def_text = p.required ? "required" : p.default_value.dump();
        if (def_text.size() > 24) def_text = def_text.substr(0, 21) + "...";
        std::string type = p.type_name();
        std::cout << "    " << std::setw(wn + 2) << p.name << std::setw(wt + 2) << type
                  << std::setw(wd + 2) << def_text << p.doc;
        const std::string allowed = p.constraint_text();
        if (!allowed.empty()) std::cout << " (" << allowed << ")";
        std::cout << "\n";
      }
    }
    std::cout << "  example: " << ktf::Json::object({{s.name, s.example}}).dump() << "\n";
  }
}

/// The dataset of the config's first cycle (for --convert and --view).
std::shared_ptr<ktf::Dataset> first_dataset(const std::string& config_path,
                                            const std::vector<std::string>& overrides,
                                            const ktf::Registry& registry) {
  if (config_path.empty()) throw ktf::Error("--convert and --view need a config (-c CONFIG)");
  ktf::configure_threads(0);
  return ktf::build_cycle_dataset(ktf::Json::parse_file(config_path), overrides, registry);
}

int run(int argc, char** argv) {
  ktf::host::Args args;
  const po::options_description opts = ktf::host::options(args);
  po::variables_map vm;
  // --help, --version and a bad command line never get here: the launcher answered them.
  if (!ktf::host::parse(argc, argv, opts, vm) || !ktf::host::check(args, vm))
    return ktf::kExitConfig;
  const auto& plugin_sources = args.plugin_sources;
  const auto& overrides = args.overrides;
  const auto& config_path = args.config_path;
  const auto& device = args.device;
  const auto& output_dir = args.output_dir;
  const auto& memory_format = args.memory_format;
  const auto& list_kind = args.list_kind;
  const auto& describe_name = args.describe_name;
  const int threads = args.threads;
  const uint64_t seed = args.seed;

  if (vm.count("diff")) {  // reads two run directories: no plugin is needed
    if (args.diff_runs.size() != 2) {
      std::cerr << "ktf-host: --diff takes two run directories, got " << args.diff_runs.size()
                << "\n"
                << ktf::host::kUsage;
      return ktf::kExitConfig;
    }
    std::cout << ktf::diff_runs(args.diff_runs[0], args.diff_runs[1]);
    return 0;
  }

  ktf::Registry& registry = ktf::Registry::global();
  ktf::PluginLoader loader(registry);
  loader.load_all(plugin_sources);
  loader.load_all(ktf::plugin_path_from_env(), true);
  std::string installed = ktf::installed_plugin_dir();
  std::error_code ec;
  if (!installed.empty() && std::filesystem::is_directory(installed, ec)) {
    bool given = std::any_of(
        plugin_sources.begin(), plugin_sources.end(),
        [&](const std::string& s) { return std::filesystem::equivalent(s, installed, ec); });
    if (!given) loader.load_all({installed}, true);
  }

  if (vm.count("list")) {
    print_list(registry, list_kind);
    return 0;
  }
  if (vm.count("describe")) {
    print_describe(registry, loader, describe_name);
    return 0;
  }
  if (vm.count("schema")) {
    std::cout << ktf::json_schema(registry).dump(2) << "\n";
    return 0;
  }
  if (vm.count("reference")) {
    std::cout << ktf::markdown_reference(registry);
    return 0;
  }

  if (vm.count("convert")) {
    auto dataset = first_dataset(config_path, overrides, registry);
    ktf::convert_to_tfrecord(*dataset, vm["convert"].as<std::string>(), vm["shards"].as<int64_t>(),
                             vm.count("gzip") > 0,
                             [](const std::string& line) { std::cout << line << std::endl; });
    return 0;
  }
  if (vm.count("view")) {
    auto dataset = first_dataset(config_path, overrides, registry);
    std::string png = vm["view"].as<std::string>();
    ktf::write_contact_sheet(*dataset, png, vm["view-count"].as<int64_t>(), true);
    std::cout << "view: wrote " << png << std::endl;
    return 0;
  }
  if (vm.count("predict")) {
    if (args.predict.size() < 2) {
      std::cerr << "ktf-host: --predict takes a run directory and at least one input\n"
                << ktf::host::kUsage;
      return ktf::kExitConfig;
    }
    ktf::PredictOptions p;
    p.run_dir = args.predict[0];
    p.inputs.assign(args.predict.begin() + 1, args.predict.end());
    p.cycle = vm["cycle"].as<int>();
    p.device = device;
    p.threads = threads;
    p.memory_format = memory_format;
    p.overrides = overrides;
    p.top_k = args.top_k;
    p.quiet = vm.count("quiet") > 0;
    if (vm.count("predictions")) p.output = vm["predictions"].as<std::string>();
    ktf::predict(p, registry);
    return 0;
  }
  if (vm.count("export-weights")) {
    if (args.export_weights.empty() || args.export_weights.size() > 2) {
      std::cerr << "ktf-host: --export-weights takes a run directory and optionally the output "
                   "file\n"
                << ktf::host::kUsage;
      return ktf::kExitConfig;
    }
    ktf::ExportOptions e;
    e.run_dir = args.export_weights[0];
    if (args.export_weights.size() == 2) e.output = args.export_weights[1];
    e.cycle = vm["cycle"].as<int>();
    e.names = args.export_names;
    e.overrides = overrides;
    e.quiet = vm.count("quiet") > 0;
    ktf::export_weights(e, registry);
    return 0;
  }
  if (vm.count("evaluate")) {
    ktf::EvaluateOptions eval;
    eval.run_dir = vm["evaluate"].as<std::string>();
    eval.cycle = vm["cycle"].as<int>();
    eval.device = device;
    eval.threads = threads;
    eval.memory_format = memory_format;
    eval.overrides = overrides;
    eval.quiet = vm.count("quiet") > 0;
    if (vm.count("predictions")) eval.predictions = vm["predictions"].as<std::string>();
    ktf::evaluate(eval, registry);
    return 0;
  }

  if (vm.count("sweep")) {
    for (const char* other : {"resume", "dry-run", "nproc-per-node"})
      if (vm.count(other) && !vm[other].defaulted()) {
        std::cerr << "ktf-host: --sweep and --" << other
                  << " cannot be combined (a sweep resumes its points itself)\n"
                  << ktf::host::kUsage;
        return ktf::kExitConfig;
      }
    ktf::host::SweepOptions s;
    s.axes = args.sweep;
    s.jobs = args.sweep_jobs;
    s.config_path = config_path;
    s.output_dir = output_dir;
    s.overrides = overrides;
    s.threads = threads;
    s.quiet = vm.count("quiet") > 0;
    return ktf::host::run_sweep(s, registry, argc, argv);
  }

  ktf::RunOptions options;
  options.device = device;
  options.threads = threads;
  options.memory_format = memory_format;
  if (vm.count("seed")) options.seed = seed;
  options.output_dir = output_dir;
  options.dry_run = vm.count("dry-run") > 0;
  options.quiet = vm.count("quiet") > 0;
  options.overrides = overrides;
  options.plugins = loader.to_json();
  if (vm.count("resume")) options.resume = vm["resume"].as<std::string>();
  options.allow_config_change = vm.count("allow-config-change") > 0;
  options.precision = args.precision;
  options.dist_timeout = args.dist_timeout;
  if (!(args.dist_timeout > 0)) {
    std::cerr << "ktf-host: --dist-timeout must be > 0 seconds\n" << ktf::host::kUsage;
    return ktf::kExitConfig;
  }
  if (options.allow_config_change && options.resume.empty()) {
    std::cerr << "ktf-host: --allow-config-change needs --resume\n" << ktf::host::kUsage;
    return ktf::kExitConfig;
  }
  if (!options.resume.empty() && options.dry_run) {
    std::cerr << "ktf-host: --dry-run and --resume cannot be combined\n" << ktf::host::kUsage;
    return ktf::kExitConfig;
  }

  const bool resume_dir = !options.resume.empty() && options.resume != "auto";
  if (config_path.empty() && !resume_dir) {
    std::cerr << "ktf-host: no config given (-c CONFIG)\n" << ktf::host::kUsage;
    return ktf::kExitConfig;
  }
  ktf::Json config;
  if (!config_path.empty()) {
    options.config_name = std::filesystem::path(config_path).stem().string();
    config = ktf::Json::parse_file(config_path);
  }
  ktf::Environment(options, registry).run(std::move(config));
  return 0;
}

}  // namespace

/// The host proper, called by ktf-host's launcher (host/launcher.cpp) once the process is set up.
extern "C" __attribute__((visibility("default"))) int ktf_host_main(int argc, char** argv) {
  std::string who = "ktf-host";
  int code = 0;
  // One write per message: the ranks of a job share a terminal, and their lines must not mix.
  auto say = [&](const std::string& what) {
    const std::string line = who + ": " + what + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
  };
  try {
    const ktf::WorldInfo world = ktf::world_from_environment();
    if (world.distributed()) who += " (rank " + std::to_string(world.rank) + ")";
    code = run(argc, argv);
  } catch (const ktf::Error& e) {
    say(e.what());
    code = e.exit_code();
  } catch (const c10::Error& e) {
    say(e.what_without_backtrace());
    code = ktf::kExitRuntime;
  } catch (const std::exception& e) {
    say(e.what());
    code = ktf::kExitRuntime;
  }
  // A distributed run that failed keeps its process group: a collective may still wait on a lost
  // rank, so the process ends here instead of tearing the group down.
  if (ktf::communicator()) {
    std::cout.flush();
    std::cerr.flush();
    std::_Exit(code);
  }
  return code;
}
