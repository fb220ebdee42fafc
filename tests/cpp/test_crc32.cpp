// CRC-32 (cpp/crc32.hpp): the reflected IEEE 802.3 polynomial 0xEDB88320 (zlib.crc32), checked
// against published check values and a bitwise reference on every length/alignment the
// slicing-by-8 loop distinguishes; incremental updates; the atomic CrcFileWriter.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "crc32.hpp"
#include "util.hpp"

using namespace agentdb;

namespace {

uint32_t crc_bitwise(const unsigned char* p, std::size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return ~c;
}

uint32_t crc_of(const std::string& s) { return crc32_update(0, s.data(), s.size()); }

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

bool exists(const std::string& path) { return std::ifstream(path).good(); }

}  // namespace

TEST_CASE(crc32, check_values) {
  CHECK_EQ(crc_of("123456789"), 0xCBF43926u);  // the standard check value
  CHECK_EQ(crc_of(""), 0x00000000u);
  CHECK_EQ(crc_of("a"), 0xE8B7BE43u);
  CHECK_EQ(crc_of("abc"), 0x352441C2u);
  CHECK_EQ(crc_of("The quick brown fox jumps over the lazy dog"), 0x414FA339u);
  std::string zeros(32, '\0');
  CHECK_EQ(crc_of(zeros), 0x190A55ADu);
  std::string ones(32, '\xFF');
  CHECK_EQ(crc_of(ones), 0xFF6CAB0Bu);
}

TEST_CASE(crc32, matches_bitwise_reference) {
  std::mt19937_64 g(31);
  std::vector<unsigned char> buf(4096 + 16);
  for (auto& b : buf) b = static_cast<unsigned char>(g());
  for (std::size_t off = 0; off < 8; ++off)
    for (std::size_t n = 0; n < 80; ++n) {
      SCOPE("offset=", off, " length=", n);
      CHECK_EQ(crc32_update(0, buf.data() + off, n), crc_bitwise(buf.data() + off, n));
    }
  CHECK_EQ(crc32_update(0, buf.data() + 3, 4096), crc_bitwise(buf.data() + 3, 4096));
}

TEST_CASE(crc32, incremental_and_combined_equal_one_shot) {
  std::mt19937_64 g(32);
  std::vector<unsigned char> buf(1000);
  for (auto& b : buf) b = static_cast<unsigned char>(g());
  const uint32_t whole = crc32_update(0, buf.data(), buf.size());
  for (std::size_t cut : {0, 1, 7, 8, 9, 500, 999, 1000}) {
    SCOPE("cut=", cut);
    uint32_t c = crc32_update(0, buf.data(), cut);
    CHECK_EQ(crc32_update(c, buf.data() + cut, buf.size() - cut), whole);
    // and from the two halves' own CRCs (what parallel checksumming relies on)
    uint32_t rest = crc32_update(0, buf.data() + cut, buf.size() - cut);
    CHECK_EQ(crc32_combine(c, rest, buf.size() - cut), whole);
  }
  uint32_t c = 0;  // byte by byte
  for (unsigned char b : buf) c = crc32_update(c, &b, 1);
  CHECK_EQ(c, whole);
}

TEST_CASE(crc32, parallel_equals_one_shot) {
  std::mt19937_64 g(33);
  // pieces of >= 16 MiB over up to 3 threads, with an uneven last piece
  std::vector<unsigned char> big((std::size_t{50} << 20) + 12345);
  for (std::size_t i = 0; i < big.size(); i += 8) {
    uint64_t r = g();
    std::memcpy(big.data() + i, &r, std::min<std::size_t>(8, big.size() - i));
  }
  const uint32_t one = crc32_update(0, big.data(), big.size());
  for (std::size_t threads : {0, 1, 2, 3, 7}) {
    SCOPE("threads=", threads);
    CHECK_EQ(crc32_parallel(big.data(), big.size(), threads), one);
  }
  CHECK_EQ(crc32_parallel(big.data(), 5, 3), crc32_update(0, big.data(), 5));
}

TEST_CASE(crc32, read_le) {
  const unsigned char b[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09};
  CHECK_EQ(read_le<uint32_t>(b, 1), 0x05040302u);  // unaligned
  CHECK_EQ(read_le<uint64_t>(b, 0), 0x0807060504030201ull);
  CHECK_EQ(read_le<uint16_t>(b, 7), 0x0908);
}

TEST_CASE(crc32, file_writer_commits_atomically) {
  const std::string path = testutil::temp_path("crc_writer.bin");
  std::remove(path.c_str());
  {
    CrcFileWriter w(path);
    w.put("1234", 4);
    w.put("56789", 5);
    w.put(nullptr, 0);
    CHECK(!exists(path));  // nothing at the final name before commit
    CHECK(exists(path + ".tmp"));
    w.commit();
  }
  CHECK(!exists(path + ".tmp"));
  std::string data = slurp(path);
  REQUIRE(data.size() == 13);
  CHECK_EQ(data.substr(0, 9), std::string("123456789"));
  CHECK_EQ(read_le<uint32_t>(reinterpret_cast<const unsigned char*>(data.data()), 9),
           0xCBF43926u);  // trailer: CRC of everything before it
  {
    CrcFileWriter w(path);  // an uncommitted writer leaves the old file alone
    w.put("garbage", 7);
  }
  CHECK(!exists(path + ".tmp"));
  CHECK_EQ(slurp(path), data);
  std::remove(path.c_str());
  CHECK_THROWS(CrcFileWriter("/nonexistent-dir/x/y.bin"), std::runtime_error);
}
