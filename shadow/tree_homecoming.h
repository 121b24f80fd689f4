// When a moved process tree's hop back home restores its members into their deputies
// (docs/design.md "A hop back home"; deputy/homecoming.h): decided per member by home
// (Node.receive, which sees one ticket at a time) and checked for the whole tree by the
// sender (send_command.cc sendTree), so that the tree comes home all local or not at all.
// Pure: both sides' facts are passed in, so the rules are tested alone.
#pragma once

#include <kj/array.h>
#include <kj/common.h>
#include <kj/string.h>

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

}  // namespace mig::shadow
