// See sysv_ipc.h. Queued messages are read with msgrcv(MSG_COPY), which copies the
// message at a position without taking it off the queue (a kernel with
// CONFIG_CHECKPOINT_RESTORE, as Debian's): the job's queue is left as it was.
#include "resources/sysv_ipc.h"

#include "image/image_error.h"
#include "resources/proc_file.h"
#include "resources/shared_memory.h"

#include <kj/debug.h>
#include <kj/io.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <functional>
#include <map>
#include <set>
#include <sys/file.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

#ifndef MSG_COPY
#define MSG_COPY 040000
#endif

namespace mig::resources {

using image::fail;

namespace {

union SemArg {
  int val;
  struct semid_ds* buf;
  unsigned short* array;
};

// The ids (and keys) /proc/sysvipc/KIND lists: the second column is the id.
std::vector<std::pair<int32_t, int32_t>> listIds(const char* kind) {
  std::vector<std::pair<int32_t, int32_t>> out;
  std::string path = std::string("/proc/sysvipc/") + kind;
  FILE* f = fopen(path.c_str(), "re");
  if (f == nullptr) return out;  // no SysV IPC in this kernel: nothing to take
  KJ_DEFER(fclose(f));
  char line[512];
  if (fgets(line, sizeof(line), f) == nullptr) return out;  // the column names
  while (fgets(line, sizeof(line), f) != nullptr) {
    int key, id;
    if (sscanf(line, "%d %d", &key, &id) == 2) out.emplace_back(key, id);
  }
  return out;
}

// The SysV segments process `pid` has attached: /SYSV<key> lines of its memory map,
// whose inode is the segment's id.
void attachedSegments(pid_t pid, std::set<int32_t>& ids) {
  forEachProcLine(pid, "maps", [&](const std::string& line) {
    unsigned long long inode;
    int at = 0;
    if (sscanf(line.c_str(), "%*x-%*x %*7s %*x %*31s %llu %n", &inode, &at) < 1) return;
    if (line.compare(static_cast<size_t>(at), 5, "/SYSV") == 0) ids.insert(static_cast<int32_t>(inode));
  });
}

// The effective uid of process `pid` (/proc/PID/status), or -1.
long effectiveUid(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/status";
  FILE* f = fopen(path.c_str(), "re");
  if (f == nullptr) return -1;
  KJ_DEFER(fclose(f));
  char line[256];
  while (fgets(line, sizeof(line), f) != nullptr) {
    long real, effective;
    if (sscanf(line, "Uid: %ld %ld", &real, &effective) == 2) return effective;
  }
  return -1;
}

SysvPerm permOf(const struct ipc_perm& p, int32_t id) {
  return SysvPerm{static_cast<int32_t>(p.__key), id, p.uid, p.gid, static_cast<uint32_t>(p.mode & 0777)};
}

kj::String hexKey(int32_t key) {
  char buf[16];
  snprintf(buf, sizeof(buf), "0x%08x", static_cast<uint32_t>(key));
  return kj::heapString(buf);
}

// "semaphore set 0x0000abcd (id 32768)", or "(IPC_PRIVATE, id 32768)".
kj::String describe(const char* what, int32_t key, int32_t id) {
  if (key == IPC_PRIVATE) return kj::str(what, " (IPC_PRIVATE, id ", id, ")");
  return kj::str(what, " with key ", hexKey(key), " (id ", id, ")");
}

}  // namespace

void setPerm(image::schema::SysvPerm::Builder out, const SysvPerm& p) {
  out.setKey(p.key);
  out.setId(p.id);
  out.setUid(p.uid);
  out.setGid(p.gid);
  out.setMode(p.mode);
}

namespace {

SysvPerm readPerm(image::schema::SysvPerm::Reader p) {
  return SysvPerm{p.getKey(), p.getId(), p.getUid(), p.getGid(), p.getMode()};
}

// The next object made of `kind` gets `id` (root only: checkpoint_restore_ns_capable).
void chooseNextId(const char* kind, int32_t id, kj::StringPtr what) {
  std::string path = std::string("/proc/sys/kernel/") + kind + "_next_id";
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  std::string v = std::to_string(id);
  bool ok = fd >= 0 && write(fd, v.data(), v.size()) == static_cast<ssize_t>(v.size());
  int err = errno;
  if (fd >= 0) close(fd);
  if (!ok) {
    fail(kj::str("cannot make ", what, " again with its id: writing ", path.c_str(), " failed (", strerror(err),
                 "); giving a System V IPC object its id back needs root"));
  }
}

// What a restart made so far, removed again if it fails.
struct Made {
  std::vector<int32_t> shm, sem, msg;
  void undo() {
    for (int32_t id : shm) shmctl(id, IPC_RMID, nullptr);
    for (int32_t id : sem) semctl(id, 0, IPC_RMID);
    for (int32_t id : msg) msgctl(id, IPC_RMID, nullptr);
  }
};

// Made with `get` (IPC_CREAT | IPC_EXCL and the key): refuses a taken key or id.
// *_next_id is one value for the whole IPC namespace, taken by whichever object is made
// next: another process making one between the two steps (a second restart, any
// program) takes the id. Such an object is removed and the id asked for again.
// mig's own restarts on a host take turns (an flock on one file): two restarts at once
// (a test suite's, a drain's) took each other's ids in lock step until both gave up.
// A random pause between attempts parts them from other programs that make objects.
int32_t makeWithId(const char* kind, const SysvPerm& p, kj::StringPtr what, const std::function<int()>& get) {
  kj::AutoCloseFd turn(open("/run/mig-sysv-ids.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (turn != nullptr) flock(turn.get(), LOCK_EX);  // released as it closes
  int id = -1;
  for (int attempt = 0; attempt < 20; ++attempt) {
    if (attempt > 0) usleep(static_cast<useconds_t>(1000 + random() % 4000));
    chooseNextId(kind, p.id, what);
    id = get();
    if (id < 0 || id == p.id) break;
    if (strcmp(kind, "shm") == 0) {
      shmctl(id, IPC_RMID, nullptr);
    } else if (strcmp(kind, "sem") == 0) {
      semctl(id, 0, IPC_RMID);
    } else {
      msgctl(id, IPC_RMID, nullptr);
    }
    id = -2;
  }
  if (id == -2) {
    fail(kj::str("cannot make the job's ", what, " again with its id: other System V objects were being made on this "
                 "host at the same time; try again"));
  }
  if (id < 0) {
    int err = errno;
    if (err == EEXIST) {
      fail(kj::str("cannot restart: the key of the job's System V ", what,
                   " is taken on this host now; remove that object (ipcrm) or end the program that made it, and try again"));
    }
    if (err == ENOSPC) {
      fail(kj::str("cannot restart: the id of the job's System V ", what,
                   " is taken on this host now; remove that object (ipcrm) or end the program that made it, and try again"));
    }
    fail(kj::str("cannot make the job's ", what, " again: ", strerror(err)));
  }
  return id;
}

}  // namespace

SysvIpc findSysvIpc(kj::ArrayPtr<const pid_t> pids) {
  SysvIpc out;
  std::set<pid_t> members(pids.begin(), pids.end());
  auto isMember = [&](pid_t p) { return p > 0 && members.count(p) > 0; };
  std::set<int32_t> attached;
  for (pid_t p : pids) attachedSegments(p, attached);
  // An object found by a PID alone must also be owned (or made) by a user the job
  // runs as: a PID reused since an unrelated process used the object is not enough.
  std::set<long> uids;
  for (pid_t p : pids) uids.insert(effectiveUid(p));
  auto userOf = [&](const struct ipc_perm& perm) { return uids.count(perm.uid) > 0 || uids.count(perm.cuid) > 0; };

  for (auto [key, id] : listIds("shm")) {
    struct shmid_ds ds {};
    if (shmctl(id, IPC_STAT, &ds) != 0) continue;  // gone meanwhile, or not ours to read
    if (!attached.count(id) && !(userOf(ds.shm_perm) && (isMember(ds.shm_cpid) || isMember(ds.shm_lpid)))) continue;
    out.shm.add(SysvIpc::Shm{permOf(ds.shm_perm, id), ds.shm_segsz, (ds.shm_perm.mode & SHM_DEST) != 0});
  }
  for (auto [key, id] : listIds("sem")) {
    struct semid_ds ds {};
    SemArg arg{};
    arg.buf = &ds;
    if (semctl(id, 0, IPC_STAT, arg) != 0) continue;
    bool ours = false;
    for (unsigned long i = 0; i < ds.sem_nsems && !ours && userOf(ds.sem_perm); ++i) ours = isMember(semctl(id, static_cast<int>(i), GETPID));
    if (!ours) continue;
    SysvIpc::Sem s{permOf(ds.sem_perm, id), std::vector<uint16_t>(ds.sem_nsems)};
    arg.array = s.values.data();
    if (semctl(id, 0, GETALL, arg) != 0) fail(kj::str("cannot read the values of ", describe("semaphore set", key, id), ": ", strerror(errno)));
    out.sem.add(kj::mv(s));
  }
  for (auto [key, id] : listIds("msg")) {
    struct msqid_ds ds {};
    if (msgctl(id, IPC_STAT, &ds) != 0) continue;
    if (!userOf(ds.msg_perm) || (!isMember(ds.msg_lspid) && !isMember(ds.msg_lrpid))) continue;
    SysvIpc::Msg m{permOf(ds.msg_perm, id), ds.msg_qbytes, {}};
    std::vector<char> buf(sizeof(long) + std::max<size_t>(ds.msg_qbytes, 8192));
    for (unsigned long i = 0; i < ds.msg_qnum; ++i) {
      ssize_t n = msgrcv(id, buf.data(), buf.size() - sizeof(long), static_cast<long>(i), IPC_NOWAIT | MSG_COPY | MSG_NOERROR);
      if (n < 0) {
        fail(kj::str("cannot read message ", i + 1, " of ", describe("message queue", key, id), ": ", strerror(errno),
                     errno == ENOSYS ? " (the kernel lacks CONFIG_CHECKPOINT_RESTORE)" : ""));
      }
      long type;
      memcpy(&type, buf.data(), sizeof(type));
      m.messages.emplace_back(type, std::string(buf.data() + sizeof(long), static_cast<size_t>(n)));
    }
    out.msg.add(kj::mv(m));
  }
  return out;
}

kj::Maybe<kj::String> firstSysvObject(kj::ArrayPtr<const pid_t> pids) {
  SysvIpc o = findSysvIpc(pids);
  if (!o.shm.empty()) return describe("System V shared memory segment", o.shm[0].perm.key, o.shm[0].perm.id);
  if (!o.sem.empty()) return describe("System V semaphore set", o.sem[0].perm.key, o.sem[0].perm.id);
  if (!o.msg.empty()) return describe("System V message queue", o.msg[0].perm.key, o.msg[0].perm.id);
  return nullptr;
}

kj::Maybe<OutsideUse> outsideUse(const SysvUse& use, const std::set<pid_t>& members,
                                 const std::function<bool(pid_t)>& alive) {
  for (pid_t p : use.users) {
    if (p > 0 && members.count(p) == 0 && alive(p)) return OutsideUse{p, 0};
  }
  if (use.attachments > use.jobAttachments) return OutsideUse{0, use.attachments - use.jobAttachments};
  return nullptr;
}

namespace {

kj::String commandOf(pid_t pid) {
  std::string comm;
  if (!readProcFileIfExists(pid, "comm", comm)) return kj::str("?");
  while (!comm.empty() && comm.back() == '\n') comm.pop_back();
  return kj::str(comm.c_str());
}

}  // namespace

kj::Maybe<kj::String> sysvUsedOutside(kj::ArrayPtr<const pid_t> pids) {
  SysvIpc objects = findSysvIpc(pids);
  if (objects.empty()) return nullptr;
  std::set<pid_t> members(pids.begin(), pids.end());
  members.insert(getpid());  // this process's own reads (a capture's shmat) are no use
  std::map<int32_t, uint64_t> attached;  // segment id -> attachments in the job
  for (pid_t p : pids) {
    forEachProcLine(p, "maps", [&](const std::string& line) {
      unsigned long long inode;
      int at = 0;
      if (sscanf(line.c_str(), "%*x-%*x %*7s %*x %*31s %llu %n", &inode, &at) < 1) return;
      if (line.compare(static_cast<size_t>(at), 5, "/SYSV") == 0) ++attached[static_cast<int32_t>(inode)];
    });
  }
  auto refusal = [&](kj::String what, const OutsideUse& u) -> kj::String {
    if (u.pid > 0) {
      return kj::str("it uses the ", what, ", which process ", u.pid, " (", commandOf(u.pid),
                     ") outside the job uses too, and one object cannot be on two hosts (end that process, or "
                     "move a tree that holds it)");
    }
    return kj::str("it uses the ", what, ", which ", u.attachments, u.attachments == 1 ? " attachment" : " attachments",
                   " of processes outside the job hold too, and one object cannot be on two hosts");
  };
  for (auto& o : objects.shm) {
    struct shmid_ds ds {};
    if (shmctl(o.perm.id, IPC_STAT, &ds) != 0) continue;
    SysvUse use{{ds.shm_cpid, ds.shm_lpid}, ds.shm_nattch, attached[o.perm.id]};
    KJ_IF_MAYBE(u, outsideUse(use, members, processRuns)) {
      return refusal(describe("System V shared memory segment", o.perm.key, o.perm.id), *u);
    }
  }
  for (auto& o : objects.sem) {
    SysvUse use;
    for (size_t i = 0; i < o.values.size(); ++i) use.users.push_back(semctl(o.perm.id, static_cast<int>(i), GETPID));
    KJ_IF_MAYBE(u, outsideUse(use, members, processRuns)) {
      return refusal(describe("System V semaphore set", o.perm.key, o.perm.id), *u);
    }
  }
  for (auto& o : objects.msg) {
    struct msqid_ds ds {};
    if (msgctl(o.perm.id, IPC_STAT, &ds) != 0) continue;
    SysvUse use{{ds.msg_lspid, ds.msg_lrpid}, 0, 0};
    KJ_IF_MAYBE(u, outsideUse(use, members, processRuns)) {
      return refusal(describe("System V message queue", o.perm.key, o.perm.id), *u);
    }
  }
  return nullptr;
}

void setSysvIpc(const SysvIpc& objects, image::schema::Ipc::Builder ipc, uint64_t& dataAt) {
  auto shm = ipc.initSysvShm(static_cast<unsigned>(objects.shm.size()));
  for (unsigned i = 0; i < shm.size(); ++i) {
    const SysvIpc::Shm& s = objects.shm[i];
    setPerm(shm[i].initPerm(), s.perm);
    shm[i].setSize(s.size);
    shm[i].setDataOffset(dataAt);
    shm[i].setRemoved(s.removed);
    dataAt += s.size;
  }
  auto sem = ipc.initSysvSem(static_cast<unsigned>(objects.sem.size()));
  for (unsigned i = 0; i < sem.size(); ++i) {
    setPerm(sem[i].initPerm(), objects.sem[i].perm);
    auto values = sem[i].initValues(static_cast<unsigned>(objects.sem[i].values.size()));
    for (unsigned j = 0; j < values.size(); ++j) values.set(j, objects.sem[i].values[j]);
  }
  auto msg = ipc.initSysvMsg(static_cast<unsigned>(objects.msg.size()));
  for (unsigned i = 0; i < msg.size(); ++i) {
    const SysvIpc::Msg& m = objects.msg[i];
    setPerm(msg[i].initPerm(), m.perm);
    msg[i].setQbytes(m.qbytes);
    auto list = msg[i].initMessages(static_cast<unsigned>(m.messages.size()));
    for (unsigned j = 0; j < list.size(); ++j) {
      list[j].setType(m.messages[j].first);
      auto& text = m.messages[j].second;
      list[j].setText(kj::arrayPtr(reinterpret_cast<const kj::byte*>(text.data()), text.size()));
    }
  }
}

void writeSysvData(const SysvIpc& objects, image::ImageWriter& w) {
  for (const SysvIpc::Shm& s : objects.shm) {
    void* at = shmat(s.perm.id, nullptr, SHM_RDONLY);
    if (at == reinterpret_cast<void*>(-1)) {
      fail(kj::str("cannot read ", describe("System V shared memory segment", s.perm.key, s.perm.id), ": ", strerror(errno)));
    }
    w.data(at, s.size);
    shmdt(at);
  }
}

void restoreSysvIpc(image::FileReader& img) {
  size_t sec = ipcSection(img);
  if (sec == 0) return;
  auto ipc = img.meta<image::schema::Ipc>(sec);
  Made made;
  try {
    for (auto s : ipc.getSysvShm()) {
      SysvPerm p = readPerm(s.getPerm());
      kj::String what = describe("shared memory segment", p.key, p.id);
      int id = makeWithId("shm", p, what, [&] {
        return shmget(p.key, s.getSize(), IPC_CREAT | IPC_EXCL | static_cast<int>(p.mode));
      });
      made.shm.push_back(id);
      if (id != p.id) fail(kj::str("cannot restart: the id of the job's System V ", what, " is taken on this host now"));
      void* at = shmat(id, nullptr, 0);
      if (at == reinterpret_cast<void*>(-1)) fail(kj::str("cannot fill the job's ", what, ": ", strerror(errno)));
      KJ_DEFER(shmdt(at));
      img.readData(sec, s.getDataOffset(), at, s.getSize());
      struct shmid_ds ds {};
      shmctl(id, IPC_STAT, &ds);
      ds.shm_perm.uid = p.uid;
      ds.shm_perm.gid = p.gid;
      ds.shm_perm.mode = p.mode;
      if (shmctl(id, IPC_SET, &ds) != 0) fail(kj::str("cannot give the job's ", what, " its owner back: ", strerror(errno)));
    }
    for (auto s : ipc.getSysvSem()) {
      SysvPerm p = readPerm(s.getPerm());
      kj::String what = describe("semaphore set", p.key, p.id);
      auto values = s.getValues();
      int id = makeWithId("sem", p, what, [&] {
        return semget(p.key, static_cast<int>(values.size()), IPC_CREAT | IPC_EXCL | static_cast<int>(p.mode));
      });
      made.sem.push_back(id);
      if (id != p.id) fail(kj::str("cannot restart: the id of the job's System V ", what, " is taken on this host now"));
      std::vector<unsigned short> v;
      for (uint16_t x : values) v.push_back(x);
      SemArg arg{};
      arg.array = v.data();
      if (semctl(id, 0, SETALL, arg) != 0) fail(kj::str("cannot set the values of the job's ", what, ": ", strerror(errno)));
      struct semid_ds ds {};
      arg.buf = &ds;
      semctl(id, 0, IPC_STAT, arg);
      ds.sem_perm.uid = p.uid;
      ds.sem_perm.gid = p.gid;
      ds.sem_perm.mode = p.mode;
      if (semctl(id, 0, IPC_SET, arg) != 0) fail(kj::str("cannot give the job's ", what, " its owner back: ", strerror(errno)));
    }
    for (auto q : ipc.getSysvMsg()) {
      SysvPerm p = readPerm(q.getPerm());
      kj::String what = describe("message queue", p.key, p.id);
      int id = makeWithId("msg", p, what, [&] { return msgget(p.key, IPC_CREAT | IPC_EXCL | static_cast<int>(p.mode)); });
      made.msg.push_back(id);
      if (id != p.id) fail(kj::str("cannot restart: the id of the job's System V ", what, " is taken on this host now"));
      struct msqid_ds ds {};
      msgctl(id, IPC_STAT, &ds);
      ds.msg_qbytes = std::max<uint64_t>(q.getQbytes(), 1);  // raising it past msgmnb needs root, as at first
      if (msgctl(id, IPC_SET, &ds) != 0) fail(kj::str("cannot set the size of the job's ", what, ": ", strerror(errno)));
      auto messages = q.getMessages();
      std::vector<char> buf;
      for (auto m : messages) {
        auto text = m.getText();
        buf.resize(sizeof(long) + text.size());
        long type = m.getType();
        memcpy(buf.data(), &type, sizeof(type));
        if (text.size() > 0) memcpy(buf.data() + sizeof(long), text.begin(), text.size());
        if (msgsnd(id, buf.data(), text.size(), IPC_NOWAIT) != 0) {
          fail(kj::str("cannot put a message back into the job's ", what, ": ", strerror(errno)));
        }
      }
      if (messages.size() == 0) {
        // A message in and out, so that the queue names this process (the job) as its
        // last user, as the job's next checkpoint looks for.
        long one[2] = {1, 0};
        if (msgsnd(id, one, 1, IPC_NOWAIT) == 0) (void)msgrcv(id, one, 1, 0, IPC_NOWAIT | MSG_NOERROR);
      }
      msgctl(id, IPC_STAT, &ds);
      ds.msg_perm.uid = p.uid;
      ds.msg_perm.gid = p.gid;
      ds.msg_perm.mode = p.mode;
      if (msgctl(id, IPC_SET, &ds) != 0) fail(kj::str("cannot give the job's ", what, " its owner back: ", strerror(errno)));
    }
  } catch (...) {
    made.undo();
    throw;
  }
}

uint32_t removeSysvIpc(const SysvIpc& objects) {
  uint32_t n = 0;
  for (auto& s : objects.shm) n += shmctl(s.perm.id, IPC_RMID, nullptr) == 0;
  for (auto& s : objects.sem) n += semctl(s.perm.id, 0, IPC_RMID) == 0;
  for (auto& s : objects.msg) n += msgctl(s.perm.id, IPC_RMID, nullptr) == 0;
  return n;
}

uint32_t removeSysvIpc(image::FileReader& img) {
  size_t sec = ipcSection(img);
  if (sec == 0) return 0;
  auto ipc = img.meta<image::schema::Ipc>(sec);
  // Only an object that is still the one in the image (same id and key).
  uint32_t n = 0;
  for (auto s : ipc.getSysvShm()) {
    struct shmid_ds ds {};
    if (shmctl(s.getPerm().getId(), IPC_STAT, &ds) == 0 && ds.shm_perm.__key == s.getPerm().getKey()) {
      n += shmctl(s.getPerm().getId(), IPC_RMID, nullptr) == 0;
    }
  }
  for (auto s : ipc.getSysvSem()) {
    struct semid_ds ds {};
    SemArg arg{};
    arg.buf = &ds;
    if (semctl(s.getPerm().getId(), 0, IPC_STAT, arg) == 0 && ds.sem_perm.__key == s.getPerm().getKey()) {
      n += semctl(s.getPerm().getId(), 0, IPC_RMID) == 0;
    }
  }
  for (auto s : ipc.getSysvMsg()) {
    struct msqid_ds ds {};
    if (msgctl(s.getPerm().getId(), IPC_STAT, &ds) == 0 && ds.msg_perm.__key == s.getPerm().getKey()) {
      n += msgctl(s.getPerm().getId(), IPC_RMID, nullptr) == 0;
    }
  }
  return n;
}

}  // namespace mig::resources
