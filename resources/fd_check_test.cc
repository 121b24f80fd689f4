// The files section with event-loop objects: what the image reader accepts and
// refuses whatever the kind (image/section_check.cc), what the kinds refuse at
// restart (FdKind::check, through checkFdRecords), and that a record written before
// those kinds existed reads with harmless defaults.
#include "image/format.h"
#include "image/image.capnp.h"
#include "image/image_test_util.h"
#include "image/section_check.h"
#include "resources/fd_restore.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

namespace mig::resources {
namespace {

using image::testing::contains;
using image::testing::errorOf;
using K = image::schema::FileDescriptor::Kind;

// Runs the reader's files-section check, then the kinds' restart check, on `msg`.
std::string check(capnp::MallocMessageBuilder& msg) {
  auto words = capnp::messageToFlatArray(msg);
  capnp::FlatArrayMessageReader reader(words);
  image::SectionInfo info{};
  info.index = 3;
  info.type = static_cast<uint16_t>(image::SectionType::files);
  std::string e = errorOf([&] { image::checkSectionMeta(info, reader); });
  if (!e.empty()) return e;
  return errorOf([&] { checkFdRecords(reader.getRoot<image::schema::Files>(), info.describe(), FileRestoreOptions{}); });
}

// fds 3 (eventfd), 4 (timerfd), 5 (epoll watching 3 and 4), 6 (dup of 5).
void fill(image::schema::Files::Builder files) {
  auto fds = files.initFds(4);
  fds[0].setFd(3);
  fds[0].setKind(K::EVENTFD);
  fds[0].getEventfd().setCount(7);
  fds[1].setFd(4);
  fds[1].setKind(K::TIMERFD);
  fds[1].getTimerfd().initTimer().setValueNs(1000);
  fds[2].setFd(5);
  fds[2].setKind(K::EPOLL);
  auto targets = fds[2].getEpoll().initTargets(2);
  targets[0].setFd(3);
  targets[1].setFd(4);
  fds[3].setFd(6);
  fds[3].setKind(K::EPOLL);
  fds[3].setDupOf(5);
}

TEST_CASE("a files section with event-loop objects passes the reader's and the kinds' checks") {
  capnp::MallocMessageBuilder msg;
  fill(msg.initRoot<image::schema::Files>());
  CHECK(check(msg) == "");
}

TEST_CASE("an epoll registration of an fd the image does not have is refused, naming both") {
  capnp::MallocMessageBuilder msg;
  auto files = msg.initRoot<image::schema::Files>();
  fill(files);
  files.getFds()[2].getEpoll().getTargets()[1].setFd(9);
  std::string e = check(msg);
  INFO(e);
  CHECK(contains(e, "section 3 (files) at byte 0: invalid metadata: epoll fd 5 watches fd 9, which is not in the image"));
}

TEST_CASE("a negative timer is refused") {
  capnp::MallocMessageBuilder msg;
  auto files = msg.initRoot<image::schema::Files>();
  fill(files);
  files.getFds()[1].getTimerfd().getTimer().setIntervalNs(-1);
  CHECK(contains(check(msg), "invalid metadata: fd 4 has a negative timer"));
}

TEST_CASE("a kind from a newer writer is refused") {
  capnp::MallocMessageBuilder msg;
  auto files = msg.initRoot<image::schema::Files>();
  fill(files);
  files.getFds()[0].setKind(static_cast<K>(static_cast<uint16_t>(K::UNIX_SOCKET) + 1));
  CHECK(contains(check(msg), "fd 3 has an unknown kind"));
}

TEST_CASE("a record without the new fields reads with empty defaults") {
  // What an older writer produced: a pipe fd, no event-loop fields at all.
  capnp::MallocMessageBuilder msg;
  auto fd = msg.initRoot<image::schema::Files>().initFds(1)[0];
  fd.setFd(0);
  fd.setKind(K::PIPE);
  CHECK(check(msg) == "");
  auto r = msg.getRoot<image::schema::Files>().asReader().getFds()[0];
  CHECK(r.getEventfd().getCount() == 0);
  CHECK_FALSE(r.getEventfd().getSemaphore());
  CHECK(r.getTimerfd().getTimer().getValueNs() == 0);
  CHECK(r.getSignalfd().getSigmask() == 0);
  CHECK(r.getEpoll().getTargets().size() == 0);
}

}  // namespace
}  // namespace mig::resources
