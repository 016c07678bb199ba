// Pacing for work done on a container's behalf that its cgroup cannot be charged for (on cgroup
// v2 the supervisor's threads cannot join the container's cpu cgroup, cgroups.h): a token bucket
// of CPU time, filled at the container's own quota (`--cpu`), at most one period ahead. Threads
// that call pace() between units of work sleep while the bucket is empty, so together they use
// at most the container's quota — the trapped calls they would have answered wait in the kernel.
#pragma once

#include <mutex>
#include <string>

namespace berth {

class CpuPacer {
 public:
  // QUOTA_US of CPU per PERIOD_US (a period <= 0 means the kernel's default, 100 ms).
  CpuPacer(long long quota_us, long long period_us);
  CpuPacer(const CpuPacer&) = delete;
  CpuPacer& operator=(const CpuPacer&) = delete;

  // Takes the CPU the calling thread used since its previous pace() out of the bucket (nothing on
  // its first call), and sleeps while the bucket is in debt. One pacer per thread: the previous
  // reading is kept per thread.
  void pace();

 private:
  std::mutex mu_;
  double rate_;        // CPU ns per wall ns
  double burst_ns_;    // the bucket's size: one period's quota
  double tokens_ns_;   // under mu_
  long long refilled_ns_;  // under mu_: monotonic time of the last refill
};

// `berth-shim selftest pace QUOTA` (e.g. 0.2): four threads that do nothing but work in 50 us
// pieces, paced to QUOTA CPUs, for two seconds. Returns {"cpu":C,"wall":W} in seconds.
std::string pacer_selftest(const std::string& quota);

}  // namespace berth
