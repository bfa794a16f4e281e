// ktf-host's command line, shared by the launcher (which answers --help and --version and sets the
// process up before libtorch loads) and the host proper (libktf_host_cli, which does the work).
#pragma once

#include <boost/program_options.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace ktf::host {

extern const char* const kUsage;

/// Values of the options that are not read through the variables map.
struct Args {
  std::vector<std::string> plugin_sources, overrides;
  std::vector<std::string> diff_runs;       ///< --diff RUN_A RUN_B
  std::vector<std::string> predict;         ///< --predict RUN_DIR INPUT...
  std::vector<std::string> export_weights;  ///< --export-weights RUN_DIR [FILE]
  std::string export_names = "auto";
  int64_t top_k = 5;
  std::vector<std::string> sweep;  ///< --sweep PTR=[...], repeatable
  int sweep_jobs = 1;
  std::string config_path, device, output_dir, list_kind, describe_name, memory_format, precision,
      blas_tuning;
  int threads = 0;
  std::string seed_text;  ///< --seed as given; check() turns it into `seed`
  uint64_t seed = 0;
  int nproc_per_node = 0;  ///< --nproc-per-node: ranks the launcher starts here (0 = none)
  int max_restarts = 0;
  double dist_timeout = 300;
};

/// Every option of ktf-host, bound to `args`.
boost::program_options::options_description options(Args& args);

/// Parses argv into `vm`; on a bad command line prints the error and the usage to stderr and
/// returns false.
bool parse(int argc, char** argv, const boost::program_options::options_description& opts,
           boost::program_options::variables_map& vm);

/// Checks the ranges of the numeric options (--threads, --seed, --shards, --view-count,
/// --nproc-per-node, --max-restarts, --dist-timeout) and sets args.seed; on a bad value prints
/// "ktf-host: --<option> '<value>': expected ..." to stderr and returns false (exit code 2).
bool check(Args& args, const boost::program_options::variables_map& vm);

/// Prints --help.
void print_help(const boost::program_options::options_description& opts);

}  // namespace ktf::host
