// A compact JSON reader for the control socket's `rules` line (docs/proxy.md). Pure: a string in,
// a tree out, no syscalls, so it is tested without root (`berth-shim selftest json`). Limits keep a
// hostile or broken client from exhausting the shim: depth, and the input size the caller allows.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace berth {

class Json {
 public:
  enum Kind { NUL, BOOL, NUMBER, STRING, ARRAY, OBJECT };

  Kind kind() const { return kind_; }
  bool is(Kind k) const { return kind_ == k; }
  bool boolean() const { return b_; }
  double number() const { return n_; }
  const std::string& str() const { return s_; }
  const std::vector<Json>& items() const { return a_; }
  const std::map<std::string, Json>& members() const { return o_; }
  // Member KEY of an object, or nullptr (also when this is not an object).
  const Json* get(const std::string& key) const;

  // Compact serialisation (sorted keys), for tests and error messages.
  std::string dump() const;

  static Json make_null() { return Json{}; }

 private:
  friend class JsonParser;
  Kind kind_ = NUL;
  bool b_ = false;
  double n_ = 0;
  std::string s_;
  std::vector<Json> a_;
  std::map<std::string, Json> o_;
};

// Parses one JSON value (RFC 8259; surrounding whitespace allowed, nothing else after it).
// Throws SysError{BERTH_ERR_CONFIG} with the offset of the first error.
Json parse_json(const std::string& text);

}  // namespace berth
