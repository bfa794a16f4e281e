// ktf/convert.h — writes a dataset as TFRecord shards of tf.train.Example records.
//
// The converter behind `ktf-host --convert`: it reads a dataset's train and validation streams
// (epoch 0, in stream order) and writes them as shards that ktf.datasets.from_tfrecord (or
// TensorFlow) reads back:
//
//   out_dir/train-00000-of-00004.tfrecord ... train-00003-of-00004.tfrecord
//   out_dir/valid-00000-of-00004.tfrecord ...
//   out_dir/features.json     the feature spec, key names, class names and example counts
//
// Each record has "image" (the input's bytes: uint8, or float32 little-endian; images [C, H, W]
// are written [H, W, C] as TensorFlow stores them), "label" (int64_list, or float_list for float
// targets) and "shape" (int64_list: the stored image shape). Example k goes to shard k % shards,
// so reading the shards in turn (from_tfrecord's interleave) gives back the original order.
//
// A dataset that implements ktf::RawExamples (every dataset built on the SDK's IndexedDataset,
// and from_tfrecord) gives its examples as stored: in order, unaugmented, raw uint8 pixels,
// whatever its shuffling, scaling or transforms. Any other dataset is written as its train() and
// valid() streams yield it, so build it with shuffle off and no transforms.
//
//   ktf::convert_to_tfrecord(*dataset, "data/fashion_tfrecord", 4, /*gzip=*/false,
//                            [](const std::string& line) { std::cout << line << "\n"; });
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "ktf/components.h"

namespace ktf {

/// Writes `dataset`'s train and validation streams to `out_dir` (created if missing) as
/// `shards` TFRecord shards per split, GZIP-compressed when `gzip`, plus features.json. `log`
/// (may be empty) receives one line per split written. Throws ktf::Error on bad arguments,
/// unsupported data (inputs must be uint8 or float, targets integer or float) or I/O failure.
void convert_to_tfrecord(Dataset& dataset, const std::string& out_dir, int64_t shards, bool gzip,
                         const std::function<void(const std::string&)>& log = {});

}  // namespace ktf
