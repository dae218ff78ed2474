// API-key comparison, loopback detection, static-file and model-path confinement.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "server/allowed_paths.h"
#include "server/auth.h"
#include "server/static_files.h"

namespace ktl::server {
namespace {

namespace fs = std::filesystem;

TEST(Auth, ConstantTimeEquals) {
  EXPECT_TRUE(constant_time_equals("secret", "secret"));
  EXPECT_TRUE(constant_time_equals("", ""));
  EXPECT_FALSE(constant_time_equals("secret", "secreT"));
  EXPECT_FALSE(constant_time_equals("secret", "secret2"));
  EXPECT_FALSE(constant_time_equals("secret", ""));
  EXPECT_FALSE(constant_time_equals("", "x"));
  // A string that is the key followed by NULs must not match (length is part of the result).
  EXPECT_FALSE(constant_time_equals("ab", std::string("ab\0", 3)));
}

TEST(Auth, BearerHeader) {
  EXPECT_TRUE(bearer_authorized("", ""));  // no key configured
  EXPECT_TRUE(bearer_authorized("Bearer k1", "k1"));
  EXPECT_TRUE(bearer_authorized("bearer  k1 ", "k1"));
  EXPECT_FALSE(bearer_authorized("", "k1"));
  EXPECT_FALSE(bearer_authorized("Bearer", "k1"));
  EXPECT_FALSE(bearer_authorized("Bearer k2", "k1"));
  EXPECT_FALSE(bearer_authorized("Basic k1", "k1"));
  EXPECT_FALSE(bearer_authorized("k1", "k1"));
}

TEST(Auth, LoopbackHosts) {
  EXPECT_TRUE(is_loopback_host("127.0.0.1"));
  EXPECT_TRUE(is_loopback_host("127.1.2.3"));
  EXPECT_TRUE(is_loopback_host("::1"));
  EXPECT_TRUE(is_loopback_host("localhost"));
  EXPECT_FALSE(is_loopback_host("0.0.0.0"));
  EXPECT_FALSE(is_loopback_host("::"));
  EXPECT_FALSE(is_loopback_host("192.168.1.5"));
  EXPECT_FALSE(is_loopback_host("example.com"));
}

class StaticFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() /
            ("ktl_static_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
             "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(base_);
    root_ = base_ / "web";
    fs::create_directories(root_ / "node_modules/uplot/dist");
    write(root_ / "index.html", "<html>");
    write(root_ / "node_modules/uplot/dist/uPlot.min.css", "css");
    write(root_ / ".env", "hidden");
    write(base_ / "secret.txt", "outside");
    fs::create_symlink(base_ / "secret.txt", root_ / "escape.txt");
  }
  void TearDown() override { fs::remove_all(base_); }
  static void write(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }
  fs::path base_, root_;
};

TEST_F(StaticFilesTest, ServesOnlyInsideTheRoot) {
  auto index = resolve_static_path(root_, "/");
  ASSERT_TRUE(index);
  EXPECT_EQ(index->filename(), "index.html");
  EXPECT_TRUE(resolve_static_path(root_, "/index.html"));
  EXPECT_TRUE(resolve_static_path(root_, "/node_modules/uplot/dist/uPlot.min.css"));
  EXPECT_FALSE(resolve_static_path(root_, "/../secret.txt"));
  EXPECT_FALSE(resolve_static_path(root_, "/node_modules/../../secret.txt"));
  EXPECT_FALSE(resolve_static_path(root_, "/%2e%2e/secret.txt"));
  EXPECT_FALSE(resolve_static_path(root_, "/%2E%2E/secret.txt"));
  EXPECT_FALSE(resolve_static_path(root_, "/..%2fsecret.txt"));
  EXPECT_FALSE(resolve_static_path(root_, "/..\\secret.txt"));
  EXPECT_FALSE(resolve_static_path(root_, (base_ / "secret.txt").string()));  // absolute -> inside
  EXPECT_FALSE(resolve_static_path(root_, "relative.txt"));
  EXPECT_FALSE(resolve_static_path(root_, "/escape.txt"));    // symlink out of the root
  EXPECT_FALSE(resolve_static_path(root_, "/.env"));          // dotfiles
  EXPECT_FALSE(resolve_static_path(root_, "/node_modules"));  // directories
  EXPECT_FALSE(resolve_static_path(root_, "/missing.js"));
  EXPECT_FALSE(resolve_static_path(root_, std::string("/index.html\0x", 13)));
}

TEST_F(StaticFilesTest, MimeTypes) {
  EXPECT_EQ(mime_type_for("a.html"), "text/html; charset=utf-8");
  EXPECT_EQ(mime_type_for("a.JS"), "text/javascript; charset=utf-8");
  EXPECT_EQ(mime_type_for("a.css"), "text/css; charset=utf-8");
  EXPECT_EQ(mime_type_for("a.bin"), "application/octet-stream");
}

TEST_F(StaticFilesTest, ModelPathsConfinedToRoots) {
  fs::create_directories(base_ / "data/jobs/1/checkpoints/step_10");
  std::vector<fs::path> roots{base_ / "data"};
  auto ok = confine_path("jobs/1/checkpoints/step_10", base_ / "data", roots);
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, fs::canonical(base_ / "data/jobs/1/checkpoints/step_10"));
  EXPECT_TRUE(confine_path((base_ / "data/jobs").string(), base_ / "data", roots));
  EXPECT_FALSE(confine_path("../web", base_ / "data", roots));
  EXPECT_FALSE(confine_path("/etc", base_ / "data", roots));
  EXPECT_FALSE(confine_path((base_ / "data/../web").string(), base_ / "data", roots));
  EXPECT_FALSE(confine_path("", base_ / "data", roots));
  // A sibling whose name extends the root's is not inside it.
  fs::create_directories(base_ / "data2");
  EXPECT_FALSE(confine_path((base_ / "data2").string(), base_ / "data", roots));
}

}  // namespace
}  // namespace ktl::server
