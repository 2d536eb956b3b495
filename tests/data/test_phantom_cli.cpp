// dex-phantom, the command: writes the MSD layout for both views, and every wrong flag is a clear error with a
// non-zero exit and no dataset written.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "data/nifti_io.h"
#include "tests/testing.h"

namespace dex {
namespace {

namespace fs = std::filesystem;

std::string root() {
  static const std::string d = [] {
    const std::string p = "/tmp/dex_test_phantom_cli_" + std::to_string(getpid());
    fs::remove_all(p);
    fs::create_directories(p);
    return p;
  }();
  return d;
}

testing::CommandResult run(const std::string& args) {
  return testing::run_logged(std::string(DEX_BINARY_DIR) + "/bin/dex-phantom " + args, root() + "/last.log");
}

TEST(PhantomCli, SpleenViewWritesTheDecathlonLayout) {
  const std::string out = root() + "/spleen";
  const testing::CommandResult r = run("--out " + out + " --count 2 --test-count 1 --seed 3 --view spleen --orientation lps");
  ASSERT_EQ(r.rc, 0) << r.log;
  const nlohmann::json js = nlohmann::json::parse(std::ifstream(out + "/dataset.json"));
  EXPECT_EQ(js["numTraining"], 2);
  EXPECT_EQ(js["numTest"], 1);
  EXPECT_NE(js["description"].get<std::string>().find("view spleen"), std::string::npos);
  const Volume ct = read_nifti(out + "/imagesTr/spleen_1.nii.gz");
  const LabelVolume label = read_nifti_labels(out + "/labelsTr/spleen_1.nii.gz");
  ASSERT_EQ(ct.shape, label.shape);
  int64_t spleen = 0;
  for (int a = 0; a < 3; ++a) {
    EXPECT_GE(ct.shape[a], 48);
    EXPECT_LE(ct.shape[a], 64);
  }
  for (uint8_t v : label.data) spleen += v == 1;
  EXPECT_GT(spleen, label.size() / 40) << "the spleen fills a few percent of the spleen view";
  EXPECT_TRUE(fs::exists(out + "/imagesTs/spleen_3.nii.gz"));
}

TEST(PhantomCli, WrongFlagsAreClearErrors) {
  const struct {
    std::string args, message;
  } cases[] = {
      {"--out " + root() + "/bad1 --count 2 --seed 1 --view liver", "unknown phantom view 'liver'"},
      {"--out " + root() + "/bad2 --count 2 --seed 1 --size huge", "--size expects small or full"},
      {"--out " + root() + "/bad3 --count -1 --seed 1", "--count expects an integer >= 0"},
      {"--out " + root() + "/bad4 --count 2", "--out, --count and --seed are required"},
      {"--out " + root() + "/bad5 --count 2 --seed 1 --orientation sideways", "unknown phantom orientation"},
      {"--out " + root() + "/bad6 --count 2 --seed 1 --colour red", "unknown option --colour"},
      {"--out " + root() + "/bad7 --count 2 --seed", "missing value after --seed"},
      {"--out /nonexistent-dex-parent/x --count 1 --seed 1", "cannot create folder"},
  };
  for (const auto& c : cases) {
    const testing::CommandResult r = run(c.args);
    EXPECT_NE(r.rc, 0) << c.args;
    EXPECT_NE(r.log.find(c.message), std::string::npos) << c.args << "\n" << r.log;
    EXPECT_NE(r.log.find("usage: dex-phantom"), std::string::npos) << c.args;
  }
  for (int i = 1; i <= 7; ++i) EXPECT_FALSE(fs::exists(root() + "/bad" + std::to_string(i) + "/dataset.json"));
}

}  // namespace
}  // namespace dex
