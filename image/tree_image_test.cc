// A process tree's image (format version 2): the tree section is checked, and the
// file reader shows one member's sections at a time.
#include "image/file_reader.h"
#include "image/host_facts.h"
#include "image/image_test_util.h"
#include "image/writer.h"

#include <capnp/message.h>

namespace mig::image {
namespace {

using testing::contains;
using testing::errorOf;
using testing::TempDir;

struct Member {
  int32_t vpid, vppid;
  bool zombie;
};

// header, tree, then per live member: member + a files section tagged by its
// fd count (vpid % 7 + 1 fds), end.
std::string writeTree(const TempDir& dir, std::initializer_list<Member> members) {
  MemorySink sink;
  capnp::MallocMessageBuilder header;
  fillHeader(header.initRoot<schema::Header>(), 0, members.begin()->vpid, "root");
  ImageWriter w(sink, header);
  capnp::MallocMessageBuilder treeMsg;
  auto list = treeMsg.initRoot<schema::Tree>().initMembers(static_cast<unsigned>(members.size()));
  unsigned i = 0;
  for (const Member& m : members) {
    list[i].setVpid(m.vpid);
    list[i].setVppid(m.vppid);
    list[i].setZombie(m.zombie);
    ++i;
  }
  w.section(SectionType::tree, treeMsg);
  for (const Member& m : members) {
    if (m.zombie) continue;
    capnp::MallocMessageBuilder memberMsg;
    memberMsg.initRoot<schema::Member>().setVpid(m.vpid);
    w.section(SectionType::member, memberMsg);
    capnp::MallocMessageBuilder files;
    auto fds = files.initRoot<schema::Files>().initFds(static_cast<unsigned>(m.vpid % 7 + 1));
    for (unsigned k = 0; k < fds.size(); ++k) fds[k].setFd(static_cast<int32_t>(k));
    w.section(SectionType::files, files);
  }
  w.finish();
  return dir.write("tree.img", sink.bytes());
}

TEST_CASE("a tree image shows one member's sections at a time") {
  TempDir dir;
  std::string path = writeTree(dir, {{100, 1, false}, {101, 100, false}, {102, 100, true}, {103, 101, false}});
  for (int32_t vpid : {100, 101, 103}) {
    FileReader r(path.c_str());
    CHECK(r.isTree());
    CHECK(r.tree().getMembers().size() == 4);
    r.keepOnlyMember(vpid);
    CHECK(!r.isTree());
    REQUIRE(r.sectionCount() == 3);  // header, its files, end
    CHECK(r.section(0).type == static_cast<uint16_t>(SectionType::header));
    CHECK(r.meta<schema::Files>(1).getFds().size() == static_cast<unsigned>(vpid % 7 + 1));
    CHECK(r.section(2).type == static_cast<uint16_t>(SectionType::end));
  }
  FileReader r(path.c_str());
  CHECK(contains(errorOf([&] { r.keepOnlyMember(102); }), "no live process with PID 102"));  // the zombie
}

TEST_CASE("a tree whose member comes before its parent is refused") {
  TempDir dir;
  std::string path = writeTree(dir, {{100, 1, false}, {103, 101, false}, {101, 100, false}});
  CHECK(contains(errorOf([&] { FileReader r(path.c_str()); }), "tree member 103 comes before its parent 101"));
}

TEST_CASE("a tree whose member's parent is a zombie is refused") {
  TempDir dir;
  std::string path = writeTree(dir, {{100, 1, false}, {101, 100, true}, {103, 101, false}});
  CHECK(contains(errorOf([&] { FileReader r(path.c_str()); }), "tree member 103 comes before its parent 101 or has a dead one"));
}

TEST_CASE("a single process image has no tree") {
  TempDir dir;
  MemorySink sink;
  capnp::MallocMessageBuilder header;
  fillHeader(header.initRoot<schema::Header>(), 0, 7, "one");
  ImageWriter w(sink, header);
  w.finish();
  FileReader r(dir.write("one.img", sink.bytes()).c_str());
  CHECK(!r.isTree());
  CHECK(r.header().getFormatVersion() == kFormatVersion);
}

}  // namespace
}  // namespace mig::image
