// The look at a job's children before its move, given a moment to settle (issue 12).
// A job that forks short children all the time (precopy_job every step, a shell's
// `$(...)`, make's recipes) often has one at any single look: running its last
// instructions, or ended and not yet waited for. Away from home such a child cannot
// follow the job, and refusing the move for a child that is gone a few milliseconds
// later made the user (and loopback_precopy.sh) guess whether to try again. So the
// sender looks again, a bounded number of times, until no child is left; what is left
// then is refused, and whether children came and went meanwhile tells the refusal to
// say "try again" (they are transient) or "once they have ended" (one that stays).
//
// Pure (the look and the pause are the caller's): unit-tested in settle_children_test.cc.
#pragma once

#include <kj/string.h>
#include <kj/vector.h>

#include <type_traits>

#include <sys/types.h>

namespace mig::shadow {

// Up to 100 looks 10 ms apart: about 1 s, only ever spent on a move that would be
// refused otherwise (a job with no child is looked at once).
inline constexpr unsigned kSettleLooks = 100;
inline constexpr unsigned kSettlePauseMs = 10;

template <typename Process>
struct SettledChildren {
  kj::Vector<Process> left;  // the children at the last look (empty: none any more)
  bool cameAndWent = false;  // some child seen at one look was gone at a later one, or new
};

namespace detail {
template <typename Process>
bool samePids(const kj::Vector<Process>& a, const kj::Vector<Process>& b) {
  if (a.size() != b.size()) return false;
  for (auto& p : a) {
    bool found = false;
    for (auto& q : b) found |= q.pid == p.pid;
    if (!found) return false;
  }
  return true;
}
}  // namespace detail

// look() -> kj::Vector<Process> (Process has a `pid`); pause() waits between looks.
// Stops at the first look with no child, or after `looks` looks.
template <typename Look, typename Pause>
auto settleChildren(Look&& look, Pause&& pause, unsigned looks = kSettleLooks) {
  using Process = typename std::remove_reference_t<decltype(look()[0])>;
  SettledChildren<std::remove_const_t<Process>> out;
  out.left = look();
  for (unsigned i = 1; i < looks && out.left.size() > 0; ++i) {
    pause();
    auto next = look();
    if (!detail::samePids(out.left, next)) out.cameAndWent = true;
    out.left = kj::mv(next);
  }
  return out;
}

// The children a refusal names: the first four, a zombie said to be one, "..." for more.
template <typename Process>
kj::String childNames(const kj::Vector<Process>& left) {
  kj::Vector<kj::String> names;
  for (size_t i = 0; i < left.size() && i < 4; ++i) {
    names.add(kj::str(left[i].command.c_str(), left[i].zombie ? " (ended, not yet waited for)" : ""));
  }
  if (left.size() > 4) names.add(kj::str("..."));
  return kj::strArray(names, ", ");
}

// Of a job's children born away (issue 12), which come with it on a hop to another
// host, the first that cannot: alive, and its shim does not answer (`answers(pid)`,
// its control socket) while it still runs (`runs(pid)`: one on its way out is not
// refused for). A zombie needs no shim: only its status moves.
template <typename Process, typename Answers, typename Runs>
const Process* firstNotUnderShim(const kj::Vector<Process>& children, Answers&& answers, Runs&& runs) {
  for (auto& p : children) {
    if (!p.zombie && !answers(p.pid) && runs(p.pid)) return &p;
  }
  return nullptr;
}

// Where the children born away could not go along (awayChildrenRefusal).
enum class BornAwayRefused {
  home,       // to the job's home: they do not come home yet
  lateStart,  // to another host, pre-copy or post-copy: they were started after the
              // look that would have made the hop stop-and-copy
};

// The one line refusing the move of a job away from home for its children born on
// this host: `holder` the tree's member that has them (0: the job moves as one
// process). `frozen`: seen after the freeze, so they appeared since the look (the hop
// is aborted before its commit). Children that came and went, or appeared since the
// look, are transient: "try again". One that stays keeps the job from home until it
// has ended and been waited for.
template <typename Process>
kj::String awayChildrenRefusal(long vpid, long holder, const kj::Vector<Process>& left, bool cameAndWent, bool frozen,
                               BornAwayRefused why) {
  const bool transient = cameAndWent || frozen || why == BornAwayRefused::lateStart;
  const char* cannot = why == BornAwayRefused::home ? "cannot come home with it yet"
                                                    : "move with it stop-and-copy only, and these were started as "
                                                      "it began to move";
  return kj::str(
      "cannot move PID ", vpid, holder == 0 ? kj::str(": it has ") : kj::str(" with its children: its process ", holder, " has "),
      left.size(), left.size() == 1 ? " child" : " children", " born on this host (", childNames(left),
      "), away from home, and children born away from home ", cannot, " (issue 12); ",
      frozen ? "the hop was aborted" : "nothing was frozen", ", the job runs on where it was; ",
      transient ? kj::str(frozen ? "they were started as it was frozen" : "its children come and go", ": try again")
                : kj::str("move it home once they have ended and been waited for"));
}

}  // namespace mig::shadow
