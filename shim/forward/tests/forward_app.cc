// The application side of the forwarding test (forward_test.sh): an ordinary
// program, run under libmig.so with the forwarding test hook, whose fds 3, 4 and 5
// are local placeholders (/dev/null) for home fds held by fake_relay. It uses them
// every way a program does (stdio, libc calls, raw syscall(2), dup, vectored I/O,
// two threads at once), opens files by relative path (its working directory is at
// home) and by a host-local path, and prints what it observed on its own stdout,
// which is local. The test script checks those lines and the files at "home".
//
//   forward_app TMP              the full run
//   forward_app --cwd            prints the working directory only (control run)
//   forward_app --unreachable    one write to home fd 3 (the relay is gone by then)
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <string>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace {

constexpr int kLines = 200;

void* pipeWriter(void*) {
  for (int i = 0; i < kLines; ++i) {
    char line[64];
    int n = snprintf(line, sizeof(line), "pipe line %d\n", i);
    if (write(5, line, static_cast<size_t>(n)) != n) {
      printf("pipe write failed: %s\n", strerror(errno));
      return nullptr;
    }
  }
  return nullptr;
}

// Forwarded calls without a side effect at home, until told to stop (the program's
// dup2 onto the relay connections meanwhile).
std::atomic<bool> g_stopStats{false};
std::atomic<int> g_statFailures{0};

void* statLoop(void*) {
  struct stat st;
  while (!g_stopStats.load()) {
    if (fstat(4, &st) != 0) g_statFailures++;
  }
  return nullptr;
}

// Issue 15: the program's dup2/dup3 onto each of mig's fds in the band under its fd
// limit (the relay connections of this thread and of one in the middle of forwarded
// calls) takes the number, as at home; mig's fd moves elsewhere first.
void takeOverMigFds() {
  struct rlimit lim;
  getrlimit(RLIMIT_NOFILE, &lim);
  const long top = lim.rlim_cur < 4096 ? static_cast<long>(lim.rlim_cur) : 4096;
  const long floor = top > 128 ? top - 64 : top / 2;
  const int null = open("/dev/null", O_RDWR);
  struct stat st;
  fstat(4, &st);  // this thread's connection, made now if it was not
  pthread_t t;
  pthread_create(&t, nullptr, statLoop, nullptr);
  int taken = 0, refused = 0;
  for (int round = 0; round < 100; ++round) {
    for (long fd = floor; fd < top; ++fd) {
      if (fcntl(static_cast<int>(fd), F_GETFD) < 0) continue;  // the program has nothing here: mig's if open
      const int r = round % 2 ? dup3(null, static_cast<int>(fd), O_CLOEXEC) : dup2(null, static_cast<int>(fd));
      if (r == fd) taken++;
      else refused++;
      close(static_cast<int>(fd));
    }
  }
  g_stopStats = true;
  pthread_join(t, nullptr);
  close(null);
  printf("takeover %s refused %d stat failures %d\n", taken > 0 ? "some" : "none", refused, g_statFailures.load());
  printf("after takeover fstat %d\n", fstat(4, &st));
}

}  // namespace

int main(int argc, char** argv) {
  char cwd[4096];
  if (argc == 2 && strcmp(argv[1], "--cwd") == 0) {
    printf("cwd %s\n", getcwd(cwd, sizeof(cwd)) ? cwd : "?");
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "--unreachable") == 0) {
    errno = 0;
    ssize_t w = write(3, "x\n", 2);
    printf("unreachable write %zd errno %d\n", w, errno);
    return 0;
  }
  if (argc != 2) return 2;
  const std::string tmp = argv[1];
  setvbuf(stdout, nullptr, _IOLBF, 0);

  // A host-local file first: it takes the lowest free local number (6), so the home
  // open below gets a different number at home (6) than here (7).
  const std::string localPath = tmp + "/local/local.txt";
  int local = open(localPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  printf("local fd %d\n", local);
  printf("local write %zd\n", write(local, "written locally\n", 16));

  // stdio on a home fd (glibc's internal write).
  FILE* out = fdopen(3, "w");
  fprintf(out, "line 1 via stdio\n");
  fflush(out);
  // A raw system call.
  syscall(SYS_write, 3, "line 2 via raw syscall\n", 23);

  // stdio reads, ftell, fseek on a home fd.
  FILE* in = fdopen(4, "r");
  char first[256] = "", second[256] = "", again[256] = "";
  if (!fgets(first, sizeof(first), in)) strcpy(first, "EOF\n");
  long pos = ftell(in);
  if (!fgets(second, sizeof(second), in)) strcpy(second, "EOF\n");
  fseek(in, 0, SEEK_SET);
  if (!fgets(again, sizeof(again), in)) strcpy(again, "EOF\n");
  printf("in first %s", first);
  printf("in ftell %ld\n", pos);
  printf("in second %s", second);
  printf("in again %s", again);

  struct stat st {};
  int fstatResult = fstat(3, &st);
  printf("fstat3 %d ino %lu\n", fstatResult, static_cast<unsigned long>(st.st_ino));
  errno = 0;
  long off = lseek(5, 0, SEEK_CUR);  // a pipe at home; /dev/null here would say 0
  printf("lseek5 %ld errno %d\n", off, errno);
  printf("cwd %s\n", getcwd(cwd, sizeof(cwd)) ? cwd : "?");

  // Relative paths go home.
  int created = openat(AT_FDCWD, "created.txt", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  printf("created fd %d cloexec %d\n", created, (fcntl(created, F_GETFD) & FD_CLOEXEC) ? 1 : 0);
  printf("created write %zd\n", write(created, "created at home\n", 16));
  printf("created close %d\n", close(created));
  printf("stat in.txt %d\n", stat("in.txt", &st));
  errno = 0;
  int missing = open("no/such/file", O_RDONLY);
  printf("open missing %d errno %d\n", missing, errno);

  // More than one message holds, both ways.
  std::vector<char> big(3 << 20), back(3 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 23);
  int b = open("big.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);
  ssize_t wrote = write(b, big.data(), big.size());
  lseek(b, 0, SEEK_SET);
  ssize_t got = read(b, back.data(), back.size());
  printf("big fd %d wrote %zd read %zd same %d\n", b, wrote, got, big == back ? 1 : 0);
  close(b);

  // Copies of a home fd are home fds too.
  int d = dup(3);
  printf("dup write %zd\n", write(d, "line 3 via dup\n", 15));
  close(d);
  int d2 = dup2(3, 20);
  printf("dup2 %d write %zd\n", d2, write(20, "line 4 via dup2\n", 16));
  close(20);
  int d3 = fcntl(3, F_DUPFD_CLOEXEC, 30);
  printf("dupfd %d write %zd\n", d3, write(d3, "line 5 via F_DUPFD\n", 19));
  close(d3);
  struct iovec iov[2] = {{const_cast<char*>("line 6 via "), 11}, {const_cast<char*>("writev\n"), 7}};
  printf("writev %zd\n", writev(3, iov, 2));

  // Child processes (posix_spawn's clone3 with a stack of its own, fork, vfork)
  // forward too, with fd tables of their own; the parent must stay dispatched after
  // each.
  int sys = system("exit 3");
  printf("system %d\n", WIFEXITED(sys) ? WEXITSTATUS(sys) : -1);
  char child[64] = "";
  FILE* p = popen("echo from a child", "r");
  if (p == nullptr || !fgets(child, sizeof(child), p)) strcpy(child, "nothing\n");
  if (p != nullptr) pclose(p);
  printf("popen %s", child);
  pid_t f = fork();
  if (f == 0) {
    int d = dup(3);  // the child's own table: its dup and close stay its own
    syscall(SYS_write, d, "line from the fork child\n", 25);
    close(d);
    close(3);
    _exit(7);
  }
  int fst = 0;
  waitpid(f, &fst, 0);
  printf("fork child %d\n", WIFEXITED(fst) ? WEXITSTATUS(fst) : -1);
  pid_t v = vfork();
  if (v == 0) _exit(8);
  waitpid(v, &fst, 0);
  printf("vfork child %d\n", WIFEXITED(fst) ? WEXITSTATUS(fst) : -1);
  syscall(SYS_write, 3, "line 7 after children\n", 22);

  // Two threads forwarding at once, each on its own connection.
  pthread_t t;
  pthread_create(&t, nullptr, pipeWriter, nullptr);
  for (int i = 0; i < kLines; ++i) {
    char line[64];
    int n = snprintf(line, sizeof(line), "main line %d\n", i);
    if (syscall(SYS_write, 3, line, n) != n) printf("main write failed\n");
  }
  pthread_join(t, nullptr);
  takeOverMigFds();

  // A forwarded chdir moves relative paths along at home.
  printf("chdir sub %d\n", chdir("sub"));
  printf("cwd %s\n", getcwd(cwd, sizeof(cwd)) ? cwd : "?");
  int s = open("subfile.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  printf("subfile write %zd\n", write(s, "in sub\n", 7));
  close(s);

  // A home file mapped: by copy (home_mmap.h). A private mapping's write stays in
  // memory; a shared read-only one is a snapshot.
  int m = open("../in.txt", O_RDONLY);
  auto* priv = static_cast<char*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, m, 0));
  const bool privSame = priv != MAP_FAILED && memcmp(priv, "first line of in\n", 17) == 0;
  if (priv != MAP_FAILED) priv[0] = 'F';
  auto* shr = static_cast<char*>(mmap(nullptr, 4096, PROT_READ, MAP_SHARED, m, 0));
  printf("mmap private %d written %c shared %c\n", privSame ? 1 : 0, priv != MAP_FAILED ? priv[0] : '?',
         shr != MAP_FAILED ? shr[0] : '?');
  // A shared writable one is a copy kept coherent at the file's lock points
  // (shared_file_mapping.h): refused (ENODEV) while the job holds no lock through the
  // fd; once it does, the job's writes are home before a lock call goes, home's
  // changes are in the copy once a lock is taken, munmap writes back.
  int mw = open("../shm.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (ftruncate(mw, 8192) != 0) printf("ftruncate shm.bin failed\n");
  errno = 0;
  void* unlocked = mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, mw, 0);
  printf("mmap shared writable without a lock %d errno %d\n", unlocked == MAP_FAILED ? -1 : 0, errno);
  struct flock held {};
  held.l_type = F_RDLCK;  // as sqlite's DMS lock, held while the file is mapped
  held.l_whence = SEEK_SET;
  held.l_start = 128;
  held.l_len = 1;
  if (fcntl(mw, F_SETLK, &held) != 0) printf("lock shm.bin failed\n");
  auto* sw = static_cast<char*>(mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, mw, 0));
  // A shared read-only mapping of a file the job locks is refreshed at those locks too.
  auto* sro = static_cast<const char*>(mmap(nullptr, 8192, PROT_READ, MAP_SHARED, mw, 0));
  int lk = -2;
  char shmBack[13] = "", before = '?';
  if (sw != MAP_FAILED) {
    memcpy(sw + 100, "from the job", 12);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 120;
    fl.l_len = 1;
    lk = fcntl(mw, F_SETLK, &fl);
    fl.l_type = F_UNLCK;
    if (fcntl(mw, F_SETLK, &fl) != 0) lk = -3;
    if (pread(mw, shmBack, 12, 100) != 12) printf("pread shm.bin failed\n");
    if (pwrite(mw, "from home", 9, 4200) != 9) printf("pwrite shm.bin failed\n");
    before = sw[4200];
    fl.l_type = F_RDLCK;
    if (fcntl(mw, F_SETLK, &fl) != 0) lk = -4;
    fl.l_type = F_UNLCK;
    fcntl(mw, F_SETLK, &fl);
    if (pwrite(mw, "at msync", 8, 4300) != 8) printf("pwrite shm.bin failed\n");
    if (msync(sw, 8192, MS_SYNC) != 0) printf("msync failed\n");
    memcpy(sw + 8000, "at munmap", 9);
  }
  printf("mmap shared writable %d lock %d home has '%s' copy before lock %d after '%.9s' after msync '%.8s'\n",
         sw == MAP_FAILED ? -1 : 0, lk, shmBack, before, sw != MAP_FAILED ? sw + 4200 : "?",
         sw != MAP_FAILED ? sw + 4300 : "?");
  printf("mmap shared read-only of a locked file after a lock '%.9s'\n", sro != MAP_FAILED ? sro + 4200 : "?");
  if (sro != MAP_FAILED) munmap(const_cast<char*>(sro), 8192);
  if (sw != MAP_FAILED) munmap(sw, 8192);
  errno = 0;
  void* onPipe = mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE, 5, 0);  // fd 5: a pipe at home
  printf("mmap home pipe %d errno %d\n", onPipe == MAP_FAILED ? -1 : 0, errno);
  close(m);
  close(mw);
  // A system library is opened here once home says its copy is the same (same_file.h):
  // its fd is the file itself, not a stand-in; dlopen maps it.
  int lib = open("/usr/lib/x86_64-linux-gnu/libc.so.6", O_RDONLY | O_CLOEXEC);
  char link[256] = "";
  snprintf(cwd, sizeof(cwd), "/proc/self/fd/%d", lib);
  ssize_t ln = readlink(cwd, link, sizeof(link) - 1);
  link[ln > 0 ? ln : 0] = '\0';
  printf("system file opened here %s\n", link);
  close(lib);
  void* z = dlopen("libz.so.1", RTLD_NOW);
  printf("dlopen libz %d\n", z != nullptr && dlsym(z, "zlibVersion") != nullptr ? 1 : 0);

  printf("local close %d\n", close(local));
  printf("DONE\n");
  return 0;
}
