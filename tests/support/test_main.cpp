// main() of every test executable: the op-level tests run under the BLAS kernels ktf-host would
// choose on this CPU (ktf::use_best_cpu_kernels may re-execute the test once), then GoogleTest.
#include <gtest/gtest.h>
#include <ktf/process.h>

int main(int argc, char** argv) {
  ktf::use_best_cpu_kernels(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
