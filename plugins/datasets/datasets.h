// Registration functions of the datasets plugin, one per component file, and the typed
// `validation` argument the readers share.
#pragma once

#include <ktf/data.h>
#include <ktf/registry.h>

#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace ktf::datasets {
/// plugins/datasets/testdata, which the components' spec examples read (a generated file).
extern const char kTestdataDir[];
void register_idx(Registrar& r);
void register_synthetic(Registrar& r);
void register_tfrecord(Registrar& r);
void register_csv(Registrar& r);
void register_image_folder(Registrar& r);
void register_transforms(Registrar& r);

/// A `validation` argument: "test", "none" or a held-out fraction (declare it with
/// .choices({...}).above(0).below(1)).
using ValidationArg = std::variant<std::string, double>;

/// ktf::parse_validation of a typed `validation` argument (null: the test split when the reader
/// has one, else none). Returns the fraction, 0 for "none", -1 for "test".
inline double parse_validation(const std::optional<ValidationArg>& v, bool has_test) {
  return ktf::parse_validation(v ? ArgTraits<ValidationArg>::to_json(*v) : Json(), has_test);
}
}  // namespace ktf::datasets
