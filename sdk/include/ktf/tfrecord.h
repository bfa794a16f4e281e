// ktf/tfrecord.h — TFRecord files, the original tool's storage format, read and written natively.
//
// A record is: uint64 length (little-endian), uint32 masked CRC-32C of the length bytes, the data,
// uint32 masked CRC-32C of the data. Both CRCs are verified on read. Files may be GZIP-compressed
// (TFRecordOptions compression "GZIP").
//
//   ktf::TFRecordWriter w("train-00000-of-00004.tfrecord");
//   w.write(serialized_example);
//   ktf::TFRecordReader r("train-00000-of-00004.tfrecord");   // GZIP detected from the magic
//   std::string record;
//   while (r.read(record)) { ... }
//
// A corrupt file raises ktf::Error naming the file, the record index and the byte offset.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace ktf {

/// CRC-32C (Castagnoli) of `data`.
uint32_t crc32c(std::string_view data);
/// TensorFlow's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t masked_crc32c(std::string_view data);

/// One record framed as a TFRecord file stores it: length, masked CRC of the length, the data,
/// masked CRC of the data (for writers that keep the bytes themselves, e.g. in a ktf::RunLog).
std::string tfrecord_frame(std::string_view record);

class TFRecordWriter {
 public:
  /// Opens `path` for writing (truncates). `gzip` writes a GZIP stream as TensorFlow does.
  explicit TFRecordWriter(const std::string& path, bool gzip = false);
  ~TFRecordWriter();
  TFRecordWriter(const TFRecordWriter&) = delete;
  TFRecordWriter& operator=(const TFRecordWriter&) = delete;

  void write(std::string_view record);
  /// Flushes buffered records to disk (TensorBoard event files are flushed per epoch).
  void flush();
  void close();
  const std::string& path() const { return path_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
};

class TFRecordReader {
 public:
  /// Opens `path`; GZIP is detected from the file's magic bytes. Throws ktf::Error if missing.
  explicit TFRecordReader(const std::string& path);
  ~TFRecordReader();
  TFRecordReader(const TFRecordReader&) = delete;
  TFRecordReader& operator=(const TFRecordReader&) = delete;

  /// Reads the next record into `record`; false at a clean end of file. Throws ktf::Error (exit
  /// code 2) naming the file, record index and offset on truncation or a CRC mismatch.
  bool read(std::string& record);
  int64_t records_read() const { return index_; }
  const std::string& path() const { return path_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
  int64_t index_ = 0;
  uint64_t offset_ = 0;
};

}  // namespace ktf
