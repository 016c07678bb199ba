// The shim's control socket (BUNDLE/shim.sock, docs/shim.md "The control socket") and the
// single-threaded epoll loop that serves it, copies the container's output into container.log
// and notices, through the pidfd, when the container's PID 1 exits.
#pragma once

#include <sys/types.h>

#include <map>
#include <functional>
#include <string>
#include <vector>

#include "logs.h"
#include "util.h"

namespace berth {

class Supervisor;

// Connects to the Unix socket PATH (a long path through an O_PATH fd of its directory).
// Returns an invalid fd when nothing listens there.
UniqueFd connect_unix(const std::string& path);

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
  // Serves `rules` and `listener` requests and forwards its events (docs/proxy.md).
  void set_supervisor(Supervisor* s) { sup_ = s; }
  // Calls FN every PERIOD_MS while the container runs (e.g. refreshing its /proc/meminfo).
  void set_tick(int period_ms, std::function<void()> fn) { tick_ms_ = period_ms; tick_ = std::move(fn); }

 private:
  void accept_clients();
  void on_client(int fd);
  std::string handle(int fd, const std::string& request);
  void flush_events();
  void send_line(int fd, const std::string& line);
  void drop(int fd);

  std::string path_;
  int tick_ms_ = 0;
  std::function<void()> tick_;
  UniqueFd tick_timer_;
  UniqueFd listen_;
  UniqueFd epoll_;
  struct Client {
    std::string in;                // unparsed input
    std::vector<UniqueFd> fds;     // received with SCM_RIGHTS, for a `listener` request
  };
  std::map<int, Client> clients_;
  Supervisor* sup_ = nullptr;
  UniqueFd timer_;  // one-shot: events are sent at most every 100 ms
  bool timer_armed_ = false;
  int pidfd_ = -1;
  pid_t pid_ = 0;
  bool running_ = true;
};

}  // namespace berth
