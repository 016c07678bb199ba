// The addon's exports, one C++ file per area; binding.cc registers them.
#pragma once

#include <napi.h>

#include "util.h"

namespace berth {

// A SysError as a JS Error with Node's fields: code (BERTH_ERR_*), errno (positive, as in the
// shim's JSON), syscall, path.
Napi::Error to_js_error(Napi::Env env, const SysError& e);

// probe.cc
Napi::Value probe_features(const Napi::CallbackInfo& info);
// seccomp_js.cc
Napi::Value seccomp_denied_syscalls(const Napi::CallbackInfo& info);
Napi::Value seccomp_program(const Napi::CallbackInfo& info);
Napi::Value seccomp_proxy_program(const Napi::CallbackInfo& info);
// caps_js.cc
Napi::Value default_capabilities_js(const Napi::CallbackInfo& info);

}  // namespace berth
