// Random-access reader of an image file: indexes every section's frame and
// metadata on open (without reading page data), then serves metadata and data of
// any section, and verifies data checksums on request. The restart path uses it
// to build a restore plan whose page data is mmap()ed straight from the file.
#pragma once

#include "image/image.capnp.h"
#include "image/section_codec.h"

#include <kj/vector.h>

namespace mig::image {

class FileReader {
 public:
  // Opens and indexes `path`; throws with a one-line reason on any defect
  // except in page data, which verify() checks.
  explicit FileReader(kj::StringPtr path);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  kj::StringPtr path() const { return path_; }
  int fd() const { return fd_; }
  uint64_t fileSize() const { return size_; }

  schema::Header::Reader header() { return metaReader(0).getRoot<schema::Header>(); }

  // Every section, header first and End last.
  size_t sectionCount() const { return entries_.size(); }
  const SectionInfo& section(size_t i) const { return entries_[i].info; }
  template <typename T>
  typename T::Reader meta(size_t i) { return metaReader(i).getRoot<T>(); }

  // Reads `len` bytes at `offset` within section i's data.
  void readData(size_t i, uint64_t offset, void* buf, size_t len) const;

  // Checks section i's data, padding and trailer; throws naming the section.
  void verify(size_t i) const;
  void verifyAll() const;

 private:
  struct Entry {
    SectionInfo info;
    kj::Array<capnp::word> words;
    kj::Own<capnp::FlatArrayMessageReader> reader;
  };

  capnp::MessageReader& metaReader(size_t i) { return *entries_[i].reader; }
  size_t preadSome(void* buf, size_t len, uint64_t offset) const;
  void index();

  kj::String path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  kj::Vector<Entry> entries_;
};

}  // namespace mig::image
