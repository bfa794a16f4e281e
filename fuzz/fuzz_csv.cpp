// CSV reader through ktf.datasets.csv. The first byte picks the options (header or not, the
// delimiter, a fill_value, num_classes); the rest is the file.
#include "fuzz_common.h"

KTF_FUZZ_TARGET(fuzz_csv)(const uint8_t* data, size_t size) {
  using namespace ktf;
  if (size < 1) return 0;
  const unsigned flags = data[0];
  auto path = fuzz::write_file("data.csv", {reinterpret_cast<const char*>(data) + 1, size - 1});
  Json args = Json::object({{"file", path}, {"batch_size", 3}, {"header", (flags & 1) != 0}});
  if (flags & 2) args["delimiter"] = ";";
  if (flags & 4) args["fill_value"] = 0.0;
  if (flags & 8) args["num_classes"] = static_cast<int64_t>(flags >> 4);
  fuzz::expect_clean([&] { fuzz::build_and_read("ktf.datasets.csv", args); });
  return 0;
}
