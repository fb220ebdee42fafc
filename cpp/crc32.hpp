// CRC-32 (IEEE 802.3, reflected, the same value as zlib.crc32), slicing-by-8.
#pragma once
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <unistd.h>
#endif

#include "parallel.hpp"

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

namespace detail {
// (GF(2) 32x32 matrix) x vector, and the square of such a matrix (zlib's crc32_combine method).
inline uint32_t gf2_times(const uint32_t* mat, uint32_t vec) {
  uint32_t sum = 0;
  for (; vec; vec >>= 1, ++mat)
    if (vec & 1) sum ^= *mat;
  return sum;
}
inline void gf2_square(uint32_t* square, const uint32_t* mat) {
  for (int n = 0; n < 32; ++n) square[n] = gf2_times(mat, mat[n]);
}
}  // namespace detail

// The CRC of A followed by B from crc(A), crc(B) and len(B): what lets a long buffer be
// checksummed in parallel pieces.
inline uint32_t crc32_combine(uint32_t crc1, uint32_t crc2, uint64_t len2) {
  if (len2 == 0) return crc1;
  uint32_t even[32], odd[32];
  odd[0] = 0xEDB88320u;  // the operator for one zero bit
  uint32_t row = 1;
  for (int n = 1; n < 32; ++n, row <<= 1) odd[n] = row;
  detail::gf2_square(even, odd);  // two zero bits
  detail::gf2_square(odd, even);  // four
  do {  // apply len2 zero bytes to crc1
    detail::gf2_square(even, odd);
    if (len2 & 1) crc1 = detail::gf2_times(even, crc1);
    len2 >>= 1;
    if (len2 == 0) break;
    detail::gf2_square(odd, even);
    if (len2 & 1) crc1 = detail::gf2_times(odd, crc1);
    len2 >>= 1;
  } while (len2 != 0);
  return crc1 ^ crc2;
}

// The CRC of n bytes, in up to `threads` pieces of at least 16 MiB checksummed in parallel
// and combined (0 = all cores): the same value as crc32_update(0, data, n).
inline uint32_t crc32_parallel(const void* data, std::size_t n, std::size_t threads) {
  constexpr std::size_t kMinPiece = std::size_t{16} << 20;
  std::size_t pieces =
      std::max<std::size_t>(1, std::min(resolve_threads(threads), n / kMinPiece));
  if (pieces <= 1) return crc32_update(0, data, n);
  std::size_t per = (n + pieces - 1) / pieces;
  std::vector<uint32_t> part(pieces);
  const auto* p = static_cast<const unsigned char*>(data);
  parallel_for(pieces, pieces, [&](std::size_t i, std::size_t) {
    std::size_t lo = i * per, hi = std::min(n, lo + per);
    part[i] = crc32_update(0, p + lo, hi - lo);
  });
  uint32_t crc = part[0];
  for (std::size_t i = 1; i < pieces; ++i)
    crc = crc32_combine(crc, part[i], std::min(n, (i + 1) * per) - i * per);
  return crc;
}

// The CRC of each of several buffers (as crc32_update(0, ...) gives), all of them cut into
// 4 MiB chunks checksummed together over `threads` (0 = all cores) and combined per buffer:
// many mid-sized buffers use every core, where crc32_parallel would take them one at a time.
inline std::vector<uint32_t> crc32_each(const std::vector<std::pair<const void*, std::size_t>>& bufs,
                                        std::size_t threads) {
  constexpr std::size_t kChunk = std::size_t{4} << 20;
  struct Chunk {
    std::size_t buf, lo, len;
  };
  std::vector<Chunk> chunks;
  for (std::size_t b = 0; b < bufs.size(); ++b)
    for (std::size_t lo = 0; lo < bufs[b].second; lo += kChunk)
      chunks.push_back({b, lo, std::min(kChunk, bufs[b].second - lo)});
  std::vector<uint32_t> part(chunks.size());
  parallel_for(chunks.size(), threads, [&](std::size_t i, std::size_t) {
    const auto* p = static_cast<const unsigned char*>(bufs[chunks[i].buf].first);
    part[i] = crc32_update(0, p + chunks[i].lo, chunks[i].len);
  });
  std::vector<uint32_t> out(bufs.size(), 0);
  std::vector<bool> started(bufs.size(), false);
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const std::size_t b = chunks[i].buf;
    out[b] = started[b] ? crc32_combine(out[b], part[i], chunks[i].len) : part[i];
    started[b] = true;
  }
  return out;
}

// Reads a little-endian value of type T at byte offset `off` (any alignment).
template <class T>
inline T read_le(const unsigned char* buf, std::size_t off) {
  T v;
  std::memcpy(&v, buf + off, sizeof(T));
  return v;
}

// Finishes an atomic write: flushes `fp`, syncs it to disk, closes it, renames `tmp` over
// `path` and syncs the directory (so the rename survives a power loss too). `ok` is false
// when an earlier write failed. On any failure `tmp` is removed and runtime_error thrown.
inline void commit_temp_file(FILE*& fp, bool ok, const std::string& tmp,
                             const std::string& path) {
  ok = (std::fflush(fp) == 0) && ok;
#if defined(__unix__) || defined(__APPLE__)
  ok = ok && ::fsync(fileno(fp)) == 0;
#endif
  ok = (std::fclose(fp) == 0) && ok;
  fp = nullptr;
  if (!ok) {
    std::remove(tmp.c_str());
    throw std::runtime_error("failed writing '" + path + "' (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error("cannot rename '" + tmp + "' to '" + path + "'");
  }
#if defined(__unix__) || defined(__APPLE__)
  std::size_t slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
#endif
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
    commit_temp_file(fp_, ok_, tmp_, path_);
  }

 private:
  std::string path_, tmp_;
  FILE* fp_ = nullptr;
  uint32_t crc_ = 0;
  bool ok_ = true;
};

}  // namespace agentdb
