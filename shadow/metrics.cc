// See metrics.h. Names follow Prometheus' conventions: a mig_ prefix, _total on
// counters, base units (seconds, bytes). The jobs by state are counted at each scrape
// from what `migctl list` shows, so that both always agree.
#include "shadow/metrics.h"

#include "shadow/daemon.h"
#include "shadow/services.h"

#include <kj/compat/http.h>
#include <kj/debug.h>

#include <cstdio>

namespace mig::shadow {
namespace {

kj::String num(double v) {
  char buf[64];
  snprintf(buf, sizeof buf, "%.9g", v);
  return kj::str(buf);
}

// `migctl list`'s states (local_service.cc) as label values.
kj::StringPtr stateLabel(kj::StringPtr state) {
  if (state == "running") return "home";
  if (state == "away (deputy here)") return "away";
  if (state == "migrating") return "migrating";
  if (state == "running (migrated in)") return "migrated_in";
  if (state == "arriving") return "arriving";
  return "other";
}

class MetricsService final : public kj::HttpService {
 public:
  MetricsService(Daemon& d, kj::HttpHeaderTable& table) : d_(d), table_(table) {}

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders&,
                            kj::AsyncInputStream&, Response& response) override {
    kj::HttpHeaders headers(table_);
    kj::String body;
    uint code = 200;
    kj::StringPtr status = "OK";
    if (method != kj::HttpMethod::GET && method != kj::HttpMethod::HEAD) {
      code = 405;
      status = "Method Not Allowed";
      body = kj::str("shadowd serves its metrics with GET /metrics\n");
    } else if (url != "/metrics" && !url.startsWith("/metrics?")) {
      code = 404;
      status = "Not Found";
      body = kj::str("shadowd serves its metrics at /metrics\n");
    } else {
      headers.set(kj::HttpHeaderId::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
      body = renderMetrics(d_);
    }
    if (code != 200) headers.set(kj::HttpHeaderId::CONTENT_TYPE, "text/plain; charset=utf-8");
    auto out = response.send(code, status, headers, body.size());
    if (method == kj::HttpMethod::HEAD) return kj::READY_NOW;
    auto written = out->write(body.begin(), body.size());
    return written.attach(kj::mv(out), kj::mv(body));
  }

 private:
  Daemon& d_;
  kj::HttpHeaderTable& table_;
};

struct Server {
  kj::HttpHeaderTable table;
  kj::Own<MetricsService> service;
  kj::Own<kj::HttpServer> http;
  kj::Own<kj::ConnectionReceiver> listener;
};

}  // namespace

void Metrics::countMove(const Move& m) {
  if (!m.ok) {
    ++movesFailed;
    return;
  }
  ++movesOk;
  double s = m.freezeMs / 1000;
  freezeSumSeconds += s;
  for (size_t i = 0; i < kBuckets; ++i) {
    if (s <= kFreezeBounds[i]) {
      ++freezeCount[i];
      return;
    }
  }
  ++freezeOver;
}

kj::String renderMetrics(Daemon& d) {
  const Metrics& m = d.metrics();
  kj::Vector<kj::String> out;
  auto add = [&out](kj::StringPtr name, kj::StringPtr type, kj::StringPtr help) {
    out.add(kj::str("# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n"));
  };

  // Jobs by state, as `migctl list` shows them (every state, 0 included).
  kj::StringPtr states[] = {"home", "away", "migrating", "migrated_in", "arriving"};
  uint64_t counts[5] = {};
  for (auto& e : d.homeJobs()) {
    HomeJob& j = *e.value;
    if (j.lost) continue;  // listed "lost": its deputy is gone, it is in none of these states
    auto label = stateLabel(j.migrating ? "migrating" : j.location.size() > 0 ? "away (deputy here)" : "running");
    for (size_t i = 0; i < 5; ++i) counts[i] += states[i] == label ? 1 : 0;
  }
  for (auto& e : d.hostedJobs()) {
    HostedJob& j = *e.value;
    auto label = stateLabel(j.leaving ? "migrating" : j.running ? "running (migrated in)" : "arriving");
    for (size_t i = 0; i < 5; ++i) counts[i] += states[i] == label ? 1 : 0;
  }
  counts[0] += untrackedJobsHere(d);
  add("mig_jobs", "gauge",
      "Jobs by state: home (runs here, its home), away (runs elsewhere, its deputy here), migrating, "
      "migrated_in (runs here, home elsewhere), arriving (being restored here)");
  for (size_t i = 0; i < 5; ++i) out.add(kj::str("mig_jobs{state=\"", states[i], "\"} ", counts[i], "\n"));

  add("mig_moves_total", "counter", "Moves this shadowd made or asked for (migctl history), by outcome");
  out.add(kj::str("mig_moves_total{outcome=\"ok\"} ", m.movesOk, "\n"));
  out.add(kj::str("mig_moves_total{outcome=\"failed\"} ", m.movesFailed, "\n"));

  add("mig_freeze_seconds", "histogram", "How long each job that moved was frozen");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < Metrics::kBuckets; ++i) {
    cumulative += m.freezeCount[i];
    out.add(kj::str("mig_freeze_seconds_bucket{le=\"", num(Metrics::kFreezeBounds[i]), "\"} ", cumulative, "\n"));
  }
  cumulative += m.freezeOver;
  out.add(kj::str("mig_freeze_seconds_bucket{le=\"+Inf\"} ", cumulative, "\n"));
  out.add(kj::str("mig_freeze_seconds_sum ", num(m.freezeSumSeconds), "\n"));
  out.add(kj::str("mig_freeze_seconds_count ", cumulative, "\n"));

  add("mig_forwarded_calls_total", "counter", "System calls of jobs running here forwarded to their homes");
  out.add(kj::str("mig_forwarded_calls_total ", m.forwardedCalls, "\n"));
  add("mig_forwarded_bytes_total", "counter", "Bytes of those calls: requests sent home (out), replies (in)");
  out.add(kj::str("mig_forwarded_bytes_total{direction=\"out\"} ", m.forwardedBytesOut, "\n"));
  out.add(kj::str("mig_forwarded_bytes_total{direction=\"in\"} ", m.forwardedBytesIn, "\n"));

  add("mig_link_reconnects_total", "counter", "Logins to another shadowd whose earlier link had broken");
  out.add(kj::str("mig_link_reconnects_total ", m.linkReconnects, "\n"));

  add("mig_host_runnable", "gauge", "Threads running or waiting for a CPU here, averaged over the balance window");
  out.add(kj::str("mig_host_runnable ", num(d.runnable().averageForReader(RunnableMeter::clock())), "\n"));
  add("mig_host_drained", "gauge", "1 while this host is drained (migctl drain)");
  out.add(kj::str("mig_host_drained ", d.admission().drained ? 1 : 0, "\n"));
  return kj::strArray(out, "");
}

kj::Promise<void> serveMetrics(Daemon& d, kj::Own<kj::ConnectionReceiver> listener) {
  auto s = kj::heap<Server>();
  s->service = kj::heap<MetricsService>(d, s->table);
  kj::HttpServerSettings settings;
  settings.headerTimeout = 10 * kj::SECONDS;  // a client that never finishes its request
  s->http = kj::heap<kj::HttpServer>(d.io().provider->getTimer(), s->table, *s->service, settings);
  s->listener = kj::mv(listener);
  auto served = s->http->listenHttp(*s->listener);
  return served.attach(kj::mv(s));
}

}  // namespace mig::shadow
