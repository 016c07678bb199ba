// seccompDeniedSyscalls(), seccompProgram(), seccompProxyProgram(): the filters berth installs,
// for inspection and tests.
#include <cstring>

#include "addon.h"
#include "seccomp.h"

namespace berth {

Napi::Value seccomp_denied_syscalls(const Napi::CallbackInfo& info) {
  const auto names = denied_syscall_names();
  Napi::Array out = Napi::Array::New(info.Env(), names.size());
  for (size_t i = 0; i < names.size(); i++) out.Set(static_cast<uint32_t>(i), names[i]);
  return out;
}

namespace {

// struct sock_filter as the kernel reads it: u16 code, u8 jt, u8 jf, u32 k, host byte order.
Napi::Value program_buffer(Napi::Env env, const std::vector<sock_filter>& program) {
  static_assert(sizeof(sock_filter) == 8);
  return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(program.data()),
                                     program.size() * sizeof(sock_filter));
}

}  // namespace

Napi::Value seccomp_program(const Napi::CallbackInfo& info) {
  return program_buffer(info.Env(), build_filter(default_deny_spec()));
}

// The filter a container's command gets (proxy_filter_spec): `traps` is an object whose boolean
// fields network, uname and open say what is trapped (binding.cc checks it is an object).
Napi::Value seccomp_proxy_program(const Napi::CallbackInfo& info) {
  Napi::Object o = info[0].As<Napi::Object>();
  ProxyTraps traps;
  auto flag = [&](const char* key, bool& out) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return;
    if (!v.IsBoolean()) {
      Napi::TypeError err = Napi::TypeError::New(info.Env(), std::string("traps.") + key + " must be a boolean");
      err.Value().Set("code", "ERR_INVALID_ARG_TYPE");
      throw err;
    }
    out = v.As<Napi::Boolean>().Value();
  };
  flag("network", traps.network);
  flag("uname", traps.uname);
  flag("open", traps.open);
  return program_buffer(info.Env(), build_filter(proxy_filter_spec(traps)));
}

}  // namespace berth
