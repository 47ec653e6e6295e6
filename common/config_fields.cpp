#include "common/config_fields.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "common/error.h"

namespace streamsink {

int64_t parse_int(const std::string& s, const std::string& where) {
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno == ERANGE) throw Error(where + ": expected an integer, got '" + s + "'");
  return v;
}

double parse_double(const std::string& s, const std::string& where) {
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
    throw Error(where + ": expected a finite number, got '" + s + "'");
  return v;
}

bool parse_bool(const std::string& s, const std::string& where) {
  if (s == "true" || s == "True" || s == "yes" || s == "on" || s == "1") return true;
  if (s == "false" || s == "False" || s == "no" || s == "off" || s == "0") return false;
  throw Error(where + ": expected true or false, got '" + s + "'");
}

std::string format_double(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  std::string s = buf;
  // Keep it a float in YAML's eyes ("1" would read back fine, but "1.0" says what it is).
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string parse_text(const std::string& s, const std::string& where) {
  for (const unsigned char c : s)
    if (c < 0x20 || c == 0x7f) {
      char code[8];
      std::snprintf(code, sizeof code, "0x%02x", c);
      throw Error(where + ": the value holds a control character (byte " + code +
                  (c == '\r' ? ", a carriage return: Windows line endings?" : "") + ")");
    }
  return s;
}

void apply_yaml_map(const YAML::Node& node, const std::string& where,
                    const std::function<bool(const std::string&, const std::string&, const std::string&)>& set_key) {
  if (!node || node.IsNull()) return;
  if (!node.IsMap()) throw Error(where + ": expected a map of key: value");
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    const std::string at = where + ": key '" + key + "'";
    if (!kv.second.IsScalar()) throw Error(at + ": expected a single value (a scalar), got a list or map");
    if (!set_key(key, kv.second.Scalar(), at)) throw Error(where + ": unknown key '" + key + "'");
  }
}

void emit_field(YAML::Node& out, const std::string& key, const std::string& value) { out[key] = value; }

}  // namespace streamsink
