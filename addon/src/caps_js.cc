// defaultCapabilities(): the names of the capabilities a container keeps.
#include "addon.h"
#include "caps.h"

namespace berth {

Napi::Value default_capabilities_js(const Napi::CallbackInfo& info) {
  const auto names = capability_names(default_capabilities());
  Napi::Array out = Napi::Array::New(info.Env(), names.size());
  for (size_t i = 0; i < names.size(); i++) out.Set(static_cast<uint32_t>(i), names[i]);
  return out;
}

}  // namespace berth
