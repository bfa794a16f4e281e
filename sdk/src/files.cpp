// Reading data files (ktf/files.h).
#include "ktf/files.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "ktf/error.h"
#include "ktf/memory.h"

namespace ktf {

std::string read_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw Error(what + " '" + path + "' not found");
  if (std::filesystem::is_directory(path, ec))
    throw Error(what + " '" + path + "' is a directory, expected a file");
  // A file larger than memory (or a GZIP file inflating to more) is refused, not read until the
  // kernel kills the process.
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec) check_memory(size, "reading " + what + " '" + path + "'");
  gzFile gz = gzopen(path.c_str(), "rb");  // plain files are read transparently
  if (!gz) throw Error("cannot read " + what + " '" + path + "': " + std::strerror(errno));
  gzbuffer(gz, 1 << 18);
  std::string out;
  char buf[1 << 16];
  size_t checked = size_t{256} << 20;
  for (;;) {
    if (out.size() >= checked) {
      checked *= 2;
      try {
        check_memory(checked, "decompressing " + what + " '" + path + "' (" +
                                  size_text(out.size()) + " so far)");
      } catch (...) {
        gzclose(gz);
        throw;
      }
    }
    int n = gzread(gz, buf, sizeof buf);
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(gz, &err);
      gzclose(gz);
      throw Error(what + " '" + path + "': corrupt compressed data after " +
                  std::to_string(out.size()) + " bytes (" + msg + ")");
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  int err = 0;
  const char* msg = gzerror(gz, &err);
  if (err != Z_OK) {
    std::string m = msg ? msg : "zlib error";
    gzclose(gz);
    throw Error(what + " '" + path + "': corrupt compressed data after " +
                std::to_string(out.size()) + " bytes (" + m + ")");
  }
  gzclose(gz);
  return out;
}

namespace {

struct IdxType {
  torch::ScalarType dtype;
  int size;
};

bool idx_type(unsigned code, IdxType& t) {
  switch (code) {
    case 0x08:
      t = {torch::kUInt8, 1};
      return true;
    case 0x09:
      t = {torch::kInt8, 1};
      return true;
    case 0x0B:
      t = {torch::kInt16, 2};
      return true;
    case 0x0C:
      t = {torch::kInt32, 4};
      return true;
    case 0x0D:
      t = {torch::kFloat32, 4};
      return true;
    case 0x0E:
      t = {torch::kFloat64, 8};
      return true;
    default:
      return false;
  }
}

char hex_digit(unsigned v) { return "0123456789abcdef"[v & 15]; }

}  // namespace

torch::Tensor read_idx(const std::string& path) {
  std::string data = read_file(path, "IDX file");
  auto fail = [&](const std::string& what) { throw Error("IDX file '" + path + "': " + what); };
  if (data.size() < 4) fail("truncated header (" + std::to_string(data.size()) + " bytes)");
  auto byte = [&](size_t i) { return static_cast<unsigned char>(data[i]); };
  IdxType type{};
  if (byte(0) != 0 || byte(1) != 0 || !idx_type(byte(2), type) || byte(3) < 1 || byte(3) > 8) {
    std::string magic = "0x";
    for (int i = 0; i < 4; ++i) {
      magic += hex_digit(byte(i) >> 4);
      magic += hex_digit(byte(i));
    }
    fail("bad magic number " + magic +
         " (not an IDX file: expected 0x0000TTDD with type TT in 08,09,0b,0c,0d,0e and 1..8 "
         "dimensions DD)");
  }
  int ndim = byte(3);
  size_t header = 4 + 4 * static_cast<size_t>(ndim);
  if (data.size() < header)
    fail("truncated header (" + std::to_string(data.size()) + " of " + std::to_string(header) +
         " bytes)");
  std::vector<int64_t> dims;
  uint64_t count = 1, expected = 0;
  bool overflow = false;
  for (int d = 0; d < ndim; ++d) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | byte(4 + 4 * d + i);
    dims.push_back(v);
    overflow |= __builtin_mul_overflow(count, uint64_t{v}, &count);
  }
  overflow |= __builtin_mul_overflow(count, static_cast<uint64_t>(type.size), &expected);
  if (overflow) {
    std::string shape;
    for (size_t d = 0; d < dims.size(); ++d) shape += (d ? " x " : "") + std::to_string(dims[d]);
    fail("the header declares dimensions " + shape +
         ", more data than any file holds (their product overflows 64 bits)");
  }
  uint64_t have = data.size() - header;
  if (have < expected)
    fail("truncated: the header declares " + std::to_string(expected) +
         " bytes of data but the file has " + std::to_string(have) + " (at byte offset " +
         std::to_string(data.size()) + ")");
  if (have > expected)
    fail(std::to_string(have - expected) +
         " unexpected trailing bytes after the data (byte offset " +
         std::to_string(header + expected) + ")");
  // Found by fuzz_idx (fuzz/regressions/fuzz_idx): a dimension of 0 gave an empty tensor whose
  // null data pointer was passed to memcpy.
  if (count == 0) fail("the header declares a dimension of 0: the file holds no data");
  auto out = torch::empty(dims, torch::TensorOptions().dtype(type.dtype));
  const char* src = data.data() + header;
  if (type.size == 1) {
    std::memcpy(out.data_ptr(), src, expected);
  } else {
    // IDX is big-endian.
    auto* dst = static_cast<unsigned char*>(out.data_ptr());
    for (uint64_t i = 0; i < count; ++i)
      for (int b = 0; b < type.size; ++b)
        dst[i * type.size + b] = static_cast<unsigned char>(src[i * type.size + type.size - 1 - b]);
  }
  return out;
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace ktf
