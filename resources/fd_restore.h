// The restart's walk over the saved fds of an image, in this process (migctl
// restart), before it execs the restorer: each record's kind checks it, then makes
// its fd at its number (fd_kinds.h); dup()ed fds share one open file; a migrated
// job's home fds get a local stand-in. Plus the helpers the kinds' restores share.
#pragma once

#include "image/file_reader.h"
#include "resources/fd_kind.h"
#include "shim/forward/forward_config.h"

namespace mig::resources {

struct FileRestoreOptions {
  bool force = false;     // restore against files that changed since the checkpoint
  bool migrated = false;  // the job migrated here: its home files are not checked here
};

// Where the restart says what it has to say (its warnings, why it failed, and the
// lines of its page server and of the restorer, which get this fd): the stderr
// `migctl restart` was started with (STDERR_FILENO until set), or, for a restart
// shadowd or a deputy runs, the hop's log in the spool. Never the restored job's fd
// 2, which restoreFiles puts in place: the job's stderr gets only what the job writes.
// restoreFiles moves it above every saved fd number (close-on-exec; the restart
// clears that for the restorer).
int restartMessages();
void setRestartMessages(int fd);

// Refuses (throws, one line naming the fd) an image whose fds cannot be restored:
// metadata a kind finds insane, and, unless options.force or options.migrated, a
// regular file the process had open that is missing or changed since the checkpoint.
void checkSavedFiles(image::FileReader& image, const FileRestoreOptions& options);

// The same for the records of one files section; `section` names it in errors.
void checkFdRecords(image::schema::Files::Reader files, kj::StringPtr section, const FileRestoreOptions& options);

// `keep` are fds of ours that must survive (the image and the plan); they are moved
// above every saved fd number first, and their new numbers are written back.
// With `migrated` (a job that migrated here) the saved fds of kinds that stay at
// home (FdKind::onMigration) are its home fds, held there by its deputy: each number
// gets a stand-in and is marked forwarded (and stream) in *migrated; the others are
// recreated here as they were. `caller` are the fds migctl's caller gave it
// (CallerFds::atStartup): on a restart only those stand in for saved home streams.
// `treePipes`: restarting a member of a tree, the pipes it shares with the others.
// `keepInherited` (a hop back home, deputy/homecoming.h): a saved fd of a kind that
// stays at home on migration whose number this process inherited open is left as it
// is (the deputy held it for the job); the others are made as on any restart.
// `heldFrom` (>= 0: a child born away coming home, migctl/tree_restart.h): the deputy's
// fds are held from that number up, where they stay (its shim puts each at its number,
// shim/forward/activation.cc); a saved fd of a kind that stays at home gets /dev/null
// as a placeholder meanwhile.
void restoreFiles(image::FileReader& image, int* keep, size_t keepCount, const CallerFds& caller,
                  forward::Config* migrated = nullptr, const TreePipes* treePipes = nullptr,
                  bool keepInherited = false, int heldFrom = -1);

// At a tree's restart, before its members are forked: the socketpair whose ends are
// the `unixSocket` records `a` and `b` (in two members), with each end's options and
// what waited to be read on each. Throws one line naming the fd.
void makeTreeSocketpair(FdRecord::Reader a, FdRecord::Reader b, const CallerFds& caller, kj::AutoCloseFd& aEnd,
                        kj::AutoCloseFd& bEnd);

// For the kinds' restore():

// Moves `fd` to `target` (closing what was there), not close-on-exec.
void placeAt(kj::AutoCloseFd fd, int target);

// Opens `path` with the record's flags (nothing that creates or truncates).
kj::AutoCloseFd openSaved(FdRecord::Reader f, const char* path);

// Puts the saved offset back (nothing for fds that cannot seek).
void seekSaved(int fd, FdRecord::Reader f);

// openSaved, seekSaved and placeAt the record's number: a file or device reopened.
void reopenSaved(FdRecord::Reader f, const char* path);

// A check's error for metadata no writer of ours makes: "section N (files) at byte
// B: invalid metadata: WHY", as the image reader says it.
[[noreturn]] void invalidRecord(const CheckContext& ctx, kj::StringPtr why);

}  // namespace mig::resources
