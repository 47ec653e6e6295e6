// A typed config struct described as a table of fields, so that YAML loading, `--set key=value`, printing the
// resolved config and unknown-key errors are written once for ModelConfig, TrainConfig and DecodeConfig.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace YAML {
class Node;
}

namespace streamsink {

// Strict scalar parsers: the whole string must parse ("12x" is an error). They throw Error("<where>: ...").
int64_t parse_int(const std::string& s, const std::string& where);
double parse_double(const std::string& s, const std::string& where);
bool parse_bool(const std::string& s, const std::string& where);
// A text value (a path, a name): any byte below 0x20 or 0x7f is an error. A stray carriage return (a file edited with
// Windows line endings) would otherwise end up inside a path, and not survive the resolved config's round trip.
std::string parse_text(const std::string& s, const std::string& where);

template <class C>
struct Field {
  std::string key;
  std::function<void(C&, const std::string&, const std::string& where)> set;  // parse a scalar into the field
  std::function<std::string(const C&)> get;                                  // the field as a YAML scalar
};

template <class C>
Field<C> int_field(const std::string& key, int64_t C::*m) {
  return {key, [m](C& c, const std::string& v, const std::string& w) { c.*m = parse_int(v, w); },
          [m](const C& c) { return std::to_string(c.*m); }};
}
std::string format_double(double v);
template <class C>
Field<C> double_field(const std::string& key, double C::*m) {
  return {key, [m](C& c, const std::string& v, const std::string& w) { c.*m = parse_double(v, w); },
          [m](const C& c) { return format_double(c.*m); }};
}
template <class C>
Field<C> bool_field(const std::string& key, bool C::*m) {
  return {key, [m](C& c, const std::string& v, const std::string& w) { c.*m = parse_bool(v, w); },
          [m](const C& c) { return std::string(c.*m ? "true" : "false"); }};
}
template <class C>
Field<C> string_field(const std::string& key, std::string C::*m) {
  return {key, [m](C& c, const std::string& v, const std::string& w) { c.*m = parse_text(v, w); },
          [m](const C& c) { return c.*m; }};
}

// Applies every key of the YAML map `node` to `c`. Errors name `where` (the file and section) and the key:
// an unknown key, a non-scalar value, a value of the wrong type.
void apply_yaml_map(const YAML::Node& node, const std::string& where,
                    const std::function<bool(const std::string& key, const std::string& value,
                                             const std::string& where)>& set_key);

template <class C>
void apply_fields(const std::vector<Field<C>>& fields, C& c, const YAML::Node& node, const std::string& where) {
  apply_yaml_map(node, where, [&](const std::string& key, const std::string& value, const std::string& w) {
    for (const auto& f : fields)
      if (f.key == key) {
        f.set(c, value, w);
        return true;
      }
    return false;
  });
}

// Sets one field by key; false when no field has that key.
template <class C>
bool set_field(const std::vector<Field<C>>& fields, C& c, const std::string& key, const std::string& value,
               const std::string& where) {
  for (const auto& f : fields)
    if (f.key == key) {
      f.set(c, value, where);
      return true;
    }
  return false;
}

// Writes every field into the YAML map `out`.
void emit_field(YAML::Node& out, const std::string& key, const std::string& value);
template <class C>
void emit_fields(const std::vector<Field<C>>& fields, const C& c, YAML::Node& out) {
  for (const auto& f : fields) emit_field(out, f.key, f.get(c));
}

}  // namespace streamsink
