// See spooled_pages.h.
#include "shadow/spooled_pages.h"

#include "shadow/error.h"
#include "shadow/page_copy.h"
#include "shadow/page_server.h"

#include <algorithm>

namespace mig::shadow {
namespace {

// The pages, from the dead sender's copy.
class SpooledPages final : public PageServer {
 public:
  SpooledPages(kj::Own<PageCopy> copy, kj::Own<kj::PromiseFulfiller<void>> finished)
      : PageServer(kj::mv(finished)), copy_(kj::mv(copy)) {}

 private:
  void fill(uint64_t addr, kj::ArrayPtr<kj::byte> bytes) override {
    for (uint64_t done = 0; done < bytes.size();) {
      const uint64_t at = addr + done;
      const PageRun* r = copy_->find(at);
      KJ_REQUIRE(r != nullptr, "a page request outside the post-copy pages", kj::hex(at));
      const uint64_t n = std::min<uint64_t>(bytes.size() - done, r->addr + r->len - at);
      memcpy(bytes.begin() + done, copy_->bytes(*r) + (at - r->addr), n);
      done += n;
    }
  }

  kj::Own<PageCopy> copy_;
};

// One serving: the source, and when the destination was last handed it.
struct Serving : kj::Refcounted {
  Serving(Daemon& d, uint64_t jobId, kj::ArrayPtr<const kj::byte> token, kj::StringPtr to)
      : d(d), jobId(jobId), token(kj::heapArray(token)), to(kj::str(to)) {}
  Daemon& d;
  uint64_t jobId;
  kj::Array<kj::byte> token;
  kj::String to;
  SpooledPages* pages = nullptr;  // kept alive by `source`
  kj::Maybe<rpc::PageSource::Client> source;
  kj::TimePoint lastTry = kj::origin<kj::TimePoint>();
  bool trying = false;
  kj::Maybe<kj::String> refused;  // the destination has no transfer of the job
};

// Hands the destination the source (once more); `finished` when it had every page.
kj::Promise<void> handOver(kj::Own<Serving> s) {
  s->trying = true;
  s->lastTry = s->d.io().provider->getTimer().now();
  auto& timer = s->d.io().provider->getTimer();
  auto asked = s->d.peer(s->to).then([s = kj::addRef(*s)](rpc::Node::Client node) mutable {
    auto req = node.resumePagesRequest();
    req.setJobId(s->jobId);
    req.setToken(s->token);
    req.setSource(KJ_ASSERT_NONNULL(s->source));
    return req.send().then([s = kj::addRef(*s)](capnp::Response<rpc::Node::ResumePagesResults>&& r) mutable {
      s->d.log(kj::str("job ", s->jobId, ": ", s->to, " takes its pages from this shadowd now"));
      if (r.getFinished()) s->pages->markFinished();
    });
  });
  constexpr uint64_t kTryMs = 2000;
  return timer.timeoutAfter(kTryMs * kj::MILLISECONDS, kj::mv(asked))
      .then([]() {},
            [s = kj::addRef(*s)](kj::Exception&& e) mutable {
              // FAILED: the destination answered that it has no transfer of the job.
              if (e.getType() == kj::Exception::Type::FAILED) s->refused = oneLine(e.getDescription());
            })
      .then([s = kj::mv(s)]() mutable { s->trying = false; });
}

// Every half second: the source handed over again after an idle spell (a page link
// broken again), given up without a page request for the transfer timeout.
kj::Promise<void> watch(kj::Own<Serving> s) {
  auto& timer = s->d.io().provider->getTimer();
  return timer.afterDelay(500 * kj::MILLISECONDS).then([s = kj::mv(s)]() mutable -> kj::Promise<void> {
    auto& timer = s->d.io().provider->getTimer();
    const auto now = timer.now();
    KJ_IF_MAYBE(why, s->refused) { return KJ_EXCEPTION(FAILED, kj::str(*why)); }
    const uint64_t stallMs = s->d.config().transferTimeoutMs;
    const auto idle = std::chrono::steady_clock::now() - s->pages->lastRequest();
    if (idle >= std::chrono::milliseconds(stallMs)) {
      return KJ_EXCEPTION(FAILED, kj::str("no page asked for ", stallMs / 1000.0, " s"));
    }
    const uint64_t idleMs = std::clamp<uint64_t>(stallMs / 4, 300, 2000);
    if (!s->trying && idle >= std::chrono::milliseconds(idleMs) && now - s->lastTry >= idleMs * kj::MILLISECONDS) {
      s->d.tasks().add(handOver(kj::addRef(*s)));
    }
    return watch(kj::mv(s));
  });
}

}  // namespace

kj::String spoolPagesPath(kj::StringPtr dir, uint64_t jobId) { return kj::str(dir, "/job-", jobId, ".pages"); }

void serveSpooledPages(Daemon& d, uint64_t jobId, kj::ArrayPtr<const kj::byte> token, kj::StringPtr to) {
  auto path = spoolPagesPath(d.config().spoolDir, jobId);
  kj::String why;
  auto copy = PageCopy::open(path, why);
  if (copy.get() == nullptr) {
    d.log(kj::str("job ", jobId, ": its post-copy sender died and left no copy of its pages to serve (", why,
                  "): it ends on ", to, " if a page it needs is missing there"));
    unlink(path.cStr());
    return;
  }
  auto s = kj::refcounted<Serving>(d, jobId, token, to);
  auto finished = kj::newPromiseAndFulfiller<void>();
  auto server = kj::heap<SpooledPages>(kj::mv(copy), kj::mv(finished.fulfiller));
  s->pages = server.get();
  s->source = rpc::PageSource::Client(kj::mv(server));
  d.log(kj::str("job ", jobId, ": its post-copy sender died before ", to,
                " had every page; serving them from the copy it left (", path, ")"));
  d.tasks().add(handOver(kj::addRef(*s)));
  auto served = finished.promise.exclusiveJoin(watch(kj::addRef(*s)));
  // Made here, not among the arguments below (their order is open).
  auto failed = kj::addRef(*s);
  auto failedPath = kj::str(path);
  d.tasks().add(served.then(
      [s = kj::mv(s), path = kj::mv(path)]() mutable {
        unlink(path.cStr());
        s->d.log(kj::str("job ", s->jobId, ": ", s->to, " has every page (", s->pages->sent() / 1048576.0,
                         " MiB served from this shadowd's copy)"));
      },
      [s = kj::mv(failed), path = kj::mv(failedPath)](kj::Exception&& e) mutable {
        unlink(path.cStr());
        s->d.log(kj::str("job ", s->jobId, ": its pages kept here are dropped: ", oneLine(e.getDescription()),
                         " (", s->to, " ends it if it still waits for one)"));
      }));
}

}  // namespace mig::shadow
