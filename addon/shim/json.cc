#include "json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "util.h"

namespace berth {

constexpr int kMaxDepth = 32;

class JsonParser {
 public:
  explicit JsonParser(const std::string& s) : s_(s) {}

  Json parse() {
    Json v = value(0);
    ws();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const char* what) {
    throw_error("BERTH_ERR_CONFIG", std::string("JSON: ") + what + " at offset " + std::to_string(i_));
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) i_++;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) {
      i_++;
      return true;
    }
    return false;
  }
  void expect_word(const char* w) {
    for (const char* p = w; *p; p++, i_++)
      if (i_ >= s_.size() || s_[i_] != *p) fail("bad literal");
  }

  Json value(int depth) {
    if (depth > kMaxDepth) fail("nested too deeply");
    ws();
    if (i_ >= s_.size()) fail("unexpected end");
    Json v;
    char c = s_[i_];
    if (c == '{') {
      i_++;
      v.kind_ = Json::OBJECT;
      if (eat('}')) return v;
      do {
        ws();
        if (i_ >= s_.size() || s_[i_] != '"') fail("want a string key");
        std::string k = string();
        if (!eat(':')) fail("want `:`");
        v.o_[k] = value(depth + 1);  // a repeated key: the last one wins, as in JavaScript
      } while (eat(','));
      if (!eat('}')) fail("want `,` or `}`");
    } else if (c == '[') {
      i_++;
      v.kind_ = Json::ARRAY;
      if (eat(']')) return v;
      do v.a_.push_back(value(depth + 1));
      while (eat(','));
      if (!eat(']')) fail("want `,` or `]`");
    } else if (c == '"') {
      v.kind_ = Json::STRING;
      v.s_ = string();
    } else if (c == 't') {
      expect_word("true");
      v.kind_ = Json::BOOL;
      v.b_ = true;
    } else if (c == 'f') {
      expect_word("false");
      v.kind_ = Json::BOOL;
    } else if (c == 'n') {
      expect_word("null");
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind_ = Json::NUMBER;
      v.n_ = number();
    } else {
      fail("unexpected character");
    }
    return v;
  }

  double number() {
    size_t start = i_;
    if (s_[i_] == '-') i_++;
    auto digits = [&] {
      size_t d = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') i_++;
      if (i_ == d) fail("bad number");
      return i_ - d;
    };
    if (i_ < s_.size() && s_[i_] == '0') {
      i_++;
    } else {
      digits();
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      i_++;
      digits();
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      i_++;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) i_++;
      digits();
    }
    std::string text = s_.substr(start, i_ - start);
    double d = std::strtod(text.c_str(), nullptr);
    if (!std::isfinite(d)) fail("number out of range");
    return d;
  }

  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("short \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
      char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else fail("bad \\u escape");
    }
    return v;
  }

  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  std::string string() {
    i_++;  // the opening quote
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xd800 && cp < 0xdc00) {
            if (i_ + 2 > s_.size() || s_[i_] != '\\' || s_[i_ + 1] != 'u') fail("lone surrogate");
            i_ += 2;
            unsigned lo = hex4();
            if (lo < 0xdc00 || lo >= 0xe000) fail("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          } else if (cp >= 0xdc00 && cp < 0xe000) {
            fail("lone surrogate");
          }
          utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
  }

  const std::string& s_;
  size_t i_ = 0;
};

const Json* Json::get(const std::string& key) const {
  if (kind_ != OBJECT) return nullptr;
  auto it = o_.find(key);
  return it == o_.end() ? nullptr : &it->second;
}

std::string Json::dump() const {
  switch (kind_) {
    case NUL: return "null";
    case BOOL: return b_ ? "true" : "false";
    case NUMBER: {
      char buf[32];
      if (n_ == std::floor(n_) && std::fabs(n_) < 1e15) std::snprintf(buf, sizeof buf, "%.0f", n_);
      else std::snprintf(buf, sizeof buf, "%.17g", n_);
      return buf;
    }
    case STRING: return "\"" + json_escape(s_) + "\"";
    case ARRAY: {
      std::string out = "[";
      for (size_t k = 0; k < a_.size(); k++) out += (k ? "," : "") + a_[k].dump();
      return out + "]";
    }
    case OBJECT: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, v] : o_) {
        out += (first ? "\"" : ",\"") + json_escape(k) + "\":" + v.dump();
        first = false;
      }
      return out + "}";
    }
  }
  return "null";
}

Json parse_json(const std::string& text) { return JsonParser(text).parse(); }

}  // namespace berth
