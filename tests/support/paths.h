// The paths tests use, compiled into the test support library (tests/CMakeLists.txt generates
// them) rather than passed to every test's compile line. Each macro is a const char array.
#pragma once

namespace ktf::test::paths {
extern const char source_dir[];         ///< the checkout
extern const char binary_dir[];         ///< the build directory
extern const char plugin_dir[];         ///< the in-tree plugins
extern const char scratch_dir[];        ///< <build>/test-scratch
extern const char fixture_dir[];        ///< <build>/test-fixtures (loader fixtures)
extern const char host[];               ///< the ktf-host executable
extern const char datasets_testdata[];  ///< plugins/datasets/testdata
}  // namespace ktf::test::paths

#define KTF_SOURCE_DIR ::ktf::test::paths::source_dir
#define KTF_BINARY_DIR ::ktf::test::paths::binary_dir
#define KTF_TEST_PLUGIN_DIR ::ktf::test::paths::plugin_dir
#define KTF_TEST_SCRATCH_DIR ::ktf::test::paths::scratch_dir
#define KTF_FIXTURE_DIR ::ktf::test::paths::fixture_dir
#define KTF_HOST ::ktf::test::paths::host
#define KTF_DATASETS_TESTDATA ::ktf::test::paths::datasets_testdata
