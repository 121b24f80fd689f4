// The link from a migctl command to this host's shadowd (its local socket, the Local
// interface of rsc/mig.capnp), and the --socket option of every command that uses it.
#pragma once

#include "image/image_error.h"
#include "shadow/local_socket.h"
#include "shadow/mig.capnp.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/main.h>

#include <cerrno>
#include <unistd.h>

namespace mig::migctl {

struct LocalLink {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyClient> client;
  rpc::Local::Client local = nullptr;

  explicit LocalLink(kj::StringPtr socket) {
    // connect() on a Unix socket needs write permission on it and search permission on
    // its directories: a socket there that we may not use is not "no shadowd".
    if (access(socket.cStr(), W_OK) != 0 && errno == EACCES) {
      image::fail(kj::str("permission denied on ", socket, ": that shadowd serves another user; run migctl as the ",
                   "job's owner (or as root)"));
    }
    if (access(socket.cStr(), F_OK) != 0) {
      image::fail(kj::str("no shadowd on this host (no socket at ", socket, "); start one: shadowd --listen HOST:PORT"));
    }
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      stream = io.provider->getNetwork().parseAddress(kj::str("unix:", socket)).wait(io.waitScope)->connect().wait(io.waitScope);
    })) {
      image::fail(kj::str("cannot reach shadowd at ", socket, " (is it running?): ", e->getDescription()));
    }
    client = kj::heap<capnp::TwoPartyClient>(*stream);
    local = client->bootstrap().castAs<rpc::Local>();
  }

  template <typename T>
  T wait(kj::Promise<T> p, uint64_t timeoutMs, kj::StringPtr what) {
    auto timeout = io.provider->getTimer().afterDelay(timeoutMs * kj::MILLISECONDS).then([what = kj::str(what)]() -> T {
      image::fail(kj::str(what, " timed out"));
    });
    return p.exclusiveJoin(kj::mv(timeout)).wait(io.waitScope);
  }
};

// --socket, which every command that talks to shadowd takes.
inline kj::MainBuilder& addSocketOption(kj::MainBuilder& b, kj::String& socket) {
  socket = shadow::defaultLocalSocket();
  return b.addOptionWithArg({"socket"}, [&socket](kj::StringPtr v) -> kj::MainBuilder::Validity {
    socket = kj::str(v);
    return true;
  }, "PATH", "shadowd's local socket (default: $MIG_SHADOWD_SOCKET or /tmp/mig-UID/shadowd.sock)");
}

}  // namespace mig::migctl
