// When a moved process tree's hop back home restores its members into their deputies
// (docs/design.md "A hop back home"; deputy/homecoming.h): decided per member by home
// (Node.receive, which sees one ticket at a time) and checked for the whole tree by the
// sender (send_command.cc sendTree), so that the tree comes home all local or not at all.
// Pure: both sides' facts are passed in, so the rules are tested alone. Also home's
// tally of the members' readiness at the tree's point of no return (TreeGoTally).
#pragma once

#include <kj/array.h>
#include <kj/common.h>
#include <kj/string.h>
#include <kj/vector.h>

#include <cstdint>

namespace mig::shadow {

// What home knows of one job record that matters here (a HomeJob, shadow/daemon.h).
struct TreeRecordFacts {
  uint64_t id = 0;
  uint64_t treeRoot = 0;  // 0: never moved as part of a tree
  bool migrating = false;
  bool ended = false;
  bool away = false;  // its location is another host
};

// Whether the record `id` among `records` comes home into its deputy. A job that never
// moved with a tree does. A tree's member does only when its whole tree comes home in
// one hop (home's moveTree marks every live member migrating): a member moved alone
// (--only) comes home as a moved job, its deputy kept, because its tree's other
// members still run away and are its deputies' children or parents.
inline bool memberComesHomeLocal(kj::ArrayPtr<const TreeRecordFacts> records, uint64_t id) {
  const TreeRecordFacts* self = nullptr;
  for (auto& r : records) {
    if (r.id == id) self = &r;
  }
  if (self == nullptr || !self->away) return false;
  if (self->treeRoot == 0) return true;
  if (!self->migrating) return false;
  for (auto& r : records) {
    if (r.ended) continue;
    const bool inTree = r.id == self->treeRoot || r.treeRoot == self->treeRoot;
    if (inTree && (!r.migrating || !r.away)) return false;
  }
  return true;
}

enum class TreeHomecoming { NONE, ALL, MIXED };

// The sender's view: each member's Node.receive said whether it comes home into its
// deputy. All or none; a mix is refused before anything is frozen.
inline TreeHomecoming treeHomecoming(kj::ArrayPtr<const bool> home) {
  size_t n = 0;
  for (bool h : home) n += h ? 1 : 0;
  if (n == 0) return TreeHomecoming::NONE;
  return n == home.size() ? TreeHomecoming::ALL : TreeHomecoming::MIXED;
}

// Home's side of the tree's point of no return (home_gate.h): each member's restorer,
// at its last step that can fail, says it is ready and waits. Go once every member of
// the hop is ready; a member that fails before that calls the whole return off (each
// deputy comes back, the tree runs on where it was). Decided once: a failure after the
// go changes nothing (every member is past its last step that can fail), and a member
// ready after a call-off is called off too. Members are told apart by their PID at home.
class TreeGoTally {
 public:
  enum class Step { WAIT, GO, CALL_OFF };
  explicit TreeGoTally(uint32_t members) : members_(members) {}

  Step ready(int32_t pid) {
    if (decided_ != Step::WAIT) return decided_;
    bool seen = false;
    for (int32_t p : ready_) seen |= p == pid;
    if (!seen) ready_.add(pid);
    if (ready_.size() >= members_) decided_ = Step::GO;
    return decided_;
  }
  // Returns CALL_OFF when this failure calls the return off (now or before), else GO.
  Step failed() {
    if (decided_ == Step::WAIT) decided_ = Step::CALL_OFF;
    return decided_;
  }
  Step decided() const { return decided_; }

 private:
  uint32_t members_;
  kj::Vector<int32_t> ready_;
  Step decided_ = Step::WAIT;
};

}  // namespace mig::shadow
