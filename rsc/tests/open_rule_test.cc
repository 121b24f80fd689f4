// Unit tests of the open rule (open_rule.h): which files a migrated process opens on
// its new host (if home's copy is the same) and which at home.
#include "rsc/open_rule.h"

#include <doctest/doctest.h>

using namespace mig::rsc;

namespace {
constexpr OpenSide kHere = OpenSide::HereIfSameFile;
constexpr OpenSide kHome = OpenSide::Home;
}  // namespace

TEST_CASE("libraries and programs opened read-only are opened here if the same") {
  CHECK(openSide("/usr/lib/x86_64-linux-gnu/libsqlite3.so.0", O_RDONLY | O_CLOEXEC) == kHere);
  CHECK(openSide("/lib/x86_64-linux-gnu/libc.so.6", O_RDONLY | O_CLOEXEC) == kHere);
  CHECK(openSide("/lib64/ld-linux-x86-64.so.2", O_RDONLY) == kHere);
  CHECK(openSide("/usr/lib/python3.11/lib-dynload/_sqlite3.cpython-311-x86_64-linux-gnu.so", O_RDONLY) == kHere);
  CHECK(openSide("/usr/bin/python3", O_RDONLY) == kHere);
  CHECK(openSide("/opt/tool/lib/libx.so", O_RDONLY) == kHere);
  CHECK(openSide("/etc/ld.so.cache", O_RDONLY | O_CLOEXEC) == kHere);
  CHECK(openSide("/usr/lib/gcc/x86_64-linux-gnu/12/liblto_plugin.so", O_RDONLY | O_NONBLOCK) == kHere);
}

TEST_CASE("data files, scratch and the user's files are home's") {
  CHECK(openSide("/home/user/data.bin", O_RDONLY) == kHome);
  CHECK(openSide("/tmp/scratch.txt", O_RDONLY) == kHome);
  CHECK(openSide("/var/lib/app/db", O_RDONLY) == kHome);
  CHECK(openSide("/srv/www/index.html", O_RDONLY) == kHome);
  CHECK(openSide("/root/.bashrc", O_RDONLY) == kHome);
}

TEST_CASE("a system directory is matched by whole components only") {
  CHECK(openSide("/usrdata/file", O_RDONLY) == kHome);
  CHECK(openSide("/library/x.so", O_RDONLY) == kHome);
  CHECK(openSide("/etcetera", O_RDONLY) == kHome);
  CHECK(openSide("/lib64", O_RDONLY) == kHere);  // the path itself: a directory, found so by the check
  CHECK(openSide("/bin/sh", O_RDONLY) == kHere);
}

TEST_CASE("writing, creating, truncating or a temporary file goes home") {
  CHECK(openSide("/usr/lib/x.so", O_WRONLY) == kHome);
  CHECK(openSide("/usr/lib/x.so", O_RDWR) == kHome);
  CHECK(openSide("/etc/app.conf", O_RDONLY | O_CREAT) == kHome);
  CHECK(openSide("/etc/app.conf", O_RDONLY | O_TRUNC) == kHome);
  CHECK(openSide("/usr/tmp", O_TMPFILE | O_RDWR) == kHome);
}

TEST_CASE("directories, O_PATH, relative paths and .. go home") {
  CHECK(openSide("/usr/lib/python3.11", O_RDONLY | O_DIRECTORY) == kHome);
  CHECK(openSide("/usr/lib/x.so", O_PATH) == kHome);
  CHECK(openSide("lib/x.so", O_RDONLY) == kHome);
  CHECK(openSide("/usr/../home/user/x", O_RDONLY) == kHome);
  CHECK(openSide("/usr/lib/..", O_RDONLY) == kHome);
  CHECK(openSide("/usr/lib/..so", O_RDONLY) == kHere);  // a name starting with "..", not a climb
  CHECK(openSide(nullptr, O_RDONLY) == kHome);
}

TEST_CASE("the rule is a constant expression (no system calls)") {
  static_assert(openSide("/usr/lib/libz.so.1", O_RDONLY) == kHere);
  static_assert(openSide("/home/u/libz.so.1", O_RDONLY) == kHome);
}
