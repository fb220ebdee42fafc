// CRC-32 (IEEE 802.3, reflected, the same value as zlib.crc32), slicing-by-8.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

namespace agentdb {

namespace detail {
struct Crc32Tables {
  std::array<std::array<uint32_t, 256>, 8> t{};
  Crc32Tables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
  }
};
inline const Crc32Tables& crc_tables() {
  static const Crc32Tables tables;
  return tables;
}
}  // namespace detail

// Continue a CRC: pass the previous result as `crc` (0 to start).
inline uint32_t crc32_update(uint32_t crc, const void* data, std::size_t n) {
  const auto& t = detail::crc_tables().t;
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  while (n >= 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= crc;
    crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
          t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) crc = t[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

// Reads a little-endian value of type T at byte offset `off` (any alignment).
template <class T>
inline T read_le(const unsigned char* buf, std::size_t off) {
  T v;
  std::memcpy(&v, buf + off, sizeof(T));
  return v;
}

// Writes a file atomically with a CRC-32 trailer: bytes go to `<path>.tmp`, `commit()` appends
// the CRC of everything written, flushes and renames over `path`. Destroying an uncommitted
// writer removes the temp file, so a failed save never leaves a half-written file behind.
class CrcFileWriter {
 public:
  explicit CrcFileWriter(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
    fp_ = std::fopen(tmp_.c_str(), "wb");
    if (!fp_) throw std::runtime_error("cannot open '" + tmp_ + "' for writing");
  }
  CrcFileWriter(const CrcFileWriter&) = delete;
  CrcFileWriter& operator=(const CrcFileWriter&) = delete;
  ~CrcFileWriter() {
    if (fp_) {
      std::fclose(fp_);
      std::remove(tmp_.c_str());
    }
  }
  void put(const void* p, std::size_t bytes) {
    if (!ok_ || bytes == 0) return;
    crc_ = crc32_update(crc_, p, bytes);
    ok_ = std::fwrite(p, 1, bytes, fp_) == bytes;
  }
  void commit() {
    uint32_t final_crc = crc_;
    if (ok_) ok_ = std::fwrite(&final_crc, 1, 4, fp_) == 4;
    ok_ = (std::fflush(fp_) == 0) && ok_;
    ok_ = (std::fclose(fp_) == 0) && ok_;
    fp_ = nullptr;
    if (!ok_) {
      std::remove(tmp_.c_str());
      throw std::runtime_error("failed writing '" + path_ + "' (disk full?)");
    }
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      std::remove(tmp_.c_str());
      throw std::runtime_error("cannot rename '" + tmp_ + "' to '" + path_ + "'");
    }
  }

 private:
  std::string path_, tmp_;
  FILE* fp_ = nullptr;
  uint32_t crc_ = 0;
  bool ok_ = true;
};

}  // namespace agentdb
