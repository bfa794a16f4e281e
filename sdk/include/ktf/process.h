// ktf/process.h — setting a process up for speed before libtorch runs: what the CPU can do and
// which BLAS kernels serve it. Needs no libtorch (ktf-host's launcher uses it before loading any).
//
// Debian's OpenBLAS picks its kernels once, when it is loaded, from the CPU model it knows; on a
// CPU newer than the library it falls back to generic kernels (on a 2023 Xeon, "Prescott": about
// a fifth of the matrix-product speed). ktf-host corrects that before libtorch loads. A program
// that links libtorch itself (an embedding program) gets the same by calling, first in main():
//
//   int main(int argc, char** argv) {
//     ktf::use_best_cpu_kernels(argc, argv);  // may re-execute the program once
//     ...
//
// or by setting OPENBLAS_CORETYPE itself. A user's OPENBLAS_CORETYPE is never overridden, and
// KTF_BLAS_TUNING=off (ktf-host: --blas-tuning off) keeps the library's own choice.
#pragma once

#include <string>

namespace ktf {

/// What the CPU running this process supports (CPUID, and XGETBV for what the OS enables).
struct CpuInfo {
  std::string vendor;      ///< "GenuineIntel", "AuthenticAMD", ...
  std::string model_name;  ///< the brand string, e.g. "Intel(R) Xeon(R) Platinum 8581C"
  int family = 0;          ///< display family (base + extended)
  int model = 0;           ///< display model (with the extended model)
  bool avx = false;
  bool fma = false;
  bool avx2 = false;
  bool avx512 = false;       ///< AVX-512 F, CD, BW, DQ and VL, with the OS saving their state
  bool avx512_bf16 = false;  ///< AVX512-BF16 (bf16 dot products)
  bool amx = false;          ///< AMX tiles with bf16, enabled by the OS
  /// The best vector ISA, e.g. "AVX-512 + AVX512-BF16 + AMX", "AVX2 + FMA", "SSE only".
  std::string isa() const;
  /// What is missing for fast bf16 (empty when the CPU has AVX512-BF16 or AMX).
  std::string bf16_missing() const;
};

/// This CPU (read once).
const CpuInfo& cpu_info();

/// How good an OpenBLAS x86-64 kernel set is: 5 AVX512-BF16 (Cooperlake, SapphireRapids),
/// 4 AVX-512 (SkylakeX), 3 AVX2 (Haswell, Zen), 2 AVX (Sandybridge, Bulldozer ... Excavator),
/// 1 anything older or generic (Prescott, Core2, Nehalem, ...), 0 unknown names.
int openblas_core_level(const std::string& core);

/// The OpenBLAS kernel set of the highest level this CPU supports ("Cooperlake", "SkylakeX",
/// "Haswell", "Sandybridge"), or "" where the CPU has no AVX.
std::string best_openblas_core(const CpuInfo& cpu);

/// What to do about OpenBLAS's choice `library_core` ("" when the BLAS is not OpenBLAS).
struct BlasDecision {
  std::string core;  ///< the kernel set to force, or "" to keep the library's choice
  std::string why;   ///< one sentence: what was chosen and why
};
/// `user_coretype` is OPENBLAS_CORETYPE as the user set it (nullptr when unset), `tuning` is
/// KTF_BLAS_TUNING (nullptr when unset; "off" keeps the library's choice).
BlasDecision decide_openblas_core(const std::string& library_core, const CpuInfo& cpu,
                                  const char* user_coretype, const char* tuning);

/// The kernel set the loaded OpenBLAS runs ("" when no OpenBLAS is loaded in this process).
std::string openblas_core_in_use();
/// OpenBLAS's build description ("OpenBLAS 0.3.21 DYNAMIC_ARCH ..."), "" when none is loaded.
std::string openblas_config_in_use();

/// The decision taken for this process (by ktf-host's launcher or use_best_cpu_kernels()), as
/// one sentence for the run's log; describes the library's own choice when none was taken.
std::string blas_kernels_note();

/// For programs that link libtorch: call first in main(), before any thread starts. Where the
/// OpenBLAS already loaded runs kernels below what this CPU supports, sets OPENBLAS_CORETYPE and
/// re-executes the program (/proc/self/exe, the same argv and environment) once; otherwise, or
/// when KTF_BLAS_TUNING=off or OPENBLAS_CORETYPE is set, it returns at once. Costs one more start
/// of the program on such CPUs only.
void use_best_cpu_kernels(int argc, char** argv);

/// The core of use_best_cpu_kernels() for a launcher that has not loaded the BLAS yet: opens
/// `blas_soname` (the BLAS libtorch links, e.g. "libblas.so.3"), reads OpenBLAS's choice and, where
/// it must change, sets OPENBLAS_CORETYPE and re-executes argv[0]'s program. Returns when nothing
/// is to change (the BLAS stays loaded: libtorch uses the same copy).
void prepare_blas(const char* blas_soname, int argc, char** argv);

}  // namespace ktf
