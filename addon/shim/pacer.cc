#include "pacer.h"

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "util.h"

namespace berth {
namespace {

long long clock_ns(clockid_t id) {
  timespec ts{};
  ::clock_gettime(id, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

}  // namespace

CpuPacer::CpuPacer(long long quota_us, long long period_us) {
  const double period = period_us > 0 ? static_cast<double>(period_us) : 100000.0;
  const double quota = quota_us > 0 ? static_cast<double>(quota_us) : period;
  rate_ = quota / period;
  burst_ns_ = quota * 1000.0;
  tokens_ns_ = burst_ns_;
  refilled_ns_ = clock_ns(CLOCK_MONOTONIC);
}

void CpuPacer::pace() {
  thread_local long long last_cpu = -1;
  const long long cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  const long long used = last_cpu < 0 ? 0 : cpu - last_cpu;
  last_cpu = cpu;
  double debt_ns;
  {
    std::lock_guard<std::mutex> g(mu_);
    const long long now = clock_ns(CLOCK_MONOTONIC);
    tokens_ns_ = std::min(burst_ns_, tokens_ns_ + static_cast<double>(now - refilled_ns_) * rate_);
    refilled_ns_ = now;
    tokens_ns_ -= static_cast<double>(used);
    debt_ns = tokens_ns_ < 0 ? -tokens_ns_ : 0;
  }
  if (debt_ns <= 0) return;
  // The time the bucket takes to climb back to zero. Another thread in debt sleeps as well; the
  // next pace() of each refills from the clock, so sleeping in parallel costs nothing extra.
  const long long wait = static_cast<long long>(debt_ns / rate_);
  timespec ts{static_cast<time_t>(wait / 1000000000LL), static_cast<long>(wait % 1000000000LL)};
  while (::nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

std::string pacer_selftest(const std::string& quota_text) {
  char* end = nullptr;
  const double quota = std::strtod(quota_text.c_str(), &end);
  if (end == quota_text.c_str() || *end || !(quota > 0) || quota > 64) {
    return SysError{"BERTH_ERR_CONFIG", "", "", 0, "pace: QUOTA must be a number of CPUs, e.g. 0.2"}.to_json();
  }
  CpuPacer pacer(static_cast<long long>(quota * 100000), 100000);
  const long long start = clock_ns(CLOCK_MONOTONIC);
  const long long stop = start + 2000000000LL;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; i++) {
    threads.emplace_back([&] {
      while (clock_ns(CLOCK_MONOTONIC) < stop) {
        const long long piece = clock_ns(CLOCK_THREAD_CPUTIME_ID) + 50000;
        while (clock_ns(CLOCK_THREAD_CPUTIME_ID) < piece) {
        }
        pacer.pace();
      }
    });
  }
  for (auto& t : threads) t.join();
  const double wall = static_cast<double>(clock_ns(CLOCK_MONOTONIC) - start) / 1e9;
  const double cpu = static_cast<double>(clock_ns(CLOCK_PROCESS_CPUTIME_ID)) / 1e9;
  char out[96];
  std::snprintf(out, sizeof out, "{\"cpu\":%.3f,\"wall\":%.3f}", cpu, wall);
  return out;
}

}  // namespace berth
