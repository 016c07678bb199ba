// seccompDeniedSyscalls(), seccompProgram(): the default filter, for inspection and tests.
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

// struct sock_filter as the kernel reads it: u16 code, u8 jt, u8 jf, u32 k, host byte order.
Napi::Value seccomp_program(const Napi::CallbackInfo& info) {
  const auto program = build_filter(default_deny_spec());
  static_assert(sizeof(sock_filter) == 8);
  auto buf = Napi::Buffer<uint8_t>::Copy(info.Env(), reinterpret_cast<const uint8_t*>(program.data()),
                                         program.size() * sizeof(sock_filter));
  return buf;
}

}  // namespace berth
