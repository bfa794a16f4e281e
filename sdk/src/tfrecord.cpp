#include "ktf/tfrecord.h"

#include <filesystem>

#include <zlib.h>

#include <boost/crc.hpp>
#include <cstdio>
#include <cstring>

#include "ktf/error.h"

namespace ktf {
namespace {

using Crc32c = boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true>;

void put_u64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void put_u32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint64_t get_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

}  // namespace

std::string tfrecord_frame(std::string_view record) {
  std::string out(12 + record.size() + 4, '\0');
  put_u64(out.data(), record.size());
  put_u32(out.data() + 8, masked_crc32c(std::string_view(out.data(), 8)));
  std::copy(record.begin(), record.end(), out.begin() + 12);
  put_u32(out.data() + 12 + record.size(), masked_crc32c(record));
  return out;
}

uint32_t crc32c(std::string_view data) {
  Crc32c crc;
  crc.process_bytes(data.data(), data.size());
  return crc.checksum();
}

uint32_t masked_crc32c(std::string_view data) {
  uint32_t crc = crc32c(data);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

struct TFRecordWriter::Impl {
  std::FILE* file = nullptr;
  gzFile gz = nullptr;
};

TFRecordWriter::TFRecordWriter(const std::string& path, bool gzip)
    : impl_(std::make_unique<Impl>()), path_(path) {
  if (gzip) {
    impl_->gz = gzopen(path.c_str(), "wb");
  } else {
    impl_->file = std::fopen(path.c_str(), "wb");
  }
  if (!impl_->gz && !impl_->file)
    throw Error("cannot write TFRecord file '" + path + "': " + std::strerror(errno), {},
                kExitRuntime);
}

TFRecordWriter::~TFRecordWriter() { close(); }

void TFRecordWriter::write(std::string_view record) {
  char header[12];
  put_u64(header, record.size());
  put_u32(header + 8, masked_crc32c(std::string_view(header, 8)));
  char footer[4];
  put_u32(footer, masked_crc32c(record));
  bool ok;
  if (impl_->gz) {
    ok = gzwrite(impl_->gz, header, 12) == 12 &&
         (record.empty() ||
          gzwrite(impl_->gz, record.data(), static_cast<unsigned>(record.size())) ==
              static_cast<int>(record.size())) &&
         gzwrite(impl_->gz, footer, 4) == 4;
  } else {
    ok = std::fwrite(header, 1, 12, impl_->file) == 12 &&
         std::fwrite(record.data(), 1, record.size(), impl_->file) == record.size() &&
         std::fwrite(footer, 1, 4, impl_->file) == 4;
  }
  if (!ok) throw Error("write failed on TFRecord file '" + path_ + "'", {}, kExitRuntime);
}

void TFRecordWriter::flush() {
  if (impl_->gz) gzflush(impl_->gz, Z_SYNC_FLUSH);
  if (impl_->file) std::fflush(impl_->file);
}

void TFRecordWriter::close() {
  if (!impl_) return;
  if (impl_->gz) gzclose(impl_->gz);
  if (impl_->file) std::fclose(impl_->file);
  impl_->gz = nullptr;
  impl_->file = nullptr;
}

struct TFRecordReader::Impl {
  gzFile gz = nullptr;
  uint64_t file_size = 0;  ///< of the file on disk (the data's size when it is not compressed)
};

TFRecordReader::TFRecordReader(const std::string& path)
    : impl_(std::make_unique<Impl>()), path_(path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec))
    throw Error("TFRecord file '" + path + "' is not a regular file");
  impl_->gz = gzopen(path.c_str(), "rb");  // reads plain files transparently
  if (!impl_->gz) throw Error("cannot read TFRecord file '" + path + "': " + std::strerror(errno));
  impl_->file_size = std::filesystem::file_size(path, ec);
  gzbuffer(impl_->gz, 1 << 17);
}

TFRecordReader::~TFRecordReader() {
  if (impl_->gz) gzclose(impl_->gz);
}

bool TFRecordReader::read(std::string& record) {
  auto fail = [&](const std::string& what) {
    throw Error("TFRecord file '" + path_ + "': record " + std::to_string(index_) + " at byte " +
                std::to_string(offset_) + ": " + what);
  };
  auto read_exact = [&](char* dst, size_t n) -> size_t {
    size_t got = 0;
    while (got < n) {
      int r = gzread(impl_->gz, dst + got, static_cast<unsigned>(n - got));
      if (r < 0) {
        int err = 0;
        const char* msg = gzerror(impl_->gz, &err);
        fail(std::string("corrupt compressed data (") + (msg ? msg : "zlib error") + ")");
      }
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    return got;
  };
  char header[12];
  size_t got = read_exact(header, 12);
  if (got == 0) return false;
  if (got < 12) fail("truncated header (" + std::to_string(got) + " of 12 bytes)");
  uint64_t length = get_u64(header);
  if (get_u32(header + 8) != masked_crc32c(std::string_view(header, 8)))
    fail("length CRC mismatch (corrupt record header)");
  if (length > (uint64_t{1} << 34)) fail("implausible record length " + std::to_string(length));
  // A length field is only a claim: an uncompressed file must hold the record, and any file is
  // read in steps of at most 16 MiB, so a corrupt length costs what the file holds, not 3 GiB.
  const uint64_t after_header = offset_ + 12;
  if (gzdirect(impl_->gz) && impl_->file_size >= after_header &&
      length + 4 > impl_->file_size - after_header)
    fail("the record claims " + std::to_string(length) + " bytes, the file holds " +
         std::to_string(impl_->file_size - after_header) +
         " more (truncated, or a corrupt length)");
  record.clear();
  for (uint64_t done = 0; done < length;) {
    const uint64_t step = std::min<uint64_t>(length - done, uint64_t{16} << 20);
    record.resize(done + step);
    const size_t got = read_exact(record.data() + done, step);
    done += got;
    if (got < step)
      fail("truncated data (the record claims " + std::to_string(length) + " bytes, " +
           std::to_string(done) + " follow)");
  }
  char footer[4];
  if (read_exact(footer, 4) < 4) fail("truncated data CRC");
  if (get_u32(footer) != masked_crc32c(record)) fail("data CRC mismatch (corrupt record)");
  offset_ += 16 + length;
  ++index_;
  return true;
}

}  // namespace ktf
