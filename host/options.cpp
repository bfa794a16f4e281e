// ktf-host's options (host/options.h).
#include "options.h"

#include <cerrno>
#include <cstdlib>
#include <iostream>

namespace po = boost::program_options;

namespace ktf::host {

const char* const kUsage =
    "usage: ktf-host --plugins DIR_OR_FILE... -c CONFIG [--set PTR=JSON]... [options]\n"
    "       ktf-host --plugins DIR... --resume RUN_DIR | -c CONFIG --resume auto -o DIR\n"
    "       ktf-host --nproc-per-node N [--max-restarts K] --plugins DIR... -c CONFIG ...\n"
    "       ktf-host --plugins DIR... --list [KIND] | --describe NAME | --schema | --version\n"
    "       ktf-host --plugins DIR... --evaluate RUN_DIR | --predict RUN_DIR INPUT...\n"
    "       ktf-host --plugins DIR... --export-weights RUN_DIR [FILE] [--export-names NAMES]\n"
    "       ktf-host --plugins DIR... -c CONFIG --sweep PTR=[v1,v2,...]... [--sweep-jobs N] -o "
    "DIR\n"
    "       ktf-host --diff RUN_A RUN_B\n";

po::options_description options(Args& a) {
  po::options_description opts("options");
  opts.add_options()("help,h", "show this help")(
      "plugins,p", po::value(&a.plugin_sources)->multitoken()->composing(),
      "plugin directories or .so files (repeatable); also KTF_PLUGIN_PATH and the installed plugin "
      "directory")("config,c", po::value(&a.config_path),
                   "config file (Hjson: JSON with comments, optional commas, unquoted keys)")(
      "set", po::value(&a.overrides)->composing(),
      "override PTR=JSON, PTR a JSON Pointer into the config (repeatable)")(
      "device", po::value(&a.device)->default_value("auto"), "auto | cpu | cuda | cuda:N")(
      "threads", po::value(&a.threads)->default_value(0), "intra-op threads (0 = all cores)")(
      "memory-format", po::value(&a.memory_format)->default_value("contiguous"),
      "layout of image inputs and convolution weights: contiguous (NCHW) | channels_last (NHWC)")(
      "seed", po::value(&a.seed_text), "random seed, 0 to 2^64-1 (default 0)")(
      "output-dir,o", po::value(&a.output_dir), "run directory (default runs/<config>-<time>)")(
      "dry-run", "build every cycle, run one batch forward and backward, print shapes, exit")(
      "resume", po::value<std::string>(),
      "RUN_DIR: continue that run from its newest complete checkpoint (its stored config unless "
      "-c is given); auto: resume --output-dir when it holds one, else start fresh there")(
      "allow-config-change",
      "with --resume: continue although the config, --seed or the plugins differ from the run's")(
      "quiet,q", "print only errors")("list", po::value(&a.list_kind)->implicit_value(""),
                                      "list registered components [of KIND]")(
      "describe", po::value(&a.describe_name), "describe a component's parameters")(
      "schema", "print the JSON Schema of configs for the loaded components")(
      "reference", "print the Markdown reference of the loaded components (docs/components.md)")(
      "version", "print versions")("evaluate", po::value<std::string>(),
                                   "evaluate RUN_DIR: load its weights, report the metrics on "
                                   "the validation split, write per-example predictions (CSV)")(
      "cycle", po::value<int>()->default_value(0),
      "with --evaluate, --predict and --export-weights: the cycle whose weights to load "
      "(default: last)")(
      "predictions", po::value<std::string>(),
      "with --evaluate and --predict: CSV path (default RUN_DIR/predictions-cycle-<k>.csv, "
      "RUN_DIR/predict-cycle-<k>.csv)")(
      "predict", po::value(&a.predict)->multitoken(),
      "RUN_DIR INPUT...: run RUN_DIR's model on PNG/JPEG files, folders of them, IDX files, "
      "or CSV/TFRecord files in its dataset's format, prepared as its dataset prepares "
      "validation data; writes a CSV of each input's top-k classes with probabilities (default "
      "RUN_DIR/predict-cycle-<k>.csv, or --predictions)")(
      "top-k", po::value(&a.top_k)->default_value(5), "with --predict: classes per input")(
      "export-weights", po::value(&a.export_weights)->multitoken(),
      "RUN_DIR [FILE]: write RUN_DIR's weights (--cycle, default the last) as a plain PyTorch "
      "state_dict that torch.load reads (default RUN_DIR/weights/cycle-<k>.state_dict.pt)")(
      "export-names", po::value(&a.export_names)->default_value("auto"),
      "with --export-weights: auto (torchvision's names for ResNet and MobileNetV2, else ktf's) "
      "| ktf | torchvision")(
      "sweep", po::value(&a.sweep)->composing(),
      "PTR=[v1,v2,...]: train once per value (repeatable: every combination), each point in its "
      "own run directory under -o DIR, with a table of the points best first (sweep.csv, "
      "sweep.md); the same command again continues an interrupted sweep")(
      "sweep-jobs", po::value(&a.sweep_jobs)->default_value(1),
      "with --sweep: points trained at a time (the cores are split among them)")(
      "diff", po::value(&a.diff_runs)->multitoken(),
      "RUN_A RUN_B: print what differs between two runs: resolved configs (JSON Pointer paths), "
      "plugins, each cycle's final metrics and --evaluate results, side by side")(
      "convert", po::value<std::string>(),
      "converter: write the dataset of the config's first cycle as TFRecord shards of "
      "tf.train.Example into DIR (its examples as stored: in order, unaugmented, raw pixels)")(
      "shards", po::value<int64_t>()->default_value(4), "with --convert: shards per split")(
      "gzip", "with --convert: GZIP-compress the shards")(
      "view", po::value<std::string>(),
      "viewer: write a PNG contact sheet of the first cycle's training "
      "examples with their labels, raw and after augmentation")(
      "view-count", po::value<int64_t>()->default_value(32), "with --view: number of examples")(
      "precision", po::value(&a.precision),
      "fp32 | bf16 | fp16: the train loops' precision (overrides their \"precision\"); bf16 "
      "runs the model under autocast with fp32 master weights, fp16 (CUDA only) too, with "
      "dynamic loss scaling")(
      "nproc-per-node", po::value(&a.nproc_per_node)->default_value(0),
      "start N ranks of a data-parallel job on this machine and supervise them (as torchrun "
      "--standalone --nproc_per_node=N); when one fails the others are stopped")(
      "max-restarts", po::value(&a.max_restarts)->default_value(0),
      "with --nproc-per-node: start the job again up to K times after a rank failed (with "
      "--resume auto -o DIR it continues from its last checkpoint)")(
      "dist-timeout", po::value(&a.dist_timeout)->default_value(300),
      "distributed: seconds a rank waits for the others (rendezvous, a collective) before it "
      "stops the job with an error")(
      "blas-tuning", po::value(&a.blas_tuning)->default_value("on"),
      "on: where OpenBLAS chose kernels for an older CPU than this one, use the right ones (see "
      "docs/performance.md); off: keep OpenBLAS's choice (as KTF_BLAS_TUNING=off)");

  return opts;
}

bool parse(int argc, char** argv, const po::options_description& opts, po::variables_map& vm) {
  try {
    po::store(po::command_line_parser(argc, argv).options(opts).run(), vm);
    po::notify(vm);
    return true;
  } catch (const po::error& e) {
    std::cerr << "ktf-host: " << e.what() << "\n" << kUsage;
    return false;
  }
}

bool check(Args& a, const po::variables_map& vm) {
  auto bad = [](const std::string& option, const std::string& value, const std::string& want) {
    std::cerr << ("ktf-host: --" + option + " '" + value + "': expected " + want + "\n");
    return false;
  };
  // Up to 1024 intra-op threads: more than any machine's cores, and a typo of 100000 would
  // otherwise start threads until the process is killed.
  if (a.threads < 0 || a.threads > 1024)
    return bad("threads", std::to_string(a.threads), "0 (all cores) to 1024");
  if (vm.count("seed")) {
    const std::string& t = a.seed_text;
    const bool digits =
        !t.empty() && t.size() <= 20 && t.find_first_not_of("0123456789") == std::string::npos;
    errno = 0;
    const unsigned long long v = digits ? std::strtoull(t.c_str(), nullptr, 10) : 0;
    if (!digits || errno == ERANGE)
      return bad("seed", t.substr(0, 40), "an integer from 0 to 18446744073709551615");
    a.seed = v;
  }
  const std::pair<const char*, std::pair<int64_t, int64_t>> counts[] = {
      {"shards", {1, 100000}}, {"view-count", {1, 100000}}, {"top-k", {1, 1000}}};
  for (const auto& [name, range] : counts) {
    const int64_t v = vm[name].as<int64_t>();
    if (v < range.first || v > range.second)
      return bad(name, std::to_string(v),
                 std::to_string(range.first) + " to " + std::to_string(range.second));
  }
  if (a.nproc_per_node < 0 || a.nproc_per_node > 1024)
    return bad("nproc-per-node", std::to_string(a.nproc_per_node), "0 to 1024");
  if (a.max_restarts < 0 || a.max_restarts > 1000)
    return bad("max-restarts", std::to_string(a.max_restarts), "0 to 1000");
  if (!(a.dist_timeout > 0 && a.dist_timeout <= 7 * 24 * 3600.0))
    return bad("dist-timeout", std::to_string(a.dist_timeout),
               "seconds, more than 0 and at most a week (604800)");
  return true;
}

void print_help(const po::options_description& opts) {
  std::cout << kUsage << "\n"
            << opts << "\nExit codes: 0 done, 1 failed while running, 2 bad "
            << "command line or config, 3 plugin could not be loaded, 130 interrupted.\n";
}

}  // namespace ktf::host
