// The sectioned index file (format version 2): a one-page header holding the parameters and a
// table of sections, then each section starting on a page boundary with its own CRC-32.
//
//   [0, 4096)  header: magic "AGDBHNSW", version, parameters (same offsets as version 1),
//              the section count (u32 at 80) and the file size (u64 at 84), the section table
//              at byte 128 (32 bytes per entry: id, crc32, offset, bytes), and the CRC-32 of
//              bytes [0, 4092) in the last four bytes
//   sections   in table order, each starting on a page boundary, zero bytes between them and
//              after the last one up to the next page (so every byte of the file is checked)
//
// Page alignment lets a reader map the file and use the sections in place (open without
// loading); per-section checksums let it check the small sections at open and the large ones
// when it first copies them, or on request. Writes go to `<path>.tmp`, are flushed to disk
// (fsync) and renamed over `path`, so a crash leaves the old file or the new one, never half.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "crc32.hpp"

namespace agentdb {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kSectionTableOffset = 128;
constexpr std::size_t kSectionEntryBytes = 32;
constexpr std::size_t kMaxSections = (kPage - 4 - kSectionTableOffset) / kSectionEntryBytes;

struct FileSection {
  uint32_t id = 0;
  uint32_t crc = 0;
  uint64_t offset = 0;
  uint64_t bytes = 0;
};

// Section ids of an HNSW index file.
enum SectionId : uint32_t {
  kSecLabels = 1,       // int64 per slot
  kSecDeleted = 2,      // uint8 per slot (1 = tombstone)
  kSecNorms = 3,        // float32 per slot (cosine: the norm the vector was divided by)
  kSecLevels = 4,       // int32 per slot
  kSecLinks0 = 5,       // (M0 + 1) uint32 per slot: [count, neighbours...]
  kSecUpperOffsets = 6, // uint64 per slot + 1: first word of each slot's upper lists
  kSecUpperWords = 7,   // the upper lists, level 1 up, (M + 1) uint32 per level
  kSecVectors = 8,      // float32, dim per slot (cosine: unit length)
  kSecHalf = 9,         // binary16 copy (precision "mixed")
  kSecCodes = 10,       // int8 codes, dim per slot (precision "int8")
  kSecScales = 11,      // float32 per slot, the codes' scales
};

// Writes a sectioned file: sections are streamed (begin / put / end), each padded to a page;
// commit() writes the header last, syncs and renames. An uncommitted writer removes its temp.
class SectionFileWriter {
 public:
  explicit SectionFileWriter(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
    fp_ = std::fopen(tmp_.c_str(), "wb");
    if (!fp_) throw std::runtime_error("cannot open '" + tmp_ + "' for writing");
    static const unsigned char zeros[kPage] = {0};
    raw(zeros, kPage);
  }
  SectionFileWriter(const SectionFileWriter&) = delete;
  SectionFileWriter& operator=(const SectionFileWriter&) = delete;
  ~SectionFileWriter() {
    if (fp_) {
      std::fclose(fp_);
      std::remove(tmp_.c_str());
    }
  }

  void begin(uint32_t id) {
    if (sections_.size() >= kMaxSections) throw std::logic_error("too many sections");
    FileSection s;
    s.id = id;
    s.offset = pos_;
    sections_.push_back(s);
  }
  void put(const void* p, std::size_t bytes) {
    if (bytes == 0) return;
    FileSection& s = sections_.back();
    s.crc = crc32_update(s.crc, p, bytes);
    s.bytes += bytes;
    raw(p, bytes);
  }
  void end() {
    static const unsigned char zeros[kPage] = {0};
    std::size_t pad = (kPage - pos_ % kPage) % kPage;
    raw(zeros, pad);
  }
  void section(uint32_t id, const void* p, std::size_t bytes) {
    begin(id);
    put(p, bytes);
    end();
  }

  // `header` is kPage bytes with the parameters filled in; the table and CRC are added here.
  void commit(unsigned char* header) {
    uint32_t count = static_cast<uint32_t>(sections_.size());
    std::memcpy(header + 80, &count, 4);
    std::memcpy(header + 84, &pos_, 8);  // the file's size
    for (std::size_t i = 0; i < sections_.size(); ++i) {
      unsigned char* e = header + kSectionTableOffset + i * kSectionEntryBytes;
      std::memset(e, 0, kSectionEntryBytes);
      std::memcpy(e, &sections_[i].id, 4);
      std::memcpy(e + 4, &sections_[i].crc, 4);
      std::memcpy(e + 8, &sections_[i].offset, 8);
      std::memcpy(e + 16, &sections_[i].bytes, 8);
    }
    uint32_t crc = crc32_update(0, header, kPage - 4);
    std::memcpy(header + kPage - 4, &crc, 4);
    if (ok_) ok_ = std::fseek(fp_, 0, SEEK_SET) == 0;
    if (ok_) ok_ = std::fwrite(header, 1, kPage, fp_) == kPage;
    commit_temp_file(fp_, ok_, tmp_, path_);
  }

 private:
  void raw(const void* p, std::size_t bytes) {
    if (!ok_ || bytes == 0) return;
    ok_ = std::fwrite(p, 1, bytes, fp_) == bytes;
    pos_ += bytes;
  }

  std::string path_, tmp_;
  FILE* fp_ = nullptr;
  uint64_t pos_ = 0;
  bool ok_ = true;
  std::vector<FileSection> sections_;
};

// Reads and checks the section table of a version-2 header (`where` names the file in
// errors): the header CRC, the file size, sections in order on page boundaries, and zero
// padding between them (the padding is not covered by the sections' CRCs).
template <class Error>
std::vector<FileSection> read_section_table(const unsigned char* buf, std::size_t size,
                                            const std::string& where) {
  uint32_t crc = read_le<uint32_t>(buf, kPage - 4);
  if (crc32_update(0, buf, kPage - 4) != crc)
    throw Error(where + " failed its checksum: header checksum mismatch (corrupt file)");
  uint64_t expected = read_le<uint64_t>(buf, 84);
  if (size < expected)
    throw Error(where + " is truncated: " + std::to_string(size) + " bytes, expected " +
                std::to_string(expected));
  if (size > expected)
    throw Error(where + " is corrupt: " + std::to_string(size - expected) +
                " unexpected trailing bytes");
  uint32_t n = read_le<uint32_t>(buf, 80);
  if (n > kMaxSections) throw Error(where + " has a corrupt section table");
  std::vector<FileSection> out(n);
  auto zero = [&](uint64_t lo, uint64_t hi) {
    for (uint64_t i = lo; i < hi; ++i)
      if (buf[i]) throw Error(where + " is corrupt: non-zero padding at byte " + std::to_string(i));
  };
  uint64_t cursor = kPage;
  for (uint32_t i = 0; i < n; ++i) {
    std::size_t e = kSectionTableOffset + i * kSectionEntryBytes;
    out[i].id = read_le<uint32_t>(buf, e);
    out[i].crc = read_le<uint32_t>(buf, e + 4);
    out[i].offset = read_le<uint64_t>(buf, e + 8);
    out[i].bytes = read_le<uint64_t>(buf, e + 16);
    const FileSection& s = out[i];
    uint64_t start = (cursor + kPage - 1) / kPage * kPage;
    if (s.offset != start || s.bytes > size - std::min<uint64_t>(size, s.offset))
      throw Error(where + " has a corrupt section table (section " + std::to_string(s.id) + ")");
    zero(cursor, s.offset);
    cursor = s.offset + s.bytes;
    for (uint32_t j = 0; j < i; ++j)
      if (out[j].id == s.id)
        throw Error(where + " has a corrupt section table (section " + std::to_string(s.id) +
                    " twice)");
  }
  if ((cursor + kPage - 1) / kPage * kPage != size)
    throw Error(where + " has a corrupt section table (file size)");
  zero(cursor, size);
  return out;
}

}  // namespace agentdb
