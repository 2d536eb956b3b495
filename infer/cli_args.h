// Command-line handling shared by dex's programs: `--key value` / `--key=value` / flags, with `--max_epochs` and
// `--max-epochs` meaning the same key (MONAI's bundle CLI style), JSON configs whose every key can be overridden.
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dex {

struct ParsedArgs {
  std::map<std::string, std::vector<std::string>> values;  // key (underscores) -> values in order
  std::set<std::string> flags;                             // keys given without a value
  bool has(const std::string& k) const { return values.count(k) || flags.count(k); }
  std::string get(const std::string& k, const std::string& def = "") const;  // last value
  const std::vector<std::string>& all(const std::string& k) const;
};

// `flag_keys` take no value; every other key needs one. Unknown keys (not in value_keys or flag_keys) are an
// InputError naming the key and listing the close ones.
ParsedArgs parse_args(int argc, char** argv, const std::set<std::string>& value_keys,
                      const std::set<std::string>& flag_keys);

// Reads a JSON config (InputError naming the file on any problem) and applies `overrides` (key -> text); values
// are parsed as JSON when they parse (numbers, true/false, lists), else kept as strings. An override of a key the
// config does not have is an InputError unless `allow_new`.
nlohmann::json load_config(const std::string& path);
void apply_overrides(nlohmann::json& config, const std::map<std::string, std::string>& overrides, bool allow_new,
                     const std::string& config_name);

std::string normalize_key(std::string k);  // strip leading dashes, '-' -> '_'
bool parent_dir_exists(const std::string& path);

}  // namespace dex
