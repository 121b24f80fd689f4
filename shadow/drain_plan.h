// Which of a drain's guests move, and with whom (shadow/drain.cc): a guest that moved
// with a process tree moves on with it, in one hop of the whole tree, never alone (a
// tree split over hosts no later hop takes whole). Pure, for drain_plan_test.cc.
#pragma once

#include <kj/common.h>
#include <kj/function.h>
#include <kj/vector.h>

#include <cstdint>

namespace mig::shadow {

struct DrainStep {
  enum class Kind { ALONE, TREE, REFUSED };
  Kind kind = Kind::ALONE;
  size_t guest = 0;                // ALONE, REFUSED: the guest's index in `guests`
  uint64_t id = 0;                 // TREE: the tree's root
  kj::Vector<uint64_t> members;    // TREE: its other members, in its home's order
  size_t away = 0;                 // REFUSED: index in its tree of the first member not here
};

// `guests`: the job ids to move, in the drain's order; `trees[i]`: guest i's tree as its
// home says (root first; empty: it moved alone); `here(id)`: that job runs here and
// may leave now. A tree whose members are all here is one TREE step, at its first
// guest's place; every guest of a tree that is not is REFUSED; each guest once.
// (A REFUSED step may come before the ALONE steps of guests listed earlier than its own
// index but after its tree's first guest: the drain's order is kept by tree.)
inline kj::Vector<DrainStep> planDrain(kj::ArrayPtr<const uint64_t> guests,
                                       kj::ArrayPtr<const kj::Vector<uint64_t>> trees,
                                       kj::Function<bool(uint64_t)> here) {
  kj::Vector<DrainStep> out;
  kj::Vector<uint64_t> done;
  auto seen = [&done](uint64_t id) {
    for (uint64_t d : done) {
      if (d == id) return true;
    }
    return false;
  };
  for (size_t i = 0; i < guests.size(); ++i) {
    if (seen(guests[i])) continue;
    const auto& tree = trees[i];
    if (tree.size() < 2) {  // (a job at home here, drain --all, has no id: 0, in no tree)
      DrainStep s;
      s.guest = i;
      out.add(kj::mv(s));
      continue;
    }
    size_t away = tree.size();
    for (size_t k = 0; k < tree.size() && away == tree.size(); ++k) {
      if (!here(tree[k])) away = k;
    }
    for (uint64_t id : tree) done.add(id);
    if (away == tree.size()) {
      DrainStep s;
      s.kind = DrainStep::Kind::TREE;
      s.id = tree[0];
      for (size_t k = 1; k < tree.size(); ++k) s.members.add(tree[k]);
      out.add(kj::mv(s));
      continue;
    }
    for (size_t m = i; m < guests.size(); ++m) {
      bool member = false;
      for (uint64_t id : tree) member = member || id == guests[m];
      if (!member) continue;
      DrainStep s;
      s.kind = DrainStep::Kind::REFUSED;
      s.guest = m;
      s.away = away;
      out.add(kj::mv(s));
    }
  }
  return out;
}

}  // namespace mig::shadow
