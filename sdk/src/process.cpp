// CPU features and the choice of OpenBLAS kernels (ktf/process.h). No libtorch here: ktf-host's
// launcher links this before it loads libtorch.
#include "ktf/process.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define KTF_X86 1
#else
#define KTF_X86 0
#endif

namespace ktf {
namespace {

/// Set by ktf when it forces OpenBLAS's kernels, as "<pid>:<OpenBLAS's own choice>:<forced set>".
/// It tells the re-executed process (the same pid) that the decision is taken; a child process
/// inherits it together with OPENBLAS_CORETYPE, and adopts the decision while OPENBLAS_CORETYPE
/// still names the forced set (otherwise the child's OPENBLAS_CORETYPE is someone else's).
const char* const kLibraryChoiceVar = "KTF_BLAS_LIBRARY_CHOICE";

/// For tests: a name here stands for OpenBLAS's own choice, as if OpenBLAS had fallen back to it
/// (the fallback happens only on CPUs newer than the library, which a test machine may not be).
const char* const kPretendVar = "KTF_BLAS_PRETEND_LIBRARY_CHOICE";

std::string library_choice(const std::string& actual) {
  const char* pretend = std::getenv(kPretendVar);
  return pretend && *pretend && !actual.empty() ? pretend : actual;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

/// OpenBLAS's own choice when ktf forced the kernels of this process (see kLibraryChoiceVar), or
/// "" when it did not. A marker inherited from a parent is adopted (rewritten with this pid) while
/// OPENBLAS_CORETYPE still names its forced set, and dropped otherwise.
std::string forced_marker() {
  const char* value = std::getenv(kLibraryChoiceVar);
  if (!value) return "";
  const std::string text = value;
  const auto a = text.find(':'), b = text.rfind(':');
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  if (a == std::string::npos || a == b || !coretype ||
      lower(coretype) != lower(text.substr(b + 1))) {
    unsetenv(kLibraryChoiceVar);
    return "";
  }
  const std::string library = text.substr(a + 1, b - a - 1);
  if (text.substr(0, a) != std::to_string(getpid()))
    setenv(kLibraryChoiceVar, (std::to_string(getpid()) + text.substr(a)).c_str(), 1);
  return library;
}

#if KTF_X86
uint64_t xgetbv0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}
#endif

CpuInfo read_cpu() {
  CpuInfo c;
#if KTF_X86
  unsigned a = 0, b = 0, cx = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &cx, &d)) return c;
  const unsigned max_leaf = a;
  char vendor[13] = {};
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &cx, 4);
  c.vendor = vendor;
  __get_cpuid(1, &a, &b, &cx, &d);
  const int base_family = (a >> 8) & 0xf;
  c.family = base_family == 0xf ? base_family + int((a >> 20) & 0xff) : base_family;
  c.model = int((a >> 4) & 0xf);
  if (base_family == 6 || base_family == 0xf) c.model += int((a >> 16) & 0xf) << 4;
  const bool osxsave = cx & (1u << 27);
  const uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;
  const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;
  c.avx = os_avx && (cx & (1u << 28));
  c.fma = c.avx && (cx & (1u << 12));
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, cx, d);
    c.avx2 = c.avx && (b & (1u << 5));
    const unsigned avx512_bits = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31);
    c.avx512 = os_avx512 && (b & avx512_bits) == avx512_bits;
    c.amx = os_amx && (d & (1u << 22)) && (d & (1u << 24));
    __cpuid_count(7, 1, a, b, cx, d);
    c.avx512_bf16 = c.avx512 && (a & (1u << 5));
  }
  unsigned brand[12] = {};
  __get_cpuid(0x80000000, &a, &b, &cx, &d);
  if (a >= 0x80000004) {
    for (unsigned i = 0; i < 3; ++i)
      __get_cpuid(0x80000002 + i, &brand[4 * i], &brand[4 * i + 1], &brand[4 * i + 2],
                  &brand[4 * i + 3]);
    std::string name(reinterpret_cast<const char*>(brand), sizeof(brand));
    name = name.substr(0, name.find('\0'));
    const auto first = name.find_first_not_of(' ');
    const auto last = name.find_last_not_of(' ');
    c.model_name = first == std::string::npos ? "" : name.substr(first, last - first + 1);
  }
#endif
  return c;
}

std::string describe_cpu(const CpuInfo& cpu) {
  std::string s = cpu.model_name.empty() ? cpu.vendor : cpu.model_name;
  s += ", family " + std::to_string(cpu.family) + " model " + std::to_string(cpu.model);
  return s + ", " + cpu.isa();
}

using TextFn = char* (*)();

std::string call_text(void* handle, const char* symbol) {
  auto fn = reinterpret_cast<TextFn>(dlsym(handle, symbol));
  if (!fn) return "";
  const char* text = fn();
  std::string s = text ? text : "";
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

/// Acts on OpenBLAS's choice `actual` (or the pretended one): unless ktf already decided for this
/// process, the user set OPENBLAS_CORETYPE or tuning is off, may set OPENBLAS_CORETYPE and
/// re-execute the program.
void apply(const std::string& actual, int argc, char** argv) {
  if (!forced_marker().empty() || argc < 1 || !argv || !argv[0]) return;
  const std::string library_core = library_choice(actual);
  const BlasDecision d = decide_openblas_core(
      library_core, cpu_info(), std::getenv("OPENBLAS_CORETYPE"), std::getenv("KTF_BLAS_TUNING"));
  if (d.core.empty()) return;
  setenv("OPENBLAS_CORETYPE", d.core.c_str(), 1);
  setenv(kLibraryChoiceVar, (std::to_string(getpid()) + ":" + library_core + ":" + d.core).c_str(),
         1);
  execv("/proc/self/exe", argv);
  // Could not re-execute (no /proc?): run on with the library's kernels, and say so in the log.
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv(kLibraryChoiceVar);
}

}  // namespace

std::string CpuInfo::isa() const {
  std::string s;
  if (avx512) {
    s = "AVX-512";
    if (avx512_bf16) s += " + AVX512-BF16";
  } else if (avx2) {
    s = fma ? "AVX2 + FMA" : "AVX2";
  } else if (avx) {
    s = "AVX";
  } else {
    s = "SSE only";
  }
  if (amx) s += " + AMX";
  return s;
}

std::string CpuInfo::bf16_missing() const {
  if (avx512_bf16 || amx) return "";
  if (!avx512) return "AVX-512 and AVX512-BF16 (this CPU has " + isa() + ")";
  return "AVX512-BF16 (this CPU has AVX-512 without it)";
}

const CpuInfo& cpu_info() {
  static const CpuInfo info = read_cpu();
  return info;
}

int openblas_core_level(const std::string& core) {
  static const std::vector<std::pair<const char*, int>> levels = {
      {"cooperlake", 5},  {"sapphirerapids", 5}, {"skylakex", 4},     {"haswell", 3},
      {"zen", 3},         {"sandybridge", 2},    {"bulldozer", 2},    {"piledriver", 2},
      {"steamroller", 2}, {"excavator", 2},      {"katmai", 1},       {"coppermine", 1},
      {"northwood", 1},   {"prescott", 1},       {"banias", 1},       {"atom", 1},
      {"core2", 1},       {"penryn", 1},         {"dunnington", 1},   {"nehalem", 1},
      {"athlon", 1},      {"opteron", 1},        {"opteron_sse3", 1}, {"barcelona", 1},
      {"nano", 1},        {"bobcat", 1}};
  const std::string name = lower(core);
  for (const auto& [n, level] : levels)
    if (name == n) return level;
  return 0;
}

std::string best_openblas_core(const CpuInfo& cpu) {
  if (cpu.avx512) return cpu.avx512_bf16 ? "Cooperlake" : "SkylakeX";
  if (cpu.avx2 && cpu.fma) return "Haswell";
  if (cpu.avx) return "Sandybridge";
  return "";
}

BlasDecision decide_openblas_core(const std::string& library_core, const CpuInfo& cpu,
                                  const char* user_coretype, const char* tuning) {
  if (library_core.empty()) return {"", "the BLAS is not OpenBLAS"};
  if (user_coretype && *user_coretype)
    return {"", "OpenBLAS kernels " + library_core + ", from OPENBLAS_CORETYPE=" + user_coretype +
                    " as set by the user"};
  const std::string best = best_openblas_core(cpu);
  const int have = openblas_core_level(library_core), can = openblas_core_level(best);
  if (best.empty() || have == 0 || have >= can)
    return {"", "OpenBLAS kernels " + library_core + ", OpenBLAS's own choice for this CPU (" +
                    describe_cpu(cpu) + ")"};
  if (tuning && lower(tuning) == "off")
    return {"", "OpenBLAS kernels " + library_core +
                    ", OpenBLAS's own choice, kept by KTF_BLAS_TUNING=off; this CPU (" +
                    describe_cpu(cpu) + ") would run " + best};
  return {best, "OpenBLAS kernels " + best + ", chosen by ktf: OpenBLAS chose " + library_core +
                    " (kernels for older CPUs) on this CPU (" + describe_cpu(cpu) +
                    "); KTF_BLAS_TUNING=off or OPENBLAS_CORETYPE keeps another choice"};
}

std::string openblas_core_in_use() { return call_text(RTLD_DEFAULT, "openblas_get_corename"); }

std::string openblas_config_in_use() { return call_text(RTLD_DEFAULT, "openblas_get_config"); }

std::string blas_kernels_note() {
  const std::string core = openblas_core_in_use();
  if (core.empty()) return "";
  if (const std::string library = forced_marker(); !library.empty()) {
    const BlasDecision d = decide_openblas_core(library, cpu_info(), nullptr, nullptr);
    if (lower(d.core) == lower(core)) return d.why;
    return "OpenBLAS kernels " + core + ": OpenBLAS did not take OPENBLAS_CORETYPE=" +
           std::string(std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "") +
           " (it had chosen " + library + " by itself)";
  }
  const std::string library = library_choice(core);
  const BlasDecision d = decide_openblas_core(library, cpu_info(), std::getenv("OPENBLAS_CORETYPE"),
                                              std::getenv("KTF_BLAS_TUNING"));
  if (d.core.empty()) return d.why;
  return "OpenBLAS kernels " + library + ", OpenBLAS's own choice, below this CPU (" +
         describe_cpu(cpu_info()) + "): call ktf::use_best_cpu_kernels() first in main() or set " +
         "OPENBLAS_CORETYPE=" + d.core;
}

void use_best_cpu_kernels(int argc, char** argv) { apply(openblas_core_in_use(), argc, argv); }

void prepare_blas(const char* blas_soname, int argc, char** argv) {
  if (!blas_soname || !*blas_soname) return;
  // Opened here also when nothing is to change: libtorch links this same copy a moment later.
  void* handle = dlopen(blas_soname, RTLD_NOW | RTLD_GLOBAL);
  if (!handle) return;  // libtorch's own load will report a missing BLAS
  apply(call_text(handle, "openblas_get_corename"), argc, argv);
}

}  // namespace ktf
