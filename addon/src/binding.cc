// Registers the addon's exports. Only argument checks live here; each area has its own file.
#include <napi.h>

#include "addon.h"

namespace berth {
namespace {

using Fn = Napi::Value (*)(const Napi::CallbackInfo&);

// Most exports take no arguments; a call with some is a caller's bug, said loudly. Native
// SysErrors become JS errors with Node's fields here, once for all exports.
template <Fn fn>
Napi::Value no_args(const Napi::CallbackInfo& info) {
  if (info.Length() != 0) {
    Napi::TypeError err = Napi::TypeError::New(info.Env(), "expected no arguments");
    err.Value().Set("code", "ERR_INVALID_ARG_TYPE");
    throw err;
  }
  try {
    return fn(info);
  } catch (const SysError& e) {
    throw to_js_error(info.Env(), e);
  }
}

// One plain object argument (an options bag).
template <Fn fn>
Napi::Value one_object(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsObject()) {
    Napi::TypeError err = Napi::TypeError::New(info.Env(), "expected one object argument");
    err.Value().Set("code", "ERR_INVALID_ARG_TYPE");
    throw err;
  }
  try {
    return fn(info);
  } catch (const SysError& e) {
    throw to_js_error(info.Env(), e);
  }
}

}  // namespace
}  // namespace berth

static Napi::Object init(Napi::Env env, Napi::Object exports) {
  using namespace berth;
  exports.Set("probeFeatures", Napi::Function::New<no_args<probe_features>>(env, "probeFeatures"));
  exports.Set("seccompDeniedSyscalls",
              Napi::Function::New<no_args<seccomp_denied_syscalls>>(env, "seccompDeniedSyscalls"));
  exports.Set("seccompProgram", Napi::Function::New<no_args<seccomp_program>>(env, "seccompProgram"));
  exports.Set("seccompProxyProgram",
              Napi::Function::New<one_object<seccomp_proxy_program>>(env, "seccompProxyProgram"));
  exports.Set("defaultCapabilities",
              Napi::Function::New<no_args<default_capabilities_js>>(env, "defaultCapabilities"));
  return exports;
}

NODE_API_MODULE(berth, init)
