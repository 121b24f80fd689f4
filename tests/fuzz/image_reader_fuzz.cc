// libFuzzer target: arbitrary bytes through both image readers and the restore plan
// builder. Any outcome but a clean kj::Exception (a crash, a sanitizer report, a
// hang, a huge allocation) is a finding.
#include "image/byte_io.h"
#include "image/file_reader.h"
#include "image/plan_builder.h"
#include "image/plan_check.h"
#include "image/stream_reader.h"

#include <kj/exception.h>

#include <cstdint>
#include <cstdio>
#include <fcntl.h>
#include <unistd.h>

namespace {

// One scratch file per fuzzing process, rewritten for every input: the file reader
// and the plan builder work on paths.
const char* scratchPath() {
  static char path[64];
  if (path[0] == '\0') snprintf(path, sizeof(path), "/tmp/mig-fuzz-%d.img", getpid());
  return path;
}

void readStream(const uint8_t* data, size_t size) {
  mig::image::MemorySource src(kj::arrayPtr(data, size));
  mig::image::StreamReader r(src);
  (void)r.header().getHostname();
  kj::byte buf[4096];
  while (r.next() != nullptr) {
    while (r.readData(buf, sizeof(buf)) > 0) {
    }
  }
}

void readFile(const uint8_t* data, size_t size) {
  int fd = open(scratchPath(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  bool ok = write(fd, data, size) == static_cast<ssize_t>(size);
  close(fd);
  if (!ok) return;
  mig::image::FileReader f(scratchPath());
  f.verifyAll();
  mig::image::RestorePlan p = mig::image::buildRestorePlan(f);
  if (mig::plan::validate(&p.header(), p.bytes().size()) != nullptr) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    readStream(data, size);
  } catch (const kj::Exception&) {
  }
  try {
    readFile(data, size);
  } catch (const kj::Exception&) {
  }
  return 0;
}
