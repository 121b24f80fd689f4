// The job of forward_restart_test.sh: checkpointed under libmig.so while it counts,
// then restarted as a migrated job, so everything it does after "step 5" happens in
// a restored process whose fds are stand-ins for the relay's. Its stdout (fd 1) is a
// home fd then: what it prints must arrive in the relay's stdout file.
//
// What it holds across the restart: a worker thread that blocked every signal
// (SIGSYS too: the shim must unblock it, or the worker's first dispatched call would
// kill the process), and a SIGUSR1 handler installed with libc's restorer and a mask
// of every signal, which makes a system call (the shim must keep SIGSYS out of that
// mask). After it,
// it creates a thread, reads its working directory and creates a file by relative
// path (both at home). Every step it makes a pipe and forks a child that checks both
// ends are open, as bash's `$(...)` child dup2s the write end: after a checkpoint the
// job resumed from, the shim's fork handler once closed the checkpoint connection's
// number in the child, which the pipe then had (it prints "lost a pipe end").
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

constexpr int kSteps = 30;
volatile sig_atomic_t g_usr1 = 0;

void say(const char* line) { (void)!write(1, line, strlen(line)); }

void* worker(void*) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  for (int i = 0; i < kSteps; ++i) {
    usleep(100 * 1000);
    char line[64];
    snprintf(line, sizeof(line), "worker %d\n", i);
    say(line);
  }
  return nullptr;
}

// Whether a child forked now holds both ends of a pipe made just before.
bool pipeWholeInChild() {
  int p[2];
  if (pipe(p) != 0) return false;
  pid_t c = fork();
  if (c == 0) _exit(fcntl(p[0], F_GETFD) >= 0 && fcntl(p[1], F_GETFD) >= 0 ? 0 : 1);
  close(p[0]);
  close(p[1]);
  int st = 0;
  return c > 0 && waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

void* late(void*) {
  say("late thread\n");
  return nullptr;
}

}  // namespace

int main() {
  struct sigaction sa {};
  sa.sa_handler = [](int) {
    g_usr1 = g_usr1 + 1;
    say("in handler\n");  // a system call with every signal blocked but SIGSYS
  };
  sigfillset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, nullptr);
  pthread_t w;
  pthread_create(&w, nullptr, worker, nullptr);
  for (int step = 1; step <= kSteps; ++step) {
    printf("step %d\n", step);
    if (!pipeWholeInChild()) printf("step %d: a child lost a pipe end\n", step);
    fflush(stdout);
    usleep(100 * 1000);
  }
  pthread_join(w, nullptr);
  raise(SIGUSR1);
  printf("usr1 %d\n", static_cast<int>(g_usr1));
  pthread_t t;
  pthread_create(&t, nullptr, late, nullptr);
  pthread_join(t, nullptr);
  char cwd[4096];
  printf("cwd %s\n", getcwd(cwd, sizeof(cwd)) ? cwd : "?");
  int fd = open("made_after.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  printf("made_after fd %d write %zd\n", fd, write(fd, "after the restart\n", 18));
  close(fd);
  printf("done\n");
  return 0;
}
