// Which spool files shadowd takes as its own, and what it deletes at start-up.
#include "shadow/spool.h"

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mig::shadow {
namespace {

bool exists(kj::StringPtr path) { return access(path.cStr(), F_OK) == 0; }
void touch(kj::StringPtr path) { close(open(path.cStr(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600)); }

TEST_CASE("spool: only job-DIGITS.img, .log and .pages are shadowd's") {
  CHECK(isSpoolFileName("job-1.img"));
  CHECK(isSpoolFileName("job-4611686018427387903.log"));
  CHECK(isSpoolFileName("job-7.pages"));
  CHECK_FALSE(isSpoolFileName("job-.pages"));
  CHECK(isSpoolFileName(kj::str(spoolImagePath("/x", 42).slice(3))));
  CHECK_FALSE(isSpoolFileName("job-.img"));
  CHECK_FALSE(isSpoolFileName("job-12.img.tmp"));
  CHECK_FALSE(isSpoolFileName("job-1x.img"));
  CHECK_FALSE(isSpoolFileName("job-12.txt"));
  CHECK_FALSE(isSpoolFileName("xjob-12.img"));
  CHECK_FALSE(isSpoolFileName("job--1.img"));
  CHECK_FALSE(isSpoolFileName("notes.img"));
  CHECK_FALSE(isSpoolFileName(".img"));
}

TEST_CASE("spool: start-up cleaning deletes leftovers, keeps images in use and other files") {
  char tmpl[] = "/tmp/mig-spool-test.XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  kj::String dir = kj::str(tmpl);
  auto partial = spoolImagePath(dir, 7), log = spoolLogPath(dir, 7), mapped = spoolImagePath(dir, 8),
       other = kj::str(dir, "/keep-me.img");
  touch(partial);
  touch(log);
  touch(mapped);
  touch(other);
  // An image in use: a restored job holds it (open or mapped).
  int fd = open(mapped.cStr(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);

  auto deleted = cleanSpool(dir);
  CHECK(deleted.size() == 2);
  CHECK_FALSE(exists(partial));
  CHECK_FALSE(exists(log));
  CHECK(exists(mapped));
  CHECK(exists(other));

  close(fd);
  CHECK(cleanSpool(dir).size() == 1);
  CHECK_FALSE(exists(mapped));
  unlink(other.cStr());
  rmdir(dir.cStr());
}

TEST_CASE("spool: a missing directory is nothing to clean") { CHECK(cleanSpool("/nonexistent/mig-spool").size() == 0); }

}  // namespace
}  // namespace mig::shadow
