// The files section with event-loop objects: what a reader accepts and refuses
// (section_check.cc), and that a record written before those kinds existed reads
// with harmless defaults.
#include "image/format.h"
#include "image/image.capnp.h"
#include "image/image_test_util.h"
#include "image/section_check.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

namespace mig::image {
namespace {

using testing::contains;
using testing::errorOf;
using K = schema::FileDescriptor::Kind;

// Runs the files-section check on `msg` as a reader would.
std::string check(capnp::MallocMessageBuilder& msg) {
  auto words = capnp::messageToFlatArray(msg);
  capnp::FlatArrayMessageReader reader(words);
  SectionInfo info{};
  info.index = 3;
  info.type = static_cast<uint16_t>(SectionType::files);
  return errorOf([&] { checkSectionMeta(info, reader); });
}

// fds 3 (eventfd), 4 (timerfd), 5 (epoll watching 3 and 4), 6 (dup of 5).
void fill(schema::Files::Builder files) {
  auto fds = files.initFds(4);
  fds[0].setFd(3);
  fds[0].setKind(K::EVENTFD);
  fds[0].setEventCount(7);
  fds[1].setFd(4);
  fds[1].setKind(K::TIMERFD);
  fds[1].initTimer().setValueNs(1000);
  fds[2].setFd(5);
  fds[2].setKind(K::EPOLL);
  auto targets = fds[2].initEpollTargets(2);
  targets[0].setFd(3);
  targets[1].setFd(4);
  fds[3].setFd(6);
  fds[3].setKind(K::EPOLL);
  fds[3].setDupOf(5);
}

TEST_CASE("a files section with event-loop objects passes the reader's checks") {
  capnp::MallocMessageBuilder msg;
  fill(msg.initRoot<schema::Files>());
  CHECK(check(msg) == "");
}

TEST_CASE("an epoll registration of an fd the image does not have is refused, naming both") {
  capnp::MallocMessageBuilder msg;
  auto files = msg.initRoot<schema::Files>();
  fill(files);
  files.getFds()[2].getEpollTargets()[1].setFd(9);
  std::string e = check(msg);
  INFO(e);
  CHECK(contains(e, "epoll fd 5 watches fd 9, which is not in the image"));
}

TEST_CASE("a negative timer is refused") {
  capnp::MallocMessageBuilder msg;
  auto files = msg.initRoot<schema::Files>();
  fill(files);
  files.getFds()[1].getTimer().setIntervalNs(-1);
  CHECK(contains(check(msg), "fd 4 has a negative timer"));
}

TEST_CASE("a kind from a newer writer is refused") {
  capnp::MallocMessageBuilder msg;
  auto files = msg.initRoot<schema::Files>();
  fill(files);
  files.getFds()[0].setKind(static_cast<K>(static_cast<uint16_t>(K::EPOLL) + 1));
  CHECK(contains(check(msg), "fd 3 has an unknown kind"));
}

TEST_CASE("a record without the new fields reads with empty defaults") {
  // What an older writer produced: a pipe fd, no event-loop fields at all.
  capnp::MallocMessageBuilder msg;
  auto fd = msg.initRoot<schema::Files>().initFds(1)[0];
  fd.setFd(0);
  fd.setKind(K::PIPE);
  CHECK(check(msg) == "");
  auto r = msg.getRoot<schema::Files>().asReader().getFds()[0];
  CHECK(r.getEventCount() == 0);
  CHECK_FALSE(r.getEventSemaphore());
  CHECK(r.getTimer().getValueNs() == 0);
  CHECK(r.getSigmask() == 0);
  CHECK(r.getEpollTargets().size() == 0);
}

}  // namespace
}  // namespace mig::image
