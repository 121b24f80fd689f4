// See byte_io.h.
#include "image/byte_io.h"

#include "image/image_error.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace mig::image {

void FdSink::write(const void* data, size_t len) {
  auto* p = static_cast<const kj::byte*>(data);
  while (len > 0) {
    ssize_t n = ::write(fd_, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(kj::str("writing ", what_, ": ", strerror(errno)));
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
}

void WritebackSink::write(const void* data, size_t len) {
  out_.write(data, len);
  written_ += len;
  if (written_ - started_ >= kWritebackBytes) {
    // Only a hint: an error of the writing shows in the fsync that commits the file.
    (void)sync_file_range(fd_, static_cast<off_t>(started_), static_cast<off_t>(written_ - started_),
                          SYNC_FILE_RANGE_WRITE);
    started_ = written_;
  }
}

size_t FdSource::read(void* buf, size_t len) {
  auto* p = static_cast<kj::byte*>(buf);
  size_t got = 0;
  while (got < len) {
    ssize_t n = ::read(fd_, p + got, len - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(kj::str("reading ", what_, ": ", strerror(errno)));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return got;
}

size_t MemorySource::read(void* buf, size_t len) {
  size_t n = std::min<uint64_t>(len, bytes_.size() - pos_);
  if (n > 0) memcpy(buf, bytes_.begin() + pos_, n);
  pos_ += n;
  return n;
}

void MemorySink::write(const void* data, size_t len) {
  bytes_.addAll(kj::arrayPtr(static_cast<const kj::byte*>(data), len));
}

namespace {

kj::String tempNameFor(kj::StringPtr path) {
  const char* slash = strrchr(path.cStr(), '/');
  kj::String dir = slash ? kj::heapString(path.cStr(), slash - path.cStr() + 1) : kj::str("");
  const char* base = slash ? slash + 1 : path.cStr();
  return kj::str(dir, ".", base, ".partial-", getpid());
}

}  // namespace

AtomicFile::AtomicFile(kj::StringPtr path)
    : path_(kj::heapString(path)),
      tmpPath_(tempNameFor(path)),
      fd_(::open(tmpPath_.cStr(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)),
      sink_(fd_, path_) {
  if (fd_ < 0) {
    fail(kj::str("cannot create ", path_, ": ", strerror(errno)));
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmpPath_.cStr());
}

void AtomicFile::commit() {
  int err = ::fsync(fd_) == 0 ? 0 : errno;
  if (::close(fd_) != 0 && err == 0) err = errno;
  fd_ = -1;
  if (err != 0) fail(kj::str("writing ", path_, ": ", strerror(err)));
  if (::rename(tmpPath_.cStr(), path_.cStr()) != 0) {
    fail(kj::str("cannot rename image into place as ", path_, ": ", strerror(errno)));
  }
  committed_ = true;
}

}  // namespace mig::image
