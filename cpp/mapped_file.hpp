// A whole file as read-only bytes: memory-mapped where the OS allows (no copy, no zero-filled
// buffer the size of the file, pages shared with the page cache), else read into memory.
// Version-1 loaders copy what they keep, so the mapping lives only for the duration of a load;
// a version-2 index keeps it (shared_ptr) and reads its sections in place until its first write.
#pragma once
#include <cerrno>
#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define AGENTDB_HAVE_MMAP 1
#endif

namespace agentdb {

class MappedFile {
 public:
  // Opens `path`; on failure `error()` is the errno (ENOENT for a missing file) and the
  // contents are empty.
  explicit MappedFile(const std::string& path) {
#if defined(AGENTDB_HAVE_MMAP)
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      err_ = errno;
      return;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      err_ = errno;
      ::close(fd);
      return;
    }
    if (!S_ISREG(st.st_mode)) {  // a directory, a pipe...: not an index file
      err_ = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
      ::close(fd);
      return;
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p != MAP_FAILED) {
        map_ = p;
        data_ = static_cast<const unsigned char*>(p);
#if defined(MADV_SEQUENTIAL)
        ::madvise(p, size_, MADV_SEQUENTIAL);  // read ahead: the loader walks it in order
#endif
        fd_ = fd;  // kept for read_at()
        return;
      }
    }
    ::close(fd);
    if (size_ == 0) return;
#endif
    read_whole(path);
  }
  ~MappedFile() {
#if defined(AGENTDB_HAVE_MMAP)
    if (map_) ::munmap(map_, size_);
    if (fd_ >= 0) ::close(fd_);
#endif
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  enum class Advice { Normal, Random, WillNeed, DontNeed };
  // Tells the kernel how a range will be read (no-op without mmap); `p` points into data().
  void advise(const unsigned char* p, std::size_t bytes, Advice advice) const {
#if defined(AGENTDB_HAVE_MMAP)
    if (!map_ || bytes == 0) return;
    constexpr std::size_t kPageSize = 4096;
    auto lo = reinterpret_cast<std::uintptr_t>(p) & ~(kPageSize - 1);
    auto hi = reinterpret_cast<std::uintptr_t>(p) + bytes;
    // DontNeed on a read-only file mapping only unmaps this process's pages (the page cache
    // keeps them; the next read faults them back in): its resident set shrinks
    int how = advice == Advice::Random     ? MADV_RANDOM
              : advice == Advice::WillNeed ? MADV_WILLNEED
              : advice == Advice::DontNeed ? MADV_DONTNEED
                                           : MADV_NORMAL;
    ::madvise(reinterpret_cast<void*>(lo), hi - lo, how);
#else
    (void)p, (void)bytes, (void)advice;
#endif
  }
  // Bytes of the mapping in this process's resident set (the Rss of its /proc/self/smaps
  // entry: pages this process has touched, wherever else they are shared); the whole size
  // when the file was read into memory instead of mapped.
  std::size_t resident_bytes() const {
#if defined(AGENTDB_HAVE_MMAP) && defined(__linux__)
    if (!map_) return buf_.size();
    FILE* fp = std::fopen("/proc/self/smaps", "r");
    if (!fp) return size_;
    // madvise on parts of the mapping splits it into several entries: add up each one
    // inside [map_, map_ + size_)
    const auto lo = reinterpret_cast<unsigned long>(map_), hi = lo + ((size_ + 4095) & ~4095ul);
    char line[512];
    bool in = false;
    std::size_t kb = 0;
    while (std::fgets(line, sizeof line, fp)) {
      unsigned long a = 0, b = 0;
      if (std::sscanf(line, "%lx-%lx ", &a, &b) == 2 && std::strchr(line, ' ') &&
          std::strchr(line, '-') < std::strchr(line, ' ')) {
        in = a >= lo && b <= hi;
      } else if (in && std::strncmp(line, "Rss:", 4) == 0) {
        kb += std::strtoull(line + 4, nullptr, 10);
      }
    }
    std::fclose(fp);
    return std::min(size_, kb * 1024);
#else
    return size_;
#endif
  }

  // Copies bytes [offset, offset + bytes) of the file into `dst` without touching the mapping
  // (pread: the page cache serves it, this process's resident set does not grow).
  void read_at(void* dst, std::size_t bytes, std::size_t offset) const {
#if defined(AGENTDB_HAVE_MMAP)
    if (fd_ >= 0) {
      auto* out = static_cast<unsigned char*>(dst);
      while (bytes > 0) {
        ssize_t got = ::pread(fd_, out, bytes, static_cast<off_t>(offset));
        if (got <= 0) {
          if (got < 0 && errno == EINTR) continue;
          break;  // the file shrank under us: fall back to the mapping (same bytes)
        }
        out += got, bytes -= static_cast<std::size_t>(got), offset += static_cast<std::size_t>(got);
      }
      if (bytes == 0) return;
      std::memcpy(out, data_ + offset, bytes);
      return;
    }
#endif
    std::memcpy(dst, data_ + offset, bytes);
  }

  int error() const { return err_; }
  const unsigned char* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  void read_whole(const std::string& path) {
    FILE* fp = std::fopen(path.c_str(), "rb");
    if (!fp) {
      err_ = errno ? errno : ENOENT;
      return;
    }
    std::fseek(fp, 0, SEEK_END);
    long n = std::ftell(fp);
    if (n < 0 || static_cast<unsigned long>(n) > (1ul << 40)) {  // not a regular file
      std::fclose(fp);
      err_ = EINVAL;
      return;
    }
    std::fseek(fp, 0, SEEK_SET);
    buf_.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    std::size_t got = buf_.empty() ? 0 : std::fread(buf_.data(), 1, buf_.size(), fp);
    std::fclose(fp);
    buf_.resize(got);
    data_ = buf_.data();
    size_ = buf_.size();
  }

  void* map_ = nullptr;
  int fd_ = -1;
  const unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
  int err_ = 0;
  std::vector<unsigned char> buf_;
};

}  // namespace agentdb
