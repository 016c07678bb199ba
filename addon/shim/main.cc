// berth-shim: the per-container helper (docs/shim.md).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "container.h"
#include "exec.h"
#include "hostaddrs.h"
#include "init.h"
#include "pacer.h"
#include "reexec.h"
#include "rules.h"
#include "util.h"

namespace {

constexpr const char* kUsage =
    "usage: berth-shim create BUNDLE|-\n"
    "       berth-shim exec BUNDLE|- [-e KEY=VALUE]... [--cwd DIR] -- COMMAND [ARG...]\n"
    "       berth-shim version\n"
    "(-: the bundle path is in $BERTH_SHIM_BUNDLE)\n";

// The bundle path may come in the environment instead of argv: any local user reads
// /proc/PID/cmdline, only root a root process's /proc/PID/environ. Taken out of the
// environment at once, so nothing the shim starts inherits it.
constexpr const char* kBundleEnv = "BERTH_SHIM_BUNDLE";

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "version") {
    std::printf("1\n");
    return 0;
  }
  if (mode == "selftest" && argc >= 3 && std::string(argv[2]) == "hostaddrs") {
    // The host's own addresses as the supervisor reads them (hostaddrs.h), comma-separated.
    try {
      std::string out;
      for (const auto& c : berth::load_host_addresses())
        out += (out.empty() ? "" : ",") + berth::format_ip(c.net) + "/" + std::to_string(c.prefix);
      std::printf("%s\n", out.c_str());
      return 0;
    } catch (const berth::SysError& e) {
      std::fprintf(stderr, "berth-shim: %s\n", e.message().c_str());
      return 1;
    }
  }
  if (mode == "selftest" && argc == 4 && std::strcmp(argv[2], "pace") == 0) {
    // The supervisor's CPU pacing (pacer.h), which cgroup v2 hosts rely on, testable anywhere.
    std::printf("%s\n", berth::pacer_selftest(argv[3]).c_str());
    return 0;
  }
  if (mode == "selftest" && argc == 4) {
    // The pure parts of the supervisor (JSON, CIDRs, rules, connect decisions), for tests.
    std::printf("%s\n", berth::selftest(argv[2], argv[3]).c_str());
    return 0;
  }
  if (mode != "create" && mode != "exec") {
    std::fputs(kUsage, stderr);
    return 2;
  }
  // 1. Before anything else, run from a sealed copy (CVE-2019-5736).
  try {
    berth::ensure_sealed_self(argv);
  } catch (const berth::SysError& e) {
    if (mode == "create") {
      std::printf("%s\n", e.to_json().c_str());
      return 1;
    }
    std::fprintf(stderr, "berth-shim: %s\n", e.message().c_str());
    return 125;
  }
  berth::remember_command_line(argc, argv);
  if (argc > 2 && std::strcmp(argv[2], "-") == 0) {
    const char* bundle = std::getenv(kBundleEnv);
    if (bundle == nullptr || *bundle == '\0') {
      berth::SysError e{"BERTH_ERR_CONFIG", "", "", 0, std::string("bundle `-` but $") + kBundleEnv + " is not set"};
      if (mode == "create") std::printf("%s\n", e.to_json().c_str());
      else std::fprintf(stderr, "berth-shim: %s\n", e.message().c_str());
      return mode == "create" ? 1 : 125;
    }
    argv[2] = ::strdup(bundle);  // argv's own memory (what /proc/PID/cmdline shows) keeps "-"
    ::unsetenv(kBundleEnv);
  }
  if (mode == "create") {
    if (argc != 3) {
      std::fputs(kUsage, stderr);
      return 2;
    }
    return berth::cmd_create(argv[2]);
  }
  return berth::cmd_exec(argc, argv);
}
