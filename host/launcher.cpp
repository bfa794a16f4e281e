// ktf-host: a thin launcher. It links no libtorch: it answers --help and --version and rejects a
// bad command line at once, sets the process up while no library has initialised yet (the
// allocator, the BLAS kernels), and only then loads the host proper (libktf_host_cli, which
// brings libtorch, the engine and the plugins) and hands it argv.
#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <string>

#include "ktf/build_info.h"
#include "ktf/process.h"
#include "options.h"
#include "supervisor.h"

namespace {

/// libtorch's CPU tensors come from malloc. glibc serves blocks above its mmap threshold (128 KiB,
/// rising to at most 32 MiB) with mmap and unmaps them on free, so every step page-faults and
/// zeroes its activation and gradient memory afresh. Keeping blocks up to 64 MiB in the heap and
/// not trimming its top made a ResNet-18 step 4 % faster on the benchmark machine (957 against
/// 998 ms, alternating runs). A MALLOC_MMAP_THRESHOLD_ in the environment still wins.
void keep_tensor_memory_in_the_heap() {
  if (std::getenv("MALLOC_MMAP_THRESHOLD_")) return;
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_TOP_PAD, 64 << 20);
}

std::string executable_dir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

/// libktf_host_cli: beside the executable in the build tree, in the library directory once
/// installed.
void* open_host() {
  const std::string dir = executable_dir();
  std::string errors;
  for (const std::string& path :
       {dir + "/libktf_host_cli.so", dir + "/" KTF_BIN_TO_LIBDIR "/libktf_host_cli.so"}) {
    if (access(path.c_str(), F_OK) != 0) continue;
    if (void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL)) return handle;
    errors += std::string("\n  ") + dlerror();
  }
  std::cerr << "ktf-host: cannot load the host library libktf_host_cli.so beside " << dir
            << " or in " << dir << "/" KTF_BIN_TO_LIBDIR
            << (errors.empty() ? ": not found" : ":" + errors) << "\n";
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  keep_tensor_memory_in_the_heap();
  ktf::host::Args args;
  const auto opts = ktf::host::options(args);
  boost::program_options::variables_map vm;
  if (!ktf::host::parse(argc, argv, opts, vm)) return 2;
  if (!vm.count("help") && !vm.count("version") && !ktf::host::check(args, vm)) return 2;
  if (args.blas_tuning != "on" && args.blas_tuning != "off") {
    std::cerr << "ktf-host: --blas-tuning '" << args.blas_tuning << "': expected on or off\n"
              << ktf::host::kUsage;
    return 2;
  }
  if (vm.count("help")) {
    ktf::host::print_help(opts);
    return 0;
  }
  if (vm.count("version")) {
    std::cout << "ktf-host " KTF_SDK_VERSION " (plugin ABI " KTF_DETAIL_STR(
        KTF_ABI_VERSION) ", libtorch " KTF_TORCH_VERSION_STRING ", " KTF_BUILD_TAG ")\n";
    return 0;
  }
  // A rank started by --nproc-per-node runs the launcher's command line as one rank of the job.
  const bool supervised = std::getenv("KTF_SUPERVISED_RANK") != nullptr;
  if (!supervised && (args.nproc_per_node > 0 || !vm["max-restarts"].defaulted()))
    return ktf::host::supervise(argc, argv, args.nproc_per_node, args.max_restarts, 10.0,
                                vm.count("quiet") > 0);
  if (args.blas_tuning == "off") setenv("KTF_BLAS_TUNING", "off", 1);
  // Where OpenBLAS would run kernels for an older CPU, this re-executes ktf-host with
  // OPENBLAS_CORETYPE set; otherwise the BLAS stays loaded for libtorch.
  ktf::prepare_blas(KTF_TORCH_BLAS_SONAME, argc, argv);
  void* host = open_host();
  if (!host) return 3;
  using Main = int (*)(int, char**);
  auto host_main = reinterpret_cast<Main>(dlsym(host, "ktf_host_main"));
  if (!host_main) {
    std::cerr << "ktf-host: libktf_host_cli.so has no ktf_host_main (a mismatched install?)\n";
    return 3;
  }
  return host_main(argc, argv);
}
