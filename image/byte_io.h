// Byte sinks and sources the image writer and stream reader work on: a file or a
// socket (by fd, never seeking), memory, and a file that appears under its final
// name only once it is complete.
#pragma once

#include <kj/array.h>
#include <kj/vector.h>
#include <kj/string.h>

#include <cstddef>
#include <cstdint>

namespace mig::image {

class ByteSink {
 public:
  virtual ~ByteSink() noexcept(false) = default;
  // Writes all of `data` or throws (a kj::Exception naming the cause, e.g. ENOSPC).
  virtual void write(const void* data, size_t len) = 0;
};

class ByteSource {
 public:
  virtual ~ByteSource() noexcept(false) = default;
  // Reads up to `len` bytes; returns fewer only at end of input. Throws on I/O errors.
  virtual size_t read(void* buf, size_t len) = 0;
};

// Writes to a file descriptor it does not own (file, pipe or socket).
class FdSink final : public ByteSink {
 public:
  FdSink(int fd, kj::StringPtr what) : fd_(fd), what_(what) {}
  void write(const void* data, size_t len) override;

 private:
  int fd_;
  kj::StringPtr what_;  // for messages: "image file app.img"
};

// Reads from a file descriptor it does not own.
class FdSource final : public ByteSource {
 public:
  FdSource(int fd, kj::StringPtr what) : fd_(fd), what_(what) {}
  size_t read(void* buf, size_t len) override;

 private:
  int fd_;
  kj::StringPtr what_;
};

class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(kj::ArrayPtr<const kj::byte> bytes) : bytes_(bytes) {}
  size_t read(void* buf, size_t len) override;

 private:
  kj::ArrayPtr<const kj::byte> bytes_;
  size_t pos_ = 0;
};

class MemorySink final : public ByteSink {
 public:
  void write(const void* data, size_t len) override;
  kj::ArrayPtr<const kj::byte> bytes() const { return bytes_.asPtr(); }
  kj::Array<kj::byte> release() { return bytes_.releaseAsArray(); }

 private:
  kj::Vector<kj::byte> bytes_;
};

// A new file written from its start: like FdSink, and every kWritebackBytes it asks
// the kernel to start writing what came before to the disk (sync_file_range
// SYNC_FILE_RANGE_WRITE, which does not wait for it). The disk then works while the
// rest of the image is captured, instead of only in the final fsync.
class WritebackSink final : public ByteSink {
 public:
  static constexpr uint64_t kWritebackBytes = 8u << 20;
  WritebackSink(int fd, kj::StringPtr what) : out_(fd, what), fd_(fd) {}
  void write(const void* data, size_t len) override;

 private:
  FdSink out_;
  int fd_;
  uint64_t written_ = 0;
  uint64_t started_ = 0;  // written back (or on its way) up to here
};

// A file written under a hidden temporary name in the target's directory and
// renamed over `path` by commit(), after fsync. Destroyed uncommitted (an error
// mid-write, a full disk), it leaves nothing behind: no half image under `path`.
class AtomicFile {
 public:
  explicit AtomicFile(kj::StringPtr path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  ByteSink& sink() { return sink_; }
  void commit();

 private:
  kj::String path_;
  kj::String tmpPath_;
  int fd_;
  WritebackSink sink_;
  bool committed_ = false;
};

}  // namespace mig::image
