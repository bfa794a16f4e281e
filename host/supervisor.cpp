// ktf-host --nproc-per-node N: the built-in launcher of a data-parallel job on one machine
// (host/supervisor.h).
#include "supervisor.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace ktf::host {
namespace {

volatile sig_atomic_t g_stop_signal = 0;
volatile sig_atomic_t g_stop_count = 0;

void on_stop(int sig) {
  g_stop_signal = sig;
  g_stop_count = g_stop_count + 1;
}

/// A TCP port free on loopback now (the kernel's choice), for the job's rendezvous.
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 29500;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  int port = 29500;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

/// 128 + signal for a rank killed by a signal, as a shell reports it.
int exit_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    const char* name = strsignal(WTERMSIG(status));
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + (name ? name : "?") +
           ")";
  }
  return "exited with code " + std::to_string(exit_status(status));
}

struct Attempt {
  int code = 0;              ///< the job's exit code
  bool restartable = false;  ///< a rank failed (not a config error, not a stop asked for)
};

/// Starts the ranks and waits for them. When one fails, the others get SIGTERM (they checkpoint
/// at their next safe point, or find the lost rank and stop) and after `grace` SIGKILL.
Attempt run_attempt(const std::vector<std::string>& args, int nproc, int attempt, int max_restarts,
                    double grace_seconds, bool quiet) {
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < nproc; ++r) {
    pid_t pid = ::fork();
    if (pid < 0) {
      std::cerr << "ktf-host: cannot start rank " << r << ": " << std::strerror(errno) << "\n";
      for (pid_t p : pids) ::kill(p, SIGKILL);
      return {1, false};
    }
    if (pid == 0) {
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv("KTF_RESTART_COUNT", std::to_string(attempt).c_str(), 1);
      ::setenv("KTF_SUPERVISED_RANK", "1", 1);  // the rank ignores --nproc-per-node
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::cerr << "ktf-host: cannot start rank " << r << ": " << std::strerror(errno) << "\n";
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  if (!quiet || max_restarts > 0) {
    std::cerr << "ktf-host: started " << nproc << " ranks (pids";
    for (pid_t p : pids) std::cerr << " " << p;
    std::cerr << "), rendezvous 127.0.0.1:" << port;
    if (max_restarts > 0) std::cerr << ", attempt " << attempt + 1 << " of " << max_restarts + 1;
    std::cerr << std::endl;
  }

  std::vector<bool> running(pids.size(), true);
  int left = nproc;
  Attempt result;
  bool failed = false, any_130 = false;
  int forwarded = 0;  // stops passed on to the ranks
  std::chrono::steady_clock::time_point kill_at = std::chrono::steady_clock::time_point::max();
  while (left > 0) {
    if (g_stop_count > forwarded) {
      // A stop asked of the launcher goes to every rank: they agree on a step, checkpoint and
      // exit with 130, however long that takes. A second one ends them without a checkpoint.
      for (size_t i = 0; i < pids.size(); ++i)
        if (running[i]) ::kill(pids[i], g_stop_signal);
      forwarded = g_stop_count;
      kill_at = std::chrono::steady_clock::time_point::max();
    }
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (size_t i = 0; i < pids.size(); ++i) {
        if (pids[i] != pid || !running[i]) continue;
        running[i] = false;
        --left;
        const int code = exit_status(status);
        any_130 = any_130 || code == 130;
        if (code == 0 || forwarded) continue;  // done, or stopping as asked
        // Every failure is named: the rank that died first may be reaped after one that saw it
        // die (a rank killed by a signal, and its peer's "connection reset").
        std::cerr << "ktf-host: rank " << i << " (pid " << pid << ") " << describe_status(status)
                  << (failed ? "" : "; stopping the other ranks") << std::endl;
        if (failed) continue;
        failed = true;
        result.code = code;
        // A bad command line, config or plugin fails the same way again.
        result.restartable = code != 2 && code != 3 && code != 130;
        for (size_t j = 0; j < pids.size(); ++j)
          if (running[j]) ::kill(pids[j], SIGTERM);
        kill_at = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(grace_seconds * 1000));
      }
      continue;
    }
    if (pid < 0 && errno != EINTR) break;
    if (std::chrono::steady_clock::now() > kill_at) {
      for (size_t j = 0; j < pids.size(); ++j)
        if (running[j]) {
          std::cerr << "ktf-host: rank " << j << " (pid " << pids[j] << ") did not stop within "
                    << grace_seconds << " s: killing it" << std::endl;
          ::kill(pids[j], SIGKILL);
        }
      kill_at = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (forwarded && any_130) result = {130, false};
  return result;
}

}  // namespace

int supervise(int argc, char** argv, int nproc, int max_restarts, double grace_seconds,
              bool quiet) {
  if (std::getenv("RANK") && std::getenv("WORLD_SIZE")) {
    std::cerr << "ktf-host: --nproc-per-node: this process is already a rank of a job (RANK and "
                 "WORLD_SIZE are set); start ktf-host without it under torchrun or Slurm\n";
    return 2;
  }
  if (nproc < 1 || max_restarts < 0) {
    std::cerr << "ktf-host: --nproc-per-node must be >= 1 and --max-restarts >= 0\n";
    return 2;
  }
  // The ranks run the same command line: KTF_SUPERVISED_RANK makes them ignore --nproc-per-node
  // and --max-restarts (also abbreviated, as Boost accepts them).
  const std::vector<std::string> args(argv, argv + argc);
  bool resumes = false;
  for (const auto& a : args) resumes |= a == "--resume" || a.rfind("--resume=", 0) == 0;
  if (max_restarts > 0 && !resumes)
    std::cerr << "ktf-host: warning: --max-restarts without --resume auto -o DIR: a restarted "
                 "job starts training from the beginning\n";
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM}) ::sigaction(sig, &sa, nullptr);
  for (int attempt = 0;; ++attempt) {
    const Attempt a = run_attempt(args, nproc, attempt, max_restarts, grace_seconds, quiet);
    if (a.code == 0 || !a.restartable || attempt >= max_restarts || g_stop_signal) {
      if (a.code != 0 && a.restartable && max_restarts > 0 && attempt >= max_restarts)
        std::cerr << "ktf-host: the job failed " << attempt + 1 << " time(s); no restart left"
                  << std::endl;
      return a.code;
    }
    std::cerr << "ktf-host: restarting the job (restart " << attempt + 1 << " of " << max_restarts
              << ")" << std::endl;
  }
}

}  // namespace ktf::host
