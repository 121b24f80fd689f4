// System V IPC objects a job uses: shared memory segments (shmget/shmat),
// semaphore sets (semget) and message queues (msgget). They belong to no process:
// the kernel keeps them, by key and id, until removed, and a program names them by
// the id it got (an int in its memory). A checkpoint takes the job's objects with
// their contents (segment bytes, semaphore values, queued messages with their types,
// in order), key, id, owner and mode; the restart makes them again with the same
// key and id (the kernel's {shm,sem,msg}_next_id, root only) before the job runs,
// or refuses in one line naming the key or id that is taken. A segment's
// attachments come back as attachments (the restorer's shmat, image/restore_plan.h
// kSourceSysvShm), one object for every member of a tree.
//
// Which objects are the job's: the kernel records no owner process, only the last
// process that used each, so an object is the job's when a member is attached to
// it, created it (shm_cpid) or was the last to use it (shm_lpid, a semaphore's
// sempid, a queue's msg_lspid/msg_lrpid) and it belongs to (or was made by) the
// user the job runs as. An object the job made but has not used yet (no attach, no
// semop or SETVAL/SETALL, no message) is not seen. The restart
// makes the objects in the process that becomes the job (a tree's root), so that
// they are seen again as the job's at its next checkpoint.
#pragma once

#include "image/file_reader.h"
#include "image/image.capnp.h"
#include "image/writer.h"

#include <kj/string.h>
#include <kj/vector.h>

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace mig::resources {

struct SysvPerm {
  int32_t key, id;
  uint32_t uid, gid, mode;
};

struct SysvIpc {
  struct Shm {
    SysvPerm perm;
    uint64_t size;
    bool removed;
  };
  struct Sem {
    SysvPerm perm;
    std::vector<uint16_t> values;
  };
  struct Msg {
    SysvPerm perm;
    uint64_t qbytes;
    std::vector<std::pair<long, std::string>> messages;
  };
  kj::Vector<Shm> shm;
  kj::Vector<Sem> sem;
  kj::Vector<Msg> msg;
  bool empty() const { return shm.empty() && sem.empty() && msg.empty(); }
};

// The objects of the processes `pids` (kernel PIDs, all parked: nothing changes
// them meanwhile). Throws (one line) when one cannot be read.
SysvIpc findSysvIpc(kj::ArrayPtr<const pid_t> pids);

// One line naming the first object of `pids`, for a refusal; nullptr when none.
kj::Maybe<kj::String> firstSysvObject(kj::ArrayPtr<const pid_t> pids);

// A migration moves the job's objects with it (made again on the new host with their
// keys and ids, removed here once the hop commits), so the rule that never leaves two
// live copies that diverge: an object moves only if every process the kernel records
// as using it is one of the job's. What the kernel records of one object:
struct SysvUse {
  std::vector<pid_t> users;     // a segment's creator and last user (shm_cpid,
                                // shm_lpid), each semaphore's last (sempid), a queue's
                                // last sender and receiver (lspid, lrpid); 0: none yet
  uint64_t attachments = 0;     // a segment's shm_nattch
  uint64_t jobAttachments = 0;  // its attachments in the job's processes' memory maps
};
struct OutsideUse {
  pid_t pid = 0;                // a live process outside the job that used it, or 0 and
  uint64_t attachments = 0;     // this many attachments of processes outside the job
};
// The first use of the object by a process outside the job (`members`, kernel PIDs),
// or nullptr. A recorded PID that is no live process now (`alive`) uses nothing (it
// ended; a zombie counts as ended). A PID reused since by a process outside the job
// counts as a use: refused rather than guessed.
kj::Maybe<OutsideUse> outsideUse(const SysvUse& use, const std::set<pid_t>& members,
                                 const std::function<bool(pid_t)>& alive);

// The refusal for the first of the job's objects (those findSysvIpc(pids) takes) that
// a process outside `pids` uses, one line naming the object and that process; nullptr
// when every use is the job's.
kj::Maybe<kj::String> sysvUsedOutside(kj::ArrayPtr<const pid_t> pids);

// One object's key, id, owner and mode into the image.
void setPerm(image::schema::SysvPerm::Builder out, const SysvPerm& p);

// Fills the ipc section's SysV lists; segment contents are placed from `dataAt`
// (advanced past them) and written, in the same order, by writeSysvData.
void setSysvIpc(const SysvIpc& objects, image::schema::Ipc::Builder ipc, uint64_t& dataAt);
void writeSysvData(const SysvIpc& objects, image::ImageWriter& w);

// At the restart, in the process that becomes the job (or the tree's root), before
// it runs: makes every object of the image's ipc section with its key, id, owner,
// mode and contents. Throws one line when one cannot be made (key or id taken, no
// privilege to choose ids), after removing those it made.
void restoreSysvIpc(image::FileReader& img);

// Removes the image's objects that are still there with the same id and key: after
// `checkpoint --stop` (the job ended, its objects are in the image) and when a
// restart that made them failed. Returns how many it removed.
uint32_t removeSysvIpc(image::FileReader& img);
uint32_t removeSysvIpc(const SysvIpc& objects);

}  // namespace mig::resources
