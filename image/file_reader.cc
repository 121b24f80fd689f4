// See file_reader.h.
#include "image/file_reader.h"

#include "image/checksum.h"
#include "image/image_error.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mig::image {

FileReader::FileReader(kj::StringPtr path) : FileReader(::open(path.cStr(), O_RDONLY | O_CLOEXEC), path) {}

FileReader::FileReader(int fd, kj::StringPtr path) : path_(kj::heapString(path)), fd_(fd) {
  if (fd_ < 0) fail(kj::str("cannot open image ", path, ": ", strerror(errno)));
  KJ_ON_SCOPE_FAILURE(::close(fd_));
  struct stat st {};
  if (::fstat(fd_, &st) != 0) fail(kj::str("cannot stat image ", path, ": ", strerror(errno)));
  if (!S_ISREG(st.st_mode)) fail(kj::str(path, " is not a regular file"));
  size_ = static_cast<uint64_t>(st.st_size);
  index();
}

FileReader::~FileReader() {
  if (fd_ >= 0) ::close(fd_);
}

size_t FileReader::preadSome(void* buf, size_t len, uint64_t offset) const {
  auto* p = static_cast<kj::byte*>(buf);
  size_t got = 0;
  while (got < len) {
    ssize_t n = ::pread(fd_, p + got, len - got, static_cast<off_t>(offset + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(kj::str("reading image ", path_, ": ", strerror(errno)));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return got;
}

void FileReader::index() {
  Preamble p{};
  checkPreamble(p, preadSome(&p, sizeof(p), 0));
  uint64_t offset = sizeof(Preamble);
  uint64_t dataBytes = 0;
  for (uint32_t i = 0;; ++i) {
    if (i >= kMaxSections) fail(kj::str("image has more than ", kMaxSections, " sections"));
    SectionFrame f{};
    Entry e;
    e.info = decodeFrame(f, preadSome(&f, sizeof(f), offset), offset, i);
    const SectionInfo& info = e.info;
    if (info.layout.metaOffset + info.metaLen > size_) {
      fail(kj::str("image truncated: ", info.describe(), " is cut inside its metadata (file has ",
                   size_, " bytes)"));
    }
    if (info.layout.endOffset > size_) {
      fail(kj::str("image truncated: ", info.describe(), " needs ",
                   info.layout.endOffset - info.layout.frameOffset, " bytes but the file ends ",
                   size_ - info.layout.frameOffset, " bytes after its start"));
    }
    e.words = kj::heapArray<capnp::word>(info.metaLen / sizeof(capnp::word));
    preadSome(e.words.begin(), info.metaLen, info.layout.metaOffset);
    e.reader = decodeMeta(info, e.words);
    offset = info.layout.endOffset;
    bool isEnd = info.type == static_cast<uint16_t>(SectionType::end);
    if (isEnd) {
      auto end = e.reader->getRoot<schema::End>();
      if (end.getSections() != i || end.getDataBytes() != dataBytes) {
        fail(kj::str(info.describe(), ": image lists ", end.getSections(), " sections and ",
                     end.getDataBytes(), " data bytes but holds ", i, " and ", dataBytes,
                     " (corrupt image)"));
      }
    }
    dataBytes += info.dataLen;
    if (info.type == static_cast<uint16_t>(SectionType::tree)) {
      if (treeSection_ != 0 || i != 1) fail(kj::str(info.describe(), ": a tree section must come once, right after the header"));
      treeSection_ = i;
    }
    if (info.type == static_cast<uint16_t>(SectionType::member) && treeSection_ == 0) {
      fail(kj::str(info.describe(), ": a member section in an image without a tree section"));
    }
    entries_.add(kj::mv(e));
    if (isEnd) break;
  }
  if (offset != size_) {
    fail(kj::str("image has ", size_ - offset, " unexpected bytes after its end section at byte ",
                 offset));
  }
}

kj::Maybe<size_t> FileReader::firstSection(SectionType type) const {
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].info.type == static_cast<uint16_t>(type)) return i;
  }
  return nullptr;
}

void FileReader::keepOnlyMember(int32_t vpid) {
  KJ_REQUIRE(isTree(), "not a tree image");
  const uint16_t member = static_cast<uint16_t>(SectionType::member);
  kj::Vector<Entry> kept;
  kept.add(kj::mv(entries_[0]));
  bool inside = false, found = false;
  for (size_t i = 1; i < entries_.size(); ++i) {
    const SectionInfo& info = entries_[i].info;
    if (info.type == member) {
      inside = entries_[i].reader->getRoot<schema::Member>().getVpid() == vpid;
      found = found || inside;
    } else if (info.type == static_cast<uint16_t>(SectionType::end) ||
               info.type == static_cast<uint16_t>(SectionType::ipc) || inside) {
      kept.add(kj::mv(entries_[i]));
    }
  }
  if (!found) fail(kj::str("the image holds no live process with PID ", vpid));
  entries_ = kj::mv(kept);
  treeSection_ = 0;
}

void FileReader::readData(size_t i, uint64_t offset, void* buf, size_t len) const {
  const SectionInfo& info = entries_[i].info;
  if (offset > info.dataLen || len > info.dataLen - offset) {
    fail(kj::str(info.describe(), ": read of ", len, " bytes at ", offset,
                 " is outside its data of ", info.dataLen, " bytes"));
  }
  size_t got = preadSome(buf, len, info.layout.dataOffset + offset);
  if (got < len) fail(kj::str("image truncated: ", info.describe(), " is cut inside its data"));
}

// Large data is hashed straight from the page cache through a mapping (the data starts
// on a page boundary): no copy into a buffer, which halves the memory traffic of an
// eager restart's check of a big image. False (nothing hashed) if it cannot be mapped.
bool FileReader::hashMapped(const SectionInfo& info, Checksummer& hash) const {
  constexpr uint64_t kMapMin = 1u << 20;
  if (info.dataLen < kMapMin || info.layout.dataOffset % kDataAlign != 0) return false;
  // index() found the file long enough; checked again, since a file cut short under a
  // mapping would end migctl with SIGBUS instead of the "truncated" line.
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || static_cast<uint64_t>(st.st_size) < info.layout.dataOffset + info.dataLen) return false;
  void* p = ::mmap(nullptr, info.dataLen, PROT_READ, MAP_PRIVATE, fd_, static_cast<off_t>(info.layout.dataOffset));
  if (p == MAP_FAILED) return false;
  ::madvise(p, info.dataLen, MADV_SEQUENTIAL);
  hash.update(static_cast<const kj::byte*>(p), info.dataLen);
  ::munmap(p, info.dataLen);
  return true;
}

void FileReader::verify(size_t i) const {
  const SectionInfo& info = entries_[i].info;
  if (info.dataLen == 0) return;
  uint64_t metaEnd = info.layout.metaOffset + info.metaLen;
  // No bigger than the section (a small image's restart would map and unmap 1 MiB for each).
  auto buf = kj::heapArray<kj::byte>(std::min<uint64_t>(1 << 20, info.layout.trailerOffset - metaEnd));
  for (uint64_t at = metaEnd; at < info.layout.dataOffset;) {
    size_t n = std::min<uint64_t>(buf.size(), info.layout.dataOffset - at);
    if (preadSome(buf.begin(), n, at) < n) fail(kj::str("image truncated: ", info.describe()));
    checkPadding(info, buf.begin(), n);
    at += n;
  }
  Checksummer hash;
  if (!hashMapped(info, hash)) {
    for (uint64_t at = 0; at < info.dataLen;) {
      size_t n = std::min<uint64_t>(buf.size(), info.dataLen - at);
      readData(i, at, buf.begin(), n);
      hash.update(buf.begin(), n);
      at += n;
    }
  }
  uint64_t padLen = info.layout.trailerOffset - (info.layout.dataOffset + info.dataLen);
  if (preadSome(buf.begin(), padLen, info.layout.dataOffset + info.dataLen) < padLen) {
    fail(kj::str("image truncated: ", info.describe()));
  }
  checkPadding(info, buf.begin(), padLen);
  DataTrailer t{};
  checkTrailer(info, t, preadSome(&t, sizeof(t), info.layout.trailerOffset), hash.digest());
}

void FileReader::verifyAll() const {
  for (size_t i = 0; i < entries_.size(); ++i) verify(i);
}

}  // namespace mig::image
