// Unit tests of the file identity check (file_identity.h): the content hash, its
// lock-free cache, and the deputy's side (mig_file_identity) on real files.
#include "rsc/file_identity.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

extern "C" int mig_file_identity(int dirfd, const char* path, mig::rsc::FileIdentity* out);

using namespace mig::rsc;

namespace {

std::vector<unsigned char> pattern(size_t n) {
  std::vector<unsigned char> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<unsigned char>((i * 131 + i / 7) & 0xff);
  return v;
}

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/mig-identity-test.XXXXXX";
    REQUIRE(mkdtemp(t) != nullptr);
    path = t;
  }
  ~TempDir() { (void)!system(("rm -rf " + path).c_str()); }
  std::string write(const char* name, const std::vector<unsigned char>& bytes) const {
    std::string p = path + "/" + name;
    FILE* f = fopen(p.c_str(), "wb");
    REQUIRE(f != nullptr);
    if (!bytes.empty()) REQUIRE(fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size());
    fclose(f);
    return p;
  }
};

}  // namespace

TEST_CASE("the content hash tells apart contents that differ by one byte, anywhere") {
  for (size_t n : {0ul, 1ul, 7ul, 8ul, 31ul, 32ul, 33ul, 4096ul, 100003ul}) {
    CAPTURE(n);
    auto a = pattern(n);
    CHECK(contentHash(a.data(), n) == contentHash(pattern(n).data(), n));
    for (size_t at : {size_t{0}, n / 2, n == 0 ? 0 : n - 1}) {
      if (n == 0) break;
      auto b = a;
      b[at] ^= 1;
      CHECK(contentHash(b.data(), n) != contentHash(a.data(), n));
    }
  }
  // The length counts: a zero byte more is another file.
  auto a = pattern(64), b = pattern(64);
  b.push_back(0);
  CHECK(contentHash(a.data(), a.size()) != contentHash(b.data(), b.size()));
}

TEST_CASE("the hash cache finds an entry only under its whole key") {
  static HashCache<16> cache;
  uint64_t h = 0;
  const HashCache<16>::Key k{1, 2, 3, 4};
  CHECK_FALSE(cache.find(k, h));
  cache.put(k, 42);
  REQUIRE(cache.find(k, h));
  CHECK(h == 42);
  CHECK_FALSE(cache.find({1, 2, 3, 5}, h));  // another mtime: the file changed
  CHECK_FALSE(cache.find({1, 2, 4, 4}, h));  // another size
  cache.put(k, 43);                          // the same key hashed again
  REQUIRE(cache.find(k, h));
  CHECK(h == 43);
  cache.clear();
  CHECK_FALSE(cache.find(k, h));
}

TEST_CASE("home's answer: size, regular file and the hash of every byte") {
  TempDir d;
  auto bytes = pattern(70000);
  std::string p = d.write("lib.so", bytes);
  FileIdentity id{};
  REQUIRE(mig_file_identity(AT_FDCWD, p.c_str(), &id) == 0);
  CHECK(id.regular == 1);
  CHECK(id.size == bytes.size());
  CHECK(id.hash == contentHash(bytes.data(), bytes.size()));
  CHECK(sameFile(id, FileIdentity{bytes.size(), contentHash(bytes.data(), bytes.size()), 0, 1, 0}));

  // Another file of the same size that differs in one byte is not the same.
  auto other = bytes;
  other[12345] ^= 0x80;
  FileIdentity id2{};
  REQUIRE(mig_file_identity(AT_FDCWD, d.write("other.so", other).c_str(), &id2) == 0);
  CHECK(id2.size == id.size);
  CHECK_FALSE(sameFile(id, id2));

  // Rewritten in place: a new mtime, so the deputy hashes it again.
  struct stat before {};
  REQUIRE(stat(p.c_str(), &before) == 0);
  struct timespec later[2] = {before.st_atim, before.st_mtim};
  later[1].tv_sec += 10;
  d.write("lib.so", other);
  REQUIRE(utimensat(AT_FDCWD, p.c_str(), later, 0) == 0);
  FileIdentity id3{};
  REQUIRE(mig_file_identity(AT_FDCWD, p.c_str(), &id3) == 0);
  CHECK(id3.hash == id2.hash);
}

TEST_CASE("home's answer for a directory, an empty file and a missing path") {
  TempDir d;
  FileIdentity id{};
  REQUIRE(mig_file_identity(AT_FDCWD, d.path.c_str(), &id) == 0);
  CHECK(id.regular == 0);
  CHECK_FALSE(sameFile(id, id));  // never "the same": the shim opens it at home
  FileIdentity empty{};
  REQUIRE(mig_file_identity(AT_FDCWD, d.write("empty", {}).c_str(), &empty) == 0);
  CHECK(empty.regular == 1);
  CHECK(empty.size == 0);
  CHECK(empty.hash == contentHash(nullptr, 0));
  errno = 0;
  CHECK(mig_file_identity(AT_FDCWD, (d.path + "/missing").c_str(), &id) == -1);
  CHECK(errno == ENOENT);
}
