#include <gtest/gtest.h>
#include <ktf/error.h>
#include <ktf/tfrecord.h>
#include <zlib.h>

#include <fstream>
#include <sstream>

#include "plugins_fixture.h"

namespace {

TEST(TFRecord, Crc32cKnownValue) {
  EXPECT_EQ(ktf::crc32c("123456789"), 0xE3069283u);  // the CRC-32C check value
}

void round_trip(bool gzip) {
  std::string path = ktf::test::scratch_dir(gzip ? "tfr_gz" : "tfr_plain") + "/r.tfrecord";
  using namespace std::string_literals;  // "...\0..."s keeps the bytes after the NUL
  std::vector<std::string> records{"", "a", std::string(100000, 'x'), "last\0record"s};
  ASSERT_EQ(records.back().size(), 11u);
  {
    ktf::TFRecordWriter w(path, gzip);
    for (const auto& r : records) w.write(r);
  }
  ktf::TFRecordReader reader(path);
  std::string rec;
  for (const auto& expected : records) {
    ASSERT_TRUE(reader.read(rec));
    EXPECT_EQ(rec, expected);
  }
  EXPECT_FALSE(reader.read(rec));
  EXPECT_EQ(reader.records_read(), 4);
}

TEST(TFRecord, RoundTripPlain) { round_trip(false); }
TEST(TFRecord, RoundTripGzip) { round_trip(true); }

TEST(TFRecord, CorruptDataNamesFileRecordAndOffset) {
  std::string path = ktf::test::scratch_dir("tfr_corrupt") + "/c.tfrecord";
  {
    ktf::TFRecordWriter w(path);
    w.write("first");
    w.write("second");
  }
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(16 + 5 + 12 + 2);  // inside the second record's data
  f.put('X');
  f.close();
  ktf::TFRecordReader reader(path);
  std::string rec;
  ASSERT_TRUE(reader.read(rec));
  try {
    reader.read(rec);
    FAIL();
  } catch (const ktf::Error& e) {
    EXPECT_EQ(
        std::string(e.what()),
        "TFRecord file '" + path + "': record 1 at byte 21: data CRC mismatch (corrupt record)");
  }
}

TEST(TFRecord, TruncatedFile) {
  std::string path = ktf::test::scratch_dir("tfr_trunc") + "/t.tfrecord";
  {
    ktf::TFRecordWriter w(path);
    w.write("some data");
  }
  std::filesystem::resize_file(path, 14);
  ktf::TFRecordReader reader(path);
  std::string rec;
  try {
    reader.read(rec);
    FAIL();
  } catch (const ktf::Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "TFRecord file '" + path +
                  "': record 0 at byte 0: the record claims 9 bytes, the file holds 2 more "
                  "(truncated, or a corrupt length)");
  }
}

TEST(TFRecord, ALengthFieldClaimingGigabytesReadsOnlyWhatTheFileHolds) {
  // 76 bytes whose first header claims 3 GiB (with a valid header CRC): refused at once, plain
  // or compressed, without allocating the claim.
  const std::string dir = ktf::test::scratch_dir("tfr_bomb");
  std::string header(12, '\0');
  const uint64_t claim = uint64_t{3} << 30;
  for (int i = 0; i < 8; ++i) header[i] = static_cast<char>((claim >> (8 * i)) & 0xff);
  const uint32_t crc = ktf::masked_crc32c(std::string_view(header.data(), 8));
  for (int i = 0; i < 4; ++i) header[8 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
  const std::string bytes = header + std::string(64, 'z');
  for (bool gz : {false, true}) {
    const std::string path = dir + (gz ? "/bomb.tfrecord.gz" : "/bomb.tfrecord");
    if (gz) {
      gzFile f = gzopen(path.c_str(), "wb");
      gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
      gzclose(f);
    } else {
      std::ofstream(path, std::ios::binary) << bytes;
    }
    ktf::TFRecordReader reader(path);
    std::string rec;
    try {
      reader.read(rec);
      ADD_FAILURE() << path << " was read";
    } catch (const ktf::Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(gz ? "truncated data (the record claims 3221225472 bytes, 64 follow)"
                          : "the record claims 3221225472 bytes, the file holds 64 more"),
                std::string::npos)
          << m;
    }
    EXPECT_LT(rec.capacity(), size_t{64} << 20) << "allocated the claimed length";
  }
}

}  // namespace
