// CPU features and the choice of OpenBLAS kernels (ktf/process.h): the decision rule, what this
// machine reports, and what ktf-host's launcher does with it.
#include <gtest/gtest.h>
#include <ktf/process.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>

#include "plugins_fixture.h"

namespace {

ktf::CpuInfo cpu(bool avx2, bool avx512, bool bf16) {
  ktf::CpuInfo c;
  c.vendor = "GenuineIntel";
  c.model_name = "Test CPU";
  c.family = 6;
  c.model = 207;
  c.avx = c.fma = avx2 || avx512;
  c.avx2 = avx2 || avx512;
  c.avx512 = avx512;
  c.avx512_bf16 = bf16;
  return c;
}

TEST(Process, GenericKernelsOnANewerCpuAreReplacedByTheBestSet) {
  auto d = ktf::decide_openblas_core("Prescott", cpu(true, true, true), nullptr, nullptr);
  EXPECT_EQ(d.core, "Cooperlake");
  EXPECT_EQ(d.why,
            "OpenBLAS kernels Cooperlake, chosen by ktf: OpenBLAS chose Prescott (kernels for "
            "older CPUs) on this CPU (Test CPU, family 6 model 207, AVX-512 + AVX512-BF16); "
            "KTF_BLAS_TUNING=off or OPENBLAS_CORETYPE keeps another choice");
  EXPECT_EQ(ktf::decide_openblas_core("Haswell", cpu(true, true, false), nullptr, nullptr).core,
            "SkylakeX");
  EXPECT_EQ(ktf::decide_openblas_core("Nehalem", cpu(true, false, false), nullptr, nullptr).core,
            "Haswell");
  EXPECT_EQ(ktf::decide_openblas_core("core2", cpu(true, false, false), nullptr, nullptr).core,
            "Haswell");
}

TEST(Process, TheLibrarysChoiceStaysWhenItSuitsOrTheUserDecided) {
  // As good as the CPU allows (Zen is OpenBLAS's AVX2 set for AMD).
  EXPECT_EQ(ktf::decide_openblas_core("Cooperlake", cpu(true, true, true), nullptr, nullptr).core,
            "");
  EXPECT_EQ(ktf::decide_openblas_core("Zen", cpu(true, false, false), nullptr, nullptr).core, "");
  EXPECT_EQ(ktf::decide_openblas_core("SkylakeX", cpu(true, true, false), nullptr, nullptr).core,
            "");
  // A name ktf does not know (a newer OpenBLAS) is never second-guessed.
  EXPECT_EQ(
      ktf::decide_openblas_core("GraniteRapids", cpu(true, true, true), nullptr, nullptr).core, "");
  // No AVX: nothing better to choose.
  EXPECT_EQ(ktf::decide_openblas_core("Prescott", cpu(false, false, false), nullptr, nullptr).core,
            "");
  auto user = ktf::decide_openblas_core("Prescott", cpu(true, true, true), "Prescott", nullptr);
  EXPECT_EQ(user.core, "");
  EXPECT_EQ(user.why,
            "OpenBLAS kernels Prescott, from OPENBLAS_CORETYPE=Prescott as set by the user");
  auto off = ktf::decide_openblas_core("Prescott", cpu(true, true, false), nullptr, "off");
  EXPECT_EQ(off.core, "");
  EXPECT_NE(off.why.find("kept by KTF_BLAS_TUNING=off; this CPU (Test CPU, family 6 model 207, "
                         "AVX-512) would run SkylakeX"),
            std::string::npos)
      << off.why;
  EXPECT_EQ(ktf::decide_openblas_core("", cpu(true, true, true), nullptr, nullptr).why,
            "the BLAS is not OpenBLAS");
}

TEST(Process, LevelsAndBestSets) {
  EXPECT_EQ(ktf::openblas_core_level("COOPERLAKE"), 5);
  EXPECT_EQ(ktf::openblas_core_level("SkylakeX"), 4);
  EXPECT_EQ(ktf::openblas_core_level("Zen"), 3);
  EXPECT_EQ(ktf::openblas_core_level("Sandybridge"), 2);
  EXPECT_EQ(ktf::openblas_core_level("Prescott"), 1);
  EXPECT_EQ(ktf::openblas_core_level("nonsense"), 0);
  EXPECT_EQ(ktf::best_openblas_core(cpu(true, true, true)), "Cooperlake");
  EXPECT_EQ(ktf::best_openblas_core(cpu(true, true, false)), "SkylakeX");
  EXPECT_EQ(ktf::best_openblas_core(cpu(true, false, false)), "Haswell");
  EXPECT_EQ(ktf::best_openblas_core(cpu(false, false, false)), "");
  EXPECT_EQ(cpu(true, false, false).bf16_missing(),
            "AVX-512 and AVX512-BF16 (this CPU has AVX2 + FMA)");
  EXPECT_EQ(cpu(true, true, false).bf16_missing(), "AVX512-BF16 (this CPU has AVX-512 without it)");
  EXPECT_EQ(cpu(true, true, true).bf16_missing(), "");
}

/// The flags Linux reports for this CPU agree with what ktf read through CPUID.
TEST(Process, CpuInfoAgreesWithProcCpuinfo) {
  std::ifstream in("/proc/cpuinfo");
  std::string line, flags;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0) {
      flags = " " + line.substr(line.find(':') + 1) + " ";
      break;
    }
  ASSERT_FALSE(flags.empty());
  auto has = [&](const char* f) {
    return flags.find(" " + std::string(f) + " ") != std::string::npos;
  };
  const ktf::CpuInfo& c = ktf::cpu_info();
  EXPECT_EQ(c.avx2, has("avx2"));
  EXPECT_EQ(c.fma, has("fma"));
  EXPECT_EQ(c.avx512, has("avx512f") && has("avx512bw") && has("avx512vl") && has("avx512dq") &&
                          has("avx512cd"));
  EXPECT_EQ(c.avx512_bf16, has("avx512_bf16"));
  EXPECT_EQ(c.amx, has("amx_tile") && has("amx_bf16"));
  EXPECT_FALSE(c.model_name.empty());
}

/// This test process runs under the kernels ktf-host would choose (tests/support/test_main.cpp):
/// the best this CPU allows, or the user's own OPENBLAS_CORETYPE (this machine's environment may
/// set one).
/// Whether libtorch links an external BLAS (Debian: OpenBLAS) rather than carrying MKL inside.
constexpr bool kExternalBlas = sizeof(KTF_TORCH_BLAS_SONAME) > 1;

TEST(Process, TestsRunUnderTheChosenKernels) {
  const std::string core = ktf::openblas_core_in_use();
  if (!kExternalBlas) {
    EXPECT_EQ(core, "") << "a libtorch with MKL inside loads no OpenBLAS";
    return;
  }
  ASSERT_FALSE(core.empty()) << "libtorch's BLAS here is OpenBLAS (Debian)";
  EXPECT_NE(ktf::openblas_config_in_use().find("OpenBLAS"), std::string::npos);
  const char* user = std::getenv("OPENBLAS_CORETYPE");
  const char* tuning = std::getenv("KTF_BLAS_TUNING");
  if (user && *user && !std::getenv("KTF_BLAS_LIBRARY_CHOICE")) {
    EXPECT_EQ(ktf::openblas_core_level(core), ktf::openblas_core_level(user)) << core;
  } else if (tuning && std::string(tuning) == "off") {
    EXPECT_NE(ktf::blas_kernels_note().find("OpenBLAS's own choice"), std::string::npos)
        << ktf::blas_kernels_note();
  } else {
    EXPECT_GE(ktf::openblas_core_level(core),
              ktf::openblas_core_level(ktf::best_openblas_core(ktf::cpu_info())))
        << core << " on " << ktf::cpu_info().isa();
  }
}

ktf::test::CommandResult host(const std::string& env, const std::string& args) {
  return ktf::test::run_command("KTF_PLUGIN_PATH= " + env + " " + KTF_HOST + " " + args);
}

std::string train_args(const std::string& name) {
  const std::string dir = ktf::test::scratch_dir("process_" + name);
  return "--plugins " + ktf::test::plugin_dir() + " -c " + KTF_SOURCE_DIR +
         "/bench/configs/tiny.json --set /0/train_loop/ktf.train.KerasTrainLoop/steps_per_epoch=2 "
         "--threads 1 -q -o " +
         dir + "/run";
}

std::string log_of(const std::string& name) {
  std::ifstream in(std::string(KTF_TEST_SCRATCH_DIR) + "/process_" + name + "/run/log.txt");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// OpenBLAS falls back to generic kernels only on CPUs newer than itself; the test makes it
/// pretend it did (KTF_BLAS_PRETEND_LIBRARY_CHOICE) and checks that the launcher re-executed
/// ktf-host with the best kernels, logged why, and that a user's choice and the switch win.
TEST(Process, LauncherReplacesAFallbackAndLogsWhy) {
  const std::string best = ktf::best_openblas_core(ktf::cpu_info());
  if (best.empty()) GTEST_FAIL() << "this test needs an x86-64 CPU with AVX";
  if (!kExternalBlas) {  // PyTorch's wheels: MKL inside libtorch, nothing to choose
    auto r = host("env -u OPENBLAS_CORETYPE KTF_BLAS_PRETEND_LIBRARY_CHOICE=Prescott",
                  train_args("mkl"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(log_of("mkl").find("ktf: BLAS: MKL (inside libtorch) on this CPU ("),
              std::string::npos)
        << log_of("mkl");
    return;
  }
  auto r = host("env -u OPENBLAS_CORETYPE KTF_BLAS_PRETEND_LIBRARY_CHOICE=Prescott",
                train_args("fallback"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string log = log_of("fallback");
  EXPECT_NE(log.find("ktf: OpenBLAS kernels " + best +
                     ", chosen by ktf: OpenBLAS chose Prescott (kernels for older CPUs)"),
            std::string::npos)
      << log;

  r = host("OPENBLAS_CORETYPE=Prescott", train_args("user"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  log = log_of("user");
  EXPECT_NE(log.find("ktf: OpenBLAS kernels Prescott, from OPENBLAS_CORETYPE=Prescott as set by "
                     "the user"),
            std::string::npos)
      << log;

  r = host("env -u OPENBLAS_CORETYPE KTF_BLAS_PRETEND_LIBRARY_CHOICE=Prescott",
           train_args("off") + " --blas-tuning off");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  log = log_of("off");
  EXPECT_NE(log.find("ktf: OpenBLAS kernels Prescott, OpenBLAS's own choice, kept by "
                     "KTF_BLAS_TUNING=off; this CPU ("),
            std::string::npos)
      << log;

  // Without a user's OPENBLAS_CORETYPE, ktf-host runs the best kernels for this CPU.
  r = host("env -u OPENBLAS_CORETYPE", train_args("auto"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  log = log_of("auto");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(log, m, std::regex("ktf: OpenBLAS kernels (\\w+), "))) << log;
  EXPECT_GE(ktf::openblas_core_level(m[1]), ktf::openblas_core_level(best)) << log;

  // A child of a process whose kernels ktf forced inherits the record with OPENBLAS_CORETYPE and
  // keeps the decision; one given another OPENBLAS_CORETYPE treats it as the user's.
  r = host("env KTF_BLAS_LIBRARY_CHOICE=1:Prescott:" + best + " OPENBLAS_CORETYPE=" + best,
           train_args("inherited"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(log_of("inherited")
                .find("ktf: OpenBLAS kernels " + best + ", chosen by ktf: OpenBLAS chose Prescott"),
            std::string::npos)
      << log_of("inherited");
  r = host("env KTF_BLAS_LIBRARY_CHOICE=1:Prescott:" + best + " OPENBLAS_CORETYPE=Prescott",
           train_args("overridden"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(log_of("overridden").find("from OPENBLAS_CORETYPE=Prescott as set by the user"),
            std::string::npos)
      << log_of("overridden");

  r = host("", "--blas-tuning maybe --version");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output.rfind("ktf-host: --blas-tuning 'maybe': expected on or off\n", 0), 0u)
      << r.output;
}

/// --help, --version and a bad option are answered by the launcher, without loading libtorch.
TEST(Process, LauncherAnswersWithoutLoadingLibtorch) {
  auto r = host("LD_DEBUG=files", "--version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("ktf-host "), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("libtorch_cpu"), std::string::npos) << "loaded libtorch for --version";
  r = host("LD_DEBUG=files", "--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("--precision"), std::string::npos);
  EXPECT_EQ(r.output.find("libtorch_cpu"), std::string::npos) << "loaded libtorch for --help";
  r = host("LD_DEBUG=files", "--no-such-option");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output.find("libtorch_cpu"), std::string::npos);
}

}  // namespace
