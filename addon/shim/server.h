// The shim's control socket (BUNDLE/shim.sock, docs/shim.md "The control socket") and the
// single-threaded epoll loop that serves it, copies the container's output into container.log
// and notices, through the pidfd, when the container's PID 1 exits.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>

#include "logs.h"
#include "util.h"

namespace berth {

struct ExitInfo {
  int exit_code = 0;
  int signal = 0;
  bool oom_killed = false;
  unsigned long long finished_at = 0;
  std::string reason = "exited";

  std::string fields_json() const;  // "exitCode":..,"signal":..,... (no braces)
};

class ControlServer {
 public:
  // Binds and listens on PATH (replacing a stale socket), mode 0600.
  explicit ControlServer(std::string path);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Runs until the container's PID 1 (PIDFD, PID) has exited; copies OUT/ERR to LOG meanwhile.
  // Returns the raw wait status fields (code, signal); the caller completes ExitInfo.
  ExitInfo serve_until_exit(int pidfd, pid_t pid, int out_fd, int err_fd, LogWriter& log);
  // Copies what is left in the log pipes, waiting for their EOF up to TIMEOUT_MS.
  void drain_logs(int out_fd, int err_fd, LogWriter& log, int timeout_ms);
  // Sends LINE to every client, then closes them and removes the socket.
  void finish(const std::string& line);

 private:
  void accept_clients();
  void on_client(int fd);
  std::string handle(const std::string& request);
  void send_line(int fd, const std::string& line);
  void drop(int fd);

  std::string path_;
  UniqueFd listen_;
  UniqueFd epoll_;
  std::map<int, std::string> clients_;  // fd -> unparsed input
  int pidfd_ = -1;
  pid_t pid_ = 0;
  bool running_ = true;
};

}  // namespace berth
