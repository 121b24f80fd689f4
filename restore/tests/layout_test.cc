// The restorer's pure decisions: /proc/self/maps parsing, gap finding, what of the
// restorer must move out of the way and where to, vDSO matching, plan checks.
#include "restore/fmt.h"
#include "restore/layout.h"
#include "restore/tests/plan_fixture.h"

#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <sys/auxv.h>
#include <vector>

namespace mig::restore {
namespace {

using testing::header;
using testing::PlanFixture;

constexpr uint64_t P = kPage;

MapEntry parse(const std::string& line) {
  MapEntry e{};
  REQUIRE(parseMapsLine(line.data(), line.size(), &e));
  return e;
}

bool parses(const std::string& line) {
  MapEntry e{};
  return parseMapsLine(line.data(), line.size(), &e);
}

TEST_CASE("maps lines: addresses, protection and the special names") {
  MapEntry e = parse("7fe1b924c000-7fe1b9250000 r--p 00000000 00:00 0                          [vvar]");
  CHECK(e.start == 0x7fe1b924c000);
  CHECK(e.end == 0x7fe1b9250000);
  CHECK(e.prot == 1);
  CHECK(e.kind == kMapVvar);
  CHECK(parse("7fe1b9250000-7fe1b9252000 r--p 00000000 00:00 0   [vvar_vclock]").kind == kMapVvarVclock);
  CHECK(parse("7fe1b9252000-7fe1b9254000 r-xp 00000000 00:00 0 [vdso]").kind == kMapVdso);
  CHECK(parse("7ffc63633000-7ffc63654000 rw-p 00000000 00:00 0 [stack]").kind == kMapStack);
  CHECK(parse("55d000-56d000 rw-p 00000000 00:00 0 [heap]").kind == kMapHeap);
  CHECK(parse("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]").kind == kMapVsyscall);
  e = parse("7f00-8f00 rwxs 00001000 fe:00 332383   /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");
  CHECK(e.prot == 7);
  CHECK(e.kind == kMapOther);
  CHECK(parse("1000-2000 ---p 00000000 00:00 0").kind == kMapOther);  // no path at all
  CHECK(parse("1000-2000 rw-p 00000000 00:00 0 ").kind == kMapOther);
  CHECK(parse("1000-2000 rw-p 00000000 fe:00 12 /tmp/a file [stack]").kind == kMapOther);  // a file name
}

TEST_CASE("maps lines that are malformed are refused") {
  CHECK_FALSE(parses(""));
  CHECK_FALSE(parses("1000 rw-p 00000000 00:00 0"));
  CHECK_FALSE(parses("2000-1000 rw-p 00000000 00:00 0"));   // end before start
  CHECK_FALSE(parses("1000-1000 rw-p 00000000 00:00 0"));   // empty
  CHECK_FALSE(parses("1000-2000 rw-q 00000000 00:00 0"));
  CHECK_FALSE(parses("1000-2000 rwz- 00000000 00:00 0"));
  CHECK_FALSE(parses("1000-2000 rw-p"));
  CHECK_FALSE(parses("1000-2000 rw-p 0 00:00"));
  CHECK_FALSE(parses("10000000000000000-20000000000000000 rw-p 0 00:00 0"));  // 17 hex digits
  CHECK_FALSE(parses("x1000-2000 rw-p 0 00:00 0"));
}

TEST_CASE("a whole maps text") {
  const std::string text =
      "1000-2000 r--p 00000000 00:00 0 /bin/x\n"
      "2000-3000 rw-p 00000000 00:00 0\n"
      "\n"
      "7ffc0000-7ffd0000 rw-p 00000000 00:00 0 [stack]";  // no final newline
  MapEntry out[8];
  REQUIRE(parseMaps(text.data(), text.size(), out, 8) == 3);
  CHECK(out[2].kind == kMapStack);
  CHECK(parseMaps(text.data(), text.size(), out, 2) == -2);
  const std::string bad = "1000-2000 r--p 00000000 00:00 0\nnonsense\n";
  CHECK(parseMaps(bad.data(), bad.size(), out, 8) == -1);
  CHECK(parseMaps("", 0, out, 8) == 0);
}

TEST_CASE("the restorer parses its own /proc/self/maps") {
  FILE* f = fopen("/proc/self/maps", "r");
  REQUIRE(f != nullptr);
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
  fclose(f);
  std::vector<MapEntry> out(4096);
  int64_t count = parseMaps(text.data(), text.size(), out.data(), static_cast<uint32_t>(out.size()));
  REQUIRE(count > 3);
  bool stack = false, vdso = false;
  for (int64_t i = 0; i < count; ++i) {
    stack = stack || out[i].kind == kMapStack;
    vdso = vdso || out[i].kind == kMapVdso;
  }
  CHECK(stack);
  CHECK(vdso);
  VdsoUnit u = vdsoFromMaps(out.data(), static_cast<uint32_t>(count));
  CHECK(u.vdso.start == getauxval(AT_SYSINFO_EHDR));
}

// ---- gaps -----------------------------------------------------------------------------

Occupied occOf(const std::vector<uint64_t>& planBytes, const std::vector<Range>& extra) {
  const plan::Header* h = header(planBytes);
  return Occupied{plan::regions(h), h->regionCount, extra.data(), static_cast<uint32_t>(extra.size())};
}

TEST_CASE("gaps: the highest free place, with guard pages around it") {
  PlanFixture f;
  f.region(0x10000, 0x20000);
  f.region(0x30000, 0x40000);
  auto bytes = f.build();
  std::vector<Range> none;
  Occupied occ = occOf(bytes, none);

  CHECK(findGapTopDown(occ, P, 0, P, 0x100000) == 0x100000 - P);
  CHECK(findGapTopDown(occ, P, P, P, 0x100000) == 0x100000 - 2 * P);
  // Below the top region when hi cuts into it.
  CHECK(findGapTopDown(occ, P, P, P, 0x38000) == 0x30000 - 2 * P);
  // The space between the regions is 16 pages: 14 pages fit with guards, 15 do not.
  CHECK(findGapTopDown(occ, 14 * P, P, 0x20000, 0x30000) == 0x21000);
  CHECK(findGapTopDown(occ, 15 * P, P, 0x20000, 0x30000) == 0);
  // Unaligned sizes round up to pages.
  CHECK(findGapTopDown(occ, 1, 0, P, 0x10000) == 0xf000);
  // Nothing at all below lo.
  CHECK(findGapTopDown(occ, P, 0, 0x40000, 0x40000) == 0);
  CHECK(findGapTopDown(occ, 0, 0, P, 0x100000) == 0);
}

TEST_CASE("gaps: extra ranges push the choice down, also across plan regions") {
  PlanFixture f;
  f.region(0x100000, 0x200000);
  auto bytes = f.build();
  std::vector<Range> extra = {{0x2f0000, 0x300000}, {0x280000, 0x2e0000}, {0x200000, 0x210000}};
  Occupied occ = occOf(bytes, extra);
  // Top: 0x2e0000..0x2f0000 has 16 pages: 14 fit with guards.
  CHECK(findGapTopDown(occ, 14 * P, P, P, 0x300000) == 0x2e1000);
  // 20 pages: between 0x210000 and 0x280000.
  CHECK(findGapTopDown(occ, 20 * P, P, P, 0x300000) == 0x280000 - 21 * P);
  // 0x80 pages: only below the plan region; 0x100 pages: nowhere.
  CHECK(findGapTopDown(occ, 0x80 * P, P, P, 0x300000) == 0x100000 - 0x81 * P);
  CHECK(findGapTopDown(occ, 0x100 * P, P, P, 0x300000) == 0);
  CHECK(isOccupied(occ, Range{0x1ff000, 0x201000}));
  CHECK(isOccupied(occ, Range{0x20f000, 0x211000}));
  CHECK_FALSE(isOccupied(occ, Range{0x210000, 0x280000}));
  CHECK_FALSE(isOccupied(occ, Range{5, 5}));
}

TEST_CASE("gaps: tens of thousands of regions are searched quickly") {
  PlanFixture f;
  // 60000 one-page regions with one-page holes: no 2-page gap with guards anywhere
  // above 0x10000000.
  for (uint64_t i = 0; i < 60000; ++i) f.region(0x10000000 + 2 * i * P, 0x10000000 + (2 * i + 1) * P);
  auto bytes = f.build();
  std::vector<Range> extra;
  // ... and 100 extra one-page ranges with one-page holes just below them.
  for (uint64_t i = 0; i < 100; ++i) extra.push_back(Range{0x10000000 - (i + 1) * 2 * P, 0x10000000 - (i + 1) * 2 * P + P});
  Occupied occ = occOf(bytes, extra);
  auto t0 = std::chrono::steady_clock::now();
  uint64_t s = findGapTopDown(occ, 2 * P, P, 0x100000, 0x10000000 + 120000 * P);
  auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  CHECK(s == 0x10000000 - 203 * P);  // just below the lowest extra range
  CHECK(ms < 1000);  // linear: well under a millisecond unsanitized
}

// ---- vDSO ------------------------------------------------------------------------------

VdsoUnit unit(uint64_t base, bool vclock = true) {
  VdsoUnit u{};
  u.vvar = Range{base, base + 4 * P};
  if (vclock) u.vvarVclock = Range{base + 4 * P, base + 6 * P};
  u.vdso = Range{base + 6 * P, base + 8 * P};
  if (!vclock) u.vdso = Range{base + 4 * P, base + 6 * P};
  return u;
}

TEST_CASE("vDSO units match when they have the same pieces, sizes and distances") {
  CHECK(matchVdso(unit(0x7f0000000000), unit(0x7e0000000000)) == nullptr);
  CHECK(unit(0x1000000).span().start == 0x1000000);
  CHECK(unit(0x1000000).span().end == 0x1000000 + 8 * P);
  CHECK(matchVdso(unit(0x7f0000000000), VdsoUnit{}) == nullptr);  // the image has none
  CHECK(matchVdso(VdsoUnit{}, unit(0x7f0000000000)) != nullptr);
  CHECK(std::string(matchVdso(unit(0x7f0000000000), unit(0x7e0000000000, false))).find("vvar_vclock") !=
        std::string::npos);
  VdsoUnit bigger = unit(0x7e0000000000);
  bigger.vdso.end += P;
  CHECK(std::string(matchVdso(unit(0x7f0000000000), bigger)).find("[vdso] size") != std::string::npos);
  VdsoUnit apart = unit(0x7e0000000000);
  apart.vdso = Range{apart.vdso.start + 16 * P, apart.vdso.end + 16 * P};
  CHECK(std::string(matchVdso(unit(0x7f0000000000), apart)).find("laid out") != std::string::npos);
}

TEST_CASE("vDSO pieces come from the plan's regions of those kinds") {
  PlanFixture f;
  f.region(0x1000000, 0x1004000, PROT_READ, plan::kKindVvar);
  f.region(0x1004000, 0x1006000, PROT_READ, plan::kKindVvarVclock);
  f.region(0x1006000, 0x1008000, PROT_READ | PROT_EXEC, plan::kKindVdso);
  auto bytes = f.build();
  VdsoUnit u{};
  REQUIRE(vdsoFromPlan(header(bytes), &u) == nullptr);
  CHECK(u.vvar.start == 0x1000000);
  CHECK(u.vdso.end == 0x1008000);
  CHECK(matchVdso(unit(0x7f0000000000), u) == nullptr);
  f.region(0x2000000, 0x2002000, PROT_READ | PROT_EXEC, plan::kKindVdso);
  auto twice = f.build();
  CHECK(vdsoFromPlan(header(twice), &u) != nullptr);
}

// ---- moving out of the way --------------------------------------------------------------

struct Scenario {
  PlanFixture plan;
  std::vector<MapEntry> maps;
  Range image{0x7f1000000000, 0x7f1000040000};
  Range planMap{0x7f1000100000, 0x7f1000102000};
  Range stack{0x7ffd00000000, 0x7ffd00021000};
  VdsoUnit vdso = unit(0x7ffd00100000);
  std::vector<uint64_t> bytes;

  SelfInput input() {
    bytes = plan.build();
    maps.clear();
    maps.push_back(MapEntry{image.start, image.end, 5, kMapOther});
    maps.push_back(MapEntry{planMap.start, planMap.end, 1, kMapOther});
    maps.push_back(MapEntry{stack.start, stack.end, 3, kMapStack});
    maps.push_back(MapEntry{vdso.vvar.start, vdso.vvar.end, 1, kMapVvar});
    maps.push_back(MapEntry{vdso.vvarVclock.start, vdso.vvarVclock.end, 1, kMapVvarVclock});
    maps.push_back(MapEntry{vdso.vdso.start, vdso.vdso.end, 5, kMapVdso});
    SelfInput in{};
    in.plan = header(bytes);
    in.image = image;
    in.planMap = planMap;
    in.vdso = vdso;
    in.maps = maps.data();
    in.mapCount = static_cast<uint32_t>(maps.size());
    in.stackLimit = 8 << 20;
    in.lo = 1ull << 32;
    in.hi = kUserTop;
    return in;
  }
};

// Every range the layout chose is free of the plan's regions, the growth room, what is
// mapped now and the other chosen ranges.
void checkChosenRangesAreFree(const SelfInput& in, const SelfLayout& L) {
  std::vector<Range> taken;
  Range res[256];
  int64_t n = growthReservations(in.plan, in.stackLimit, res, 256);
  REQUIRE(n >= 0);
  for (int64_t i = 0; i < n; ++i) taken.push_back(res[i]);
  for (uint32_t i = 0; i < in.mapCount; ++i) taken.push_back(Range{in.maps[i].start, in.maps[i].end});
  Occupied occ{plan::regions(in.plan), in.plan->regionCount, taken.data(), static_cast<uint32_t>(taken.size())};
  std::vector<Range> chosen = {L.privateStack};
  if (!L.tempStacks.empty()) chosen.push_back(L.tempStacks);
  if (L.moveImage) chosen.push_back(Range{L.imageTo, L.imageTo + in.image.size()});
  if (L.movePlan) chosen.push_back(Range{L.planTo, L.planTo + in.planMap.size()});
  if (L.moveVdso) chosen.push_back(Range{L.vdsoTo, L.vdsoTo + in.vdso.span().size()});
  for (size_t i = 0; i < chosen.size(); ++i) {
    CAPTURE(i);
    CHECK_FALSE(chosen[i].empty());
    CHECK(chosen[i].start % P == 0);
    CHECK_FALSE(isOccupied(occ, chosen[i]));
    for (size_t j = 0; j < i; ++j) CHECK_FALSE(overlaps(chosen[i], chosen[j]));
  }
}

TEST_CASE("self layout: nothing in the way, nothing moves; stacks go in a free gap") {
  Scenario s;
  s.plan.region(0x555500000000, 0x555500010000);
  s.plan.region(0x7ff000000000, 0x7ff000100000);
  s.plan.thread(0x7ff0000ff000, true);
  s.plan.thread(0x7ff0000fe000, false);
  s.plan.thread(0x7ff0000fd000, false);
  SelfInput in = s.input();
  SelfLayout L{};
  REQUIRE(computeSelfLayout(in, &L) == nullptr);
  CHECK_FALSE(L.moveImage);
  CHECK_FALSE(L.movePlan);
  CHECK_FALSE(L.moveVdso);
  CHECK(L.privateStack.size() == kPrivateStackSize);
  CHECK(L.tempStacks.size() == 2 * kTempStackSize);
  checkChosenRangesAreFree(in, L);
}

TEST_CASE("self layout: the image can be moved even when nothing is in the way") {
  Scenario s;
  s.plan.region(0x555500000000, 0x555500010000);
  s.plan.thread(0x555500008000, true);
  SelfInput in = s.input();
  in.alwaysMoveImage = true;
  SelfLayout L{};
  REQUIRE(computeSelfLayout(in, &L) == nullptr);
  CHECK(L.moveImage);
  CHECK_FALSE(overlaps(Range{L.imageTo, L.imageTo + s.image.size()}, s.image));
  checkChosenRangesAreFree(in, L);
}

TEST_CASE("self layout: the restorer's image, the plan and the vDSO move when a region needs their place") {
  Scenario s;
  s.plan.region(0x7f1000010000, 0x7f1000011000);  // inside the restorer's image
  s.plan.region(0x7f1000101000, 0x7f1000200000);  // over the plan's second page
  s.plan.region(0x7ffd00106000, 0x7ffd00107000);  // over the current [vdso]
  s.plan.thread(0x7f1000010000, true);
  SelfInput in = s.input();
  SelfLayout L{};
  REQUIRE(computeSelfLayout(in, &L) == nullptr);
  CHECK(L.moveImage);
  CHECK(L.movePlan);
  CHECK(L.moveVdso);
  CHECK(L.tempStacks.empty());
  checkChosenRangesAreFree(in, L);
}

TEST_CASE("self layout: room for a restored stack to grow and for brk counts as in the way") {
  Scenario s;
  // The restored stack ends 64 KiB above the restorer's image: the image sits in the
  // stack's growth room.
  s.plan.region(s.image.end + 0x10000, s.image.end + 0x30000, PROT_READ | PROT_WRITE, plan::kKindStack);
  s.plan.thread(s.image.end + 0x20000, true);
  SelfInput in = s.input();
  SelfLayout L{};
  REQUIRE(computeSelfLayout(in, &L) == nullptr);
  CHECK(L.moveImage);
  CHECK_FALSE(L.movePlan);  // the plan only needs to avoid regions: it is gone at the end
  checkChosenRangesAreFree(in, L);

  // The heap ends 1 MiB below the restorer's image: the image sits in brk's room.
  Scenario h;
  h.plan.region(h.image.start - 0x200000, h.image.start - 0x100000, PROT_READ | PROT_WRITE, plan::kKindHeap);
  h.plan.header.flags = plan::kPlanHasMmLayout;
  h.plan.header.mm.startBrk = h.image.start - 0x200000;
  h.plan.header.mm.brk = h.image.start - 0x100000;
  h.plan.thread(h.image.start - 0x180000, true);
  in = h.input();
  REQUIRE(computeSelfLayout(in, &L) == nullptr);
  CHECK(L.moveImage);
  CHECK_FALSE(L.movePlan);
  checkChosenRangesAreFree(in, L);
}

TEST_CASE("self layout: the vDSO") {
  SUBCASE("already where the image had it: stays") {
    Scenario s;
    s.plan.region(0x555500000000 - P, 0x555500000000 + P);
    s.plan.region(s.vdso.vvar.start, s.vdso.vvar.end, PROT_READ, plan::kKindVvar);
    s.plan.region(s.vdso.vvarVclock.start, s.vdso.vvarVclock.end, PROT_READ, plan::kKindVvarVclock);
    s.plan.region(s.vdso.vdso.start, s.vdso.vdso.end, PROT_READ | PROT_EXEC, plan::kKindVdso);
    s.plan.thread(0x555500000000, true);
    SelfInput in = s.input();
    SelfLayout L{};
    REQUIRE(computeSelfLayout(in, &L) == nullptr);
    CHECK_FALSE(L.moveVdso);
  }
  SUBCASE("the image's unit overlaps the current one: parked first") {
    Scenario s;
    const uint64_t b = s.vdso.span().start + 2 * P;
    s.plan.region(0x555500000000, 0x555500001000);
    s.plan.region(b, b + 4 * P, PROT_READ, plan::kKindVvar);
    s.plan.region(b + 4 * P, b + 6 * P, PROT_READ, plan::kKindVvarVclock);
    s.plan.region(b + 6 * P, b + 8 * P, PROT_READ | PROT_EXEC, plan::kKindVdso);
    s.plan.thread(0x555500000000, true);
    SelfInput in = s.input();
    SelfLayout L{};
    REQUIRE(computeSelfLayout(in, &L) == nullptr);
    CHECK(L.moveVdso);
    checkChosenRangesAreFree(in, L);
  }
  SUBCASE("the image had none and the current one is in a growth room: parked") {
    Scenario s;
    s.plan.region(s.vdso.span().end + 0x100000, s.vdso.span().end + 0x120000, PROT_READ | PROT_WRITE,
                  plan::kKindStack);
    s.plan.thread(s.vdso.span().end + 0x110000, true);
    SelfInput in = s.input();
    SelfLayout L{};
    REQUIRE(computeSelfLayout(in, &L) == nullptr);
    CHECK(L.moveVdso);
    checkChosenRangesAreFree(in, L);
  }
}

TEST_CASE("self layout: no room at all is an error, not a collision") {
  Scenario s;
  s.plan.region(0x10000, kUserTop);  // everything
  s.plan.thread(0x20000, true);
  SelfInput in = s.input();
  SelfLayout L{};
  const char* err = computeSelfLayout(in, &L);
  REQUIRE(err != nullptr);
  CHECK(std::string(err).find("no free gap") != std::string::npos);
}

TEST_CASE("self layout: random address spaces never get a chosen range on anything taken") {
  std::mt19937_64 rng(12345);
  for (int round = 0; round < 300; ++round) {
    Scenario s;
    // Random sorted regions, some stacks and heaps, clustered where the restorer sits.
    uint64_t at = 0x10000;
    const int n = 1 + static_cast<int>(rng() % 60);
    for (int i = 0; i < n; ++i) {
      at += P * (1 + rng() % 4096);
      if (rng() % 3 == 0) at = std::max(at, s.image.start - P * (rng() % 512));
      const uint64_t len = P * (1 + rng() % 512);
      if (at + len >= kUserTop) break;
      uint32_t kind = plan::kKindAnonymous;
      if (rng() % 10 == 0) kind = plan::kKindStack;
      if (rng() % 10 == 0) kind = plan::kKindHeap;
      s.plan.region(at, at + len, PROT_READ | PROT_WRITE, kind);
      at += len;
    }
    s.plan.thread(s.plan.regions[0].start, true);
    for (int t = 0; t < static_cast<int>(rng() % 5); ++t) s.plan.thread(s.plan.regions[0].start, false);
    SelfInput in = s.input();
    SelfLayout L{};
    REQUIRE(computeSelfLayout(in, &L) == nullptr);
    CAPTURE(round);
    std::vector<Range> res(256);
    int64_t nres = growthReservations(in.plan, in.stackLimit, res.data(), 256);
    Occupied withGrowth{plan::regions(in.plan), in.plan->regionCount, res.data(), static_cast<uint32_t>(nres)};
    Occupied regionsOnly{plan::regions(in.plan), in.plan->regionCount, nullptr, 0};
    CHECK(L.moveImage == isOccupied(withGrowth, s.image));
    CHECK(L.movePlan == isOccupied(regionsOnly, s.planMap));
    checkChosenRangesAreFree(in, L);
  }
}

TEST_CASE("growth reservations: below stacks, above the heap and brk") {
  PlanFixture f;
  f.region(0x555500000000, 0x555500100000, PROT_READ | PROT_WRITE, plan::kKindHeap);
  f.region(0x7f0000100000, 0x7f0000101000).mapFlags |= MAP_GROWSDOWN;
  f.region(0x7ffd00000000, 0x7ffd00021000, PROT_READ | PROT_WRITE, plan::kKindStack);
  f.header.flags = plan::kPlanHasMmLayout;
  f.header.mm.startBrk = 0x555500000000;
  f.header.mm.brk = 0x555500100000;
  auto bytes = f.build();
  Range r[8];
  REQUIRE(growthReservations(header(bytes), 8 << 20, r, 8) == 4);
  // Sorted by region: heap, growsdown region, stack; then brk.
  CHECK(r[0].start == 0x555500100000);
  CHECK(r[0].end == 0x555500100000 + kHeapReserve);
  CHECK(r[1].end == 0x7f0000100000);
  CHECK(r[1].start == 0x7f0000101000 - (8 << 20) - kStackGuardGap);
  CHECK(r[2].end == 0x7ffd00000000);
  CHECK(r[2].start == 0x7ffd00021000 - (8 << 20) - kStackGuardGap);
  CHECK(r[3].start == 0x555500000000);
  CHECK(r[3].end == 0x555500100000 + kHeapReserve);
  CHECK(growthReservations(header(bytes), 8 << 20, r, 3) == -1);
  // An unlimited stack rlimit reserves at most kMaxStackReserve.
  REQUIRE(growthReservations(header(bytes), ~0ull, r, 8) == 4);
  CHECK(r[2].start == 0x7ffd00021000 - kMaxStackReserve - kStackGuardGap);
}

// ---- plan checks -----------------------------------------------------------------------

std::string planProblem(const PlanFixture& f, int planFd = 20, int imageFd = 21, int64_t* bad = nullptr,
                        int logFd = 22) {
  auto bytes = f.build();
  REQUIRE(plan::validate(bytes.data(), bytes.size() * 8) == nullptr);
  int64_t idx = -2;
  const char* p = checkPlanForRestore(header(bytes), planFd, imageFd, logFd, &idx);
  if (bad != nullptr) *bad = idx;
  return p == nullptr ? "" : p;
}

TEST_CASE("plan checks: what rt_sigreturn and the kernel will touch lies in restored memory") {
  PlanFixture f;
  f.region(0x100000, 0x110000);
  f.region(0x110000, 0x120000, PROT_READ);
  f.region(0x200000, 0x201000, PROT_READ, plan::kKindVdso);
  f.thread(0x10f000, true);
  CHECK(planProblem(f) == "");

  SUBCASE("frame straddling two back-to-back regions is fine") {
    f.threads[0].sigframeAddr = 0x10ff80;
    CHECK(planProblem(f) == "");
  }
  SUBCASE("frame outside") {
    f.threads[0].sigframeAddr = 0x300000;
    CHECK(planProblem(f).find("signal frame address") != std::string::npos);
  }
  SUBCASE("frame in the vDSO") {
    f.threads[0].sigframeAddr = 0x200000;
    CHECK(planProblem(f).find("signal frame address") != std::string::npos);
  }
  SUBCASE("frame copied from the plan must land in writable memory") {
    f.threads[0].sigframeAddr = 0x110100;
    f.threads[0].sigframeLen = 64;
    f.blob.resize(64);
    CHECK(planProblem(f).find("writable") != std::string::npos);
    f.threads[0].sigframeAddr = 0x100100;
    CHECK(planProblem(f) == "");
  }
  SUBCASE("tid address and rseq area must be writable") {
    f.threads[0].kernel.tidAddress = 0x110000;
    CHECK(planProblem(f).find("tid address") != std::string::npos);
    f.threads[0].kernel.tidAddress = 0x100010;
    f.threads[0].kernel.rseqAddr = 0x10fff0;
    f.threads[0].kernel.rseqLen = 20;  // counts as 32: reaches into the read-only region
    CHECK(planProblem(f).find("rseq") != std::string::npos);
    f.threads[0].kernel.rseqAddr = 0x10ffc0;
    CHECK(planProblem(f) == "");
  }
  SUBCASE("the plan and image fds must not be application fds") {
    f.fds.push_back(plan::Fd{3, 0});
    f.fds.push_back(plan::Fd{21, plan::kFdCloexec});
    int64_t bad = -2;
    CHECK(planProblem(f, 20, 21, &bad).find("application fd") != std::string::npos);
    CHECK(bad == 1);
    CHECK(planProblem(f, 20, 20).find("same") != std::string::npos);
  }
  SUBCASE("the log fd must not be an application fd, unless it is the default fd 2") {
    f.fds.push_back(plan::Fd{2, 0});
    f.fds.push_back(plan::Fd{22, 0});
    int64_t bad = -2;
    CHECK(planProblem(f, 20, 21, &bad, 22).find("log fd") != std::string::npos);
    CHECK(bad == 1);
    CHECK(planProblem(f, 20, 21, nullptr, 2) == "");
  }
  SUBCASE("no saved pages for the vDSO") {
    f.pages.push_back(plan::Pages{0x200000, 0x1000, 0, 2, plan::kPagesCopy});
    int64_t bad = -2;
    CHECK(planProblem(f, 20, 21, &bad).find("vDSO") != std::string::npos);
    CHECK(bad == 0);
  }
  SUBCASE("thread count") {
    for (uint32_t i = 0; i < kMaxThreads; ++i) f.thread(0x10f000, false);
    CHECK(planProblem(f).find("more threads") != std::string::npos);
  }
}

TEST_CASE("mm layout: the kernel's PR_SET_MM_MAP checks, each named") {
  plan::MmLayout ok{};
  ok.startCode = 0x555500000000;
  ok.endCode = 0x555500010000;
  ok.startData = 0x555500020000;
  ok.endData = 0x555500021000;
  ok.startBrk = 0x555600000000;
  ok.brk = 0x555600100000;
  ok.startStack = 0x7ffd00010000;
  ok.argStart = 0x7ffd00020000;
  ok.argEnd = 0x7ffd00020010;
  ok.envStart = 0x7ffd00020010;
  ok.envEnd = 0x7ffd00020100;
  ok.auxvLen = 368;
  CHECK(checkMmLayout(ok, 65536, ~0ull, 448) == nullptr);
  auto why = [&](plan::MmLayout m, uint64_t dataLimit = ~0ull) {
    const char* w = checkMmLayout(m, 65536, dataLimit, 448);
    return std::string(w ? w : "");
  };
  plan::MmLayout m = ok;
  m.startCode = 4096;
  CHECK(why(m).find("start_code is outside") != std::string::npos);
  m = ok;
  m.envEnd = kUserTop + P;
  CHECK(why(m).find("env_end is outside") != std::string::npos);
  m = ok;
  m.endCode = m.startCode;
  CHECK(why(m).find("start_code is not below end_code") != std::string::npos);
  m = ok;
  m.brk = m.startBrk - P;
  CHECK(why(m).find("start_brk is above brk") != std::string::npos);
  m = ok;
  m.argEnd = m.argStart - 1;
  CHECK(why(m).find("arg_start") != std::string::npos);
  CHECK(why(ok, 0x100000).find("RLIMIT_DATA") != std::string::npos);
  CHECK(why(ok, 0x102000) == "");
  m = ok;
  m.auxvLen = 464;
  CHECK(why(m).find("auxv is longer") != std::string::npos);
  // Not checked by the kernel: brk below the data end, addresses without a mapping.
  m = ok;
  m.startBrk = m.brk = m.startData;
  CHECK(why(m) == "");
}

TEST_CASE("fd arguments") {
  CHECK(parseFdArg("0") == 0);
  CHECK(parseFdArg("21") == 21);
  CHECK(parseFdArg("2147483647") == 2147483647);
  CHECK(parseFdArg("2147483648") == -1);
  CHECK(parseFdArg("12345678901") == -1);
  CHECK(parseFdArg("") == -1);
  CHECK(parseFdArg(nullptr) == -1);
  CHECK(parseFdArg("-1") == -1);
  CHECK(parseFdArg("3x") == -1);
  CHECK(parseFdArg(" 3") == -1);
}

TEST_CASE("message lines") {
  Line l;
  l.str("mapping region ").range(0x7f0000001000, 0x7f0000002000).str(": errno ").dec(-(-12));
  CHECK(std::string(l.data()) == "mapping region 0x7f0000001000-0x7f0000002000: errno 12");
  Line z;
  z.hex(0).str(" ").dec(-5).str(" ").udec(18446744073709551615ull).str(" ").dec(INT64_MIN);
  CHECK(std::string(z.data()) == "0x0 -5 18446744073709551615 -9223372036854775808");
  Line big;
  for (int i = 0; i < 100; ++i) big.str("0123456789");
  CHECK(big.truncated());
  CHECK(big.size() == 511);
}

TEST_CASE("read batches: copied runs whose image bytes follow each other, up to the limit") {
  // Pre-copy's later rounds: single pages, scattered in memory, one after the other in
  // the image; a lazy run or a gap in the image ends the batch.
  plan::Pages runs[] = {
      {0x10000, P, 0x1000, 0, plan::kPagesCopy},       // 0
      {0x90000, P, 0x2000, 0, plan::kPagesCopy},       // 1: follows 0 in the image
      {0x30000, 2 * P, 0x3000, 0, plan::kPagesCopy},   // 2: follows 1
      {0x50000, P, 0x6000, 0, plan::kPagesCopy},       // 3: a gap in the image before it
      {0x60000, P, 0x7000, 0, plan::kPagesLazy},       // 4: not copied
      {0x70000, P, 0x8000, 0, plan::kPagesCopy},       // 5
  };
  auto copied = [](const plan::Pages& p) { return p.method == plan::kPagesCopy; };
  CHECK(readBatchEnd(runs, 6, 0, kMaxReadBatch, copied) == 3);
  CHECK(readBatchEnd(runs, 6, 3, kMaxReadBatch, copied) == 4);
  CHECK(readBatchEnd(runs, 6, 5, kMaxReadBatch, copied) == 6);
  CHECK(readBatchEnd(runs, 6, 0, 2, copied) == 2);  // the limit
  CHECK(readBatchEnd(runs, 6, 1, 1, copied) == 2);  // always the first run itself
}

}  // namespace
}  // namespace mig::restore
