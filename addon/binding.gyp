{
  "target_defaults": {
    "cflags_cc": ["-std=c++20", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
    "cflags!": ["-fno-exceptions"]
  },
  "targets": [
    {
      "target_name": "berth",
      "sources": ["<!@(ls -1 src/*.cc)", "shim/seccomp.cc", "shim/caps.cc", "shim/cgroups.cc", "shim/util.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "shim"],
      "defines": ["NAPI_VERSION=9", "NODE_ADDON_API_DISABLE_DEPRECATED"]
    },
    {
      "target_name": "berth-shim",
      "type": "executable",
      "sources": ["<!@(ls -1 shim/*.cc)"],
      "include_dirs": ["shim"]
    }
  ]
}
