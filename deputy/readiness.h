// The deputy's half of readiness stand-ins (shim/forward/readiness_stand_in.h has the
// protocol): a home socket, pipe or terminal the job polls where it runs is watched
// here, and the job's host is told once it is readable; told again only after a call
// took input from it.
#pragma once

#include "shadow/mig.capnp.h"

#include <kj/async-unix.h>
#include <kj/async.h>
#include <kj/vector.h>

namespace mig::deputy {

class Watch;  // one watched fd (readiness.cc)

class Readiness {
 public:
  Readiness(kj::UnixEventPort& port, kj::TaskSet& tasks) : port_(port), tasks_(tasks) {}

  // Deputy.watch: watches the job's `fd` for the stand-in `readiness`, until the
  // job's host drops the returned capability.
  kj::Own<rpc::ReadinessWatch::Server> watch(int fd, rpc::Readiness::Client readiness);

  // A call that takes input from `fd` has run: the watches of its file look again.
  // Resolves once every token they sent (the one for what is left, too) is in its
  // stand-in's connection: the call is answered only then, so the shim's drain before
  // its next such call takes every token that went before this answer, and a token
  // for bytes this call took never reaches a poll after it (python's Pool reads its
  // change notifier's header and body in two reads after one poll).
  kj::Promise<void> inputTaken(int fd);

 private:
  kj::UnixEventPort& port_;
  kj::TaskSet& tasks_;
  kj::Vector<Watch*> watches_;
};

}  // namespace mig::deputy
