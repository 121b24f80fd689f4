// Gate: the only thing a TCP peer reaches before it proves it holds the cluster key.
// One Gate per connection, with its own nonce: a proof cannot be replayed.
#include "shadow/services.h"
#include "shadow/error.h"

#include <kj/debug.h>

namespace mig::shadow {
namespace {

class GateImpl final : public rpc::Gate::Server {
 public:
  GateImpl(Daemon& d, kj::Function<void()> onLogin, kj::Function<void()> watchLiveness)
      : d_(d), onLogin_(kj::mv(onLogin)), watchLiveness_(kj::mv(watchLiveness)) {}

  kj::Promise<void> challenge(ChallengeContext context) override {
    nonce_ = randomBytes(32);
    context.getResults().setNonce(nonce_);
    return kj::READY_NOW;
  }

  kj::Promise<void> login(LoginContext context) override {
    auto params = context.getParams();
    if (nonce_.size() == 0 || !d_.key().check(kClientLabel, nonce_, params.getProof())) {
      nonce_ = nullptr;
      d_.log("refused a login: wrong cluster key");
      fail(kj::str("login refused: wrong cluster key"));
    }
    nonce_ = nullptr;  // one login per challenge
    onLogin_();
    auto results = context.getResults();
    results.setProof(d_.key().proof(kServerLabel, params.getClientNonce()));
    auto watch = kj::mv(watchLiveness_);
    watchLiveness_ = nullptr;
    results.setNode(makeNode(d_, kj::mv(watch)));
    return kj::READY_NOW;
  }

 private:
  Daemon& d_;
  kj::Function<void()> onLogin_;
  kj::Maybe<kj::Function<void()>> watchLiveness_;  // one login per connection
  kj::Array<kj::byte> nonce_;
};

}  // namespace

rpc::Gate::Client makeGate(Daemon& d, kj::Function<void()> onLogin, kj::Function<void()> watchLiveness) {
  return kj::heap<GateImpl>(d, kj::mv(onLogin), kj::mv(watchLiveness));
}

}  // namespace mig::shadow
