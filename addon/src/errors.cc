#include "addon.h"

namespace berth {

Napi::Error to_js_error(Napi::Env env, const SysError& e) {
  Napi::Error err = Napi::Error::New(env, e.message());
  Napi::Object o = err.Value();
  o.Set("code", e.code.empty() ? "BERTH_ERR_SYSCALL" : e.code);
  if (e.err) o.Set("errno", e.err);
  if (!e.syscall.empty()) o.Set("syscall", e.syscall);
  if (!e.path.empty()) o.Set("path", e.path);
  return err;
}

}  // namespace berth
