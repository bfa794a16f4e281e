// ktf-host --export-weights (ktf/export_weights.h).
#include "ktf/export_weights.h"

#include <torch/serialize.h>

#include <iostream>

#include "ktf/error.h"
#include "ktf/evaluate.h"
#include "ktf/state.h"

namespace ktf {

ExportResult export_weights(const ExportOptions& options, Registry& registry) {
  TrainedCycle trained = load_trained_cycle(options.run_dir, options.cycle, options.overrides,
                                            "cpu", 0, "contiguous", registry);
  const Cycle& cycle = trained.cycle;
  const std::string model = cycle.model_path.empty() ? "the run's model" : cycle.model_path.back();
  const auto* equivalent = dynamic_cast<const ReferenceNames*>(cycle.model.get());
  ExportResult result;
  if (options.names != "ktf") {
    if (equivalent) {
      const std::string reference = equivalent->reference();
      const std::string library = reference.substr(0, reference.find('.'));
      if (options.names == "auto" || options.names == library)
        result.reference = reference;
      else
        throw Error("--export-names " + options.names + ": " + model +
                    " has no equivalent there (its equivalent is " + reference +
                    "); give --export-names ktf or " + library);
    } else if (options.names != "auto") {
      throw Error(
          "--export-names " + options.names + ": " + model +
          " has no equivalent in another library whose names it knows; give "
          "--export-names ktf (its own names, as torch.jit.load(...).state_dict() has them)");
    }
  }
  result.output = options.output.empty()
                      ? trained.weights.parent_path() /
                            ("cycle-" + std::to_string(trained.k) + ".state_dict.pt")
                      : options.output;
  // torch.nn.Module.state_dict()'s order: module by module, its parameters, then its buffers.
  c10::Dict<std::string, torch::Tensor> state;
  for (const auto& item : cycle.model->named_modules("", true)) {
    auto add = [&](const std::string& local, const torch::Tensor& t) {
      if (!t.defined()) return;
      const std::string name = item.key().empty() ? local : item.key() + "." + local;
      const std::string out = result.reference.empty() ? name : equivalent->reference_name(name);
      if (state.contains(out))
        throw Error("--export-weights: two of " + model + "'s tensors would both be named '" + out +
                        "' (a bug in its ReferenceNames)",
                    {}, kExitRuntime);
      state.insert(out, t.detach().to(torch::kCPU).contiguous());
    };
    for (const auto& p : item.value()->named_parameters(false)) add(p.key(), p.value());
    for (const auto& b : item.value()->named_buffers(false)) add(b.key(), b.value());
  }
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(state));
  write_file_atomic(result.output, std::string(bytes.begin(), bytes.end()));
  result.tensors = static_cast<int64_t>(state.size());
  if (!options.quiet)
    std::cout << "export: cycle " << trained.k << ", " << result.tensors << " tensors of " << model
              << " under "
              << (result.reference.empty() ? "ktf's names" : result.reference + "'s names")
              << " written to " << result.output.string() << "\n"
              << "  in Python: model.load_state_dict(torch.load('" << result.output.string()
              << "'))" << std::endl;
  return result;
}

}  // namespace ktf
