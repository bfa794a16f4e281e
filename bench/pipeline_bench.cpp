// ktf-bench-pipeline: the data pipeline alone. Builds the first cycle's dataset of a config
// (transforms included) and pulls training batches for a fixed time, without training.
//
//   ktf-bench-pipeline PLUGIN_DIR CONFIG [SECONDS]
//
// Prints one JSON line: batches, samples, seconds, batches_per_second, samples_per_second.
#include <ktf/cycle.h>
#include <ktf/environment.h>
#include <ktf/plugin_loader.h>

#include <chrono>
#include <iostream>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: ktf-bench-pipeline PLUGIN_DIR CONFIG [SECONDS]\n";
    return 2;
  }
  double seconds = argc > 3 ? std::stod(argv[3]) : 5.0;
  try {
    ktf::PluginLoader(ktf::Registry::global()).load_all({argv[1]});
    ktf::configure_threads(0);
    auto dataset =
        ktf::build_cycle_dataset(ktf::Json::parse_file(argv[2]), {}, ktf::Registry::global());
    auto stream = dataset->train();
    using clock = std::chrono::steady_clock;
    int64_t batches = 0, samples = 0, epoch = 0;
    stream->start_epoch(epoch);
    auto start = clock::now();
    double elapsed = 0;
    while (elapsed < seconds) {
      auto batch = stream->next();
      if (!batch) {
        stream->start_epoch(++epoch);
        continue;
      }
      ++batches;
      samples += batch->input.size(0);
      elapsed = std::chrono::duration<double>(clock::now() - start).count();
    }
    std::cout << ktf::Json::object({{"batches", batches},
                                    {"samples", samples},
                                    {"seconds", elapsed},
                                    {"batches_per_second", batches / elapsed},
                                    {"samples_per_second", samples / elapsed}})
                     .dump()
              << std::endl;
  } catch (const ktf::Error& e) {
    std::cerr << "ktf-bench-pipeline: " << e.what() << "\n";
    return e.exit_code();
  }
  return 0;
}
