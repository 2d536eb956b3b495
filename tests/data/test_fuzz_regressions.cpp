// Replays the committed fuzz seeds and regressions of the model-file and click-file targets (scripts/fuzz.sh model,
// clicks) through the same checks the fuzzers run (fuzz/fuzz_checks.h): every file loads or fails with InputError,
// never a crash, another exception or a broken invariant. (The NIfTI target's: NiftiIO.CommittedBadFilesAnd...)
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "fuzz/fuzz_checks.h"

namespace dex {
namespace {

namespace fs = std::filesystem;

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

TEST(FuzzRegressions, ModelFilesLoadOrFailCleanly) {
  int files = 0, loaded = 0;
  for (const std::string& dir : {std::string(DEX_SOURCE_DIR) + "/fuzz/regressions-model",
                                std::string(DEX_TEST_DATA) + "/modelfile"}) {
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string ext = e.path().extension().string();
      if (!e.is_regular_file() || ext == ".md" || ext == ".txt" || ext == ".json" || ext == ".fix") continue;
      ++files;
      try {
        fuzz::check_model_file(e.path().string());
        ++loaded;
      } catch (const InputError&) {
      } catch (const std::exception& x) {
        ADD_FAILURE() << e.path() << ": " << x.what();
      }
    }
  }
  EXPECT_GE(files, 10);
  EXPECT_GE(loaded, 5);  // the valid model fixtures load into their network
}

TEST(FuzzRegressions, ClickFilesParseOrFailCleanly) {
  int files = 0, parsed = 0;
  for (const std::string& dir : {std::string(DEX_SOURCE_DIR) + "/fuzz/seeds-clicks",
                                std::string(DEX_SOURCE_DIR) + "/fuzz/regressions-clicks"}) {
    for (const auto& e : fs::directory_iterator(dir)) {
      if (!e.is_regular_file() || e.path().extension() == ".md") continue;
      ++files;
      try {
        fuzz::check_clicks(read_all(e.path()));
        ++parsed;
      } catch (const InputError&) {
      } catch (const std::exception& x) {
        ADD_FAILURE() << e.path() << ": " << x.what();
      }
    }
  }
  EXPECT_GE(files, 3);
  EXPECT_GE(parsed, 3);  // the seeds are valid click files on the checks' 7 x 5 x 9 file
}

}  // namespace
}  // namespace dex
