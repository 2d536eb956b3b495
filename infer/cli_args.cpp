#include "infer/cli_args.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "kernels/common.h"

namespace dex {

std::string normalize_key(std::string k) {
  size_t i = 0;
  while (i < k.size() && k[i] == '-') ++i;
  k = k.substr(i);
  for (auto& c : k)
    if (c == '-') c = '_';
  return k;
}

std::string ParsedArgs::get(const std::string& k, const std::string& def) const {
  auto it = values.find(k);
  return it == values.end() || it->second.empty() ? def : it->second.back();
}
const std::vector<std::string>& ParsedArgs::all(const std::string& k) const {
  static const std::vector<std::string> none;
  auto it = values.find(k);
  return it == values.end() ? none : it->second;
}

ParsedArgs parse_args(int argc, char** argv, const std::set<std::string>& value_keys,
                      const std::set<std::string>& flag_keys) {
  ParsedArgs a;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    DEX_INPUT_CHECK(arg.size() > 2 && arg[0] == '-' && arg[1] == '-', "unexpected argument '", arg,
                    "' (options look like --name value; see --help)");
    std::string key = arg, val;
    bool has_val = false;
    auto eq = arg.find('=');
    if (eq != std::string::npos) {
      key = arg.substr(0, eq);
      val = arg.substr(eq + 1);
      has_val = true;
    }
    key = normalize_key(key);
    if (flag_keys.count(key)) {
      DEX_INPUT_CHECK(!has_val, "option --", key, " takes no value");
      a.flags.insert(key);
      continue;
    }
    if (!value_keys.count(key)) {
      std::string known;
      for (auto& k : value_keys) known += " --" + k;
      for (auto& k : flag_keys) known += " --" + k;
      throw InputError(str("unknown option --", key, " (known:", known, ")"));
    }
    if (!has_val) {
      DEX_INPUT_CHECK(i + 1 < argc, "option --", key, " needs a value");
      val = argv[++i];
    }
    a.values[key].push_back(val);
  }
  return a;
}

nlohmann::json load_config(const std::string& path) {
  std::ifstream f(path);
  DEX_INPUT_CHECK(f.good(), "cannot read config '", path, "': no such file or not readable");
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    auto j = nlohmann::json::parse(ss.str());
    DEX_INPUT_CHECK(j.is_object(), "config '", path, "' must be a JSON object");
    return j;
  } catch (const nlohmann::json::exception& e) {
    throw InputError(str("config '", path, "' is not valid JSON: ", e.what()));
  }
}

void apply_overrides(nlohmann::json& config, const std::map<std::string, std::string>& overrides, bool allow_new,
                     const std::string& config_name) {
  for (auto& [k, text] : overrides) {
    DEX_INPUT_CHECK(allow_new || config.contains(k), "unknown key '", k, "': ", config_name, " has no such setting");
    nlohmann::json v;
    try {
      v = nlohmann::json::parse(text);
    } catch (...) {
      v = text;
    }
    // A string setting stays a string even when the text looks like a number ("--dataset-dir 123").
    if (config.contains(k) && config[k].is_string() && !v.is_string()) v = text;
    config[k] = v;
  }
}

bool parent_dir_exists(const std::string& path) {
  auto slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  struct stat st;
  return stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace dex
