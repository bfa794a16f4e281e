// ktf/viewer.h — contact sheets: a PNG grid of a dataset's examples with their labels.
//
// The viewer behind `ktf-host --view`, the successor of the original tool's viewer notebooks:
//
//   ktf::write_contact_sheet(*dataset, "sheet.png", 64, /*augmented=*/true);
//
// Each cell is one training example (epoch 0, in stream order) with its label drawn below it as
// digits in a bar whose colour depends on the class. With `augmented` every row of raw examples
// is followed by a row with the same examples after the dataset's transforms.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "ktf/components.h"

namespace ktf {

/// Writes a PNG grid of the first `n` training examples with their labels to `png_path`. With
/// `augmented`, each row of raw examples is followed by the same examples augmented. Inputs must
/// be images [C, H, W] (or [H, W]); float inputs are scaled per example to the full gray range.
void write_contact_sheet(Dataset& dataset, const std::string& png_path, int64_t n, bool augmented);

/// Renders the grid without writing it: uint8 [H, W, 3].
torch::Tensor render_contact_sheet(Dataset& dataset, int64_t n, bool augmented);

}  // namespace ktf
