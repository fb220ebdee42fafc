// A whole file as read-only bytes: memory-mapped where the OS allows (no copy, no zero-filled
// buffer the size of the file, pages shared with the page cache), else read into memory.
// Loaders parse and validate these bytes and copy what they keep, so the mapping lives only
// for the duration of a load.
#pragma once
#include <cerrno>
#include <cstddef>
#include <cstdio>
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
        ::close(fd);
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
#endif
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

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
  const unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
  int err_ = 0;
  std::vector<unsigned char> buf_;
};

}  // namespace agentdb
