// SHA-256: the FIPS 180-4 test vectors, and the SHA-NI block function against the scalar one on
// every length around the block and padding boundaries and on split updates.
#include "core/base/sha256.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/base/file_util.h"

namespace ktl {
namespace {

std::string hash(const std::string& s, Sha256::Impl impl) {
  Sha256 h(impl);
  h.update(s.data(), s.size());
  return h.hex_digest();
}

TEST(Sha256, KnownVectors) {
  for (auto impl : {Sha256::Impl::kScalar, Sha256::Impl::kAuto}) {
    EXPECT_EQ(hash("", impl), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(hash("abc", impl),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(hash("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", impl),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    EXPECT_EQ(hash(std::string(1000000, 'a'), impl),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  }
  EXPECT_EQ(sha256_hex("abc"), hash("abc", Sha256::Impl::kScalar));
}

TEST(Sha256, ShaNiMatchesScalar) {
  if (!sha256_has_sha_ni()) GTEST_SKIP() << "this CPU has no SHA extensions";
  EXPECT_EQ(Sha256(Sha256::Impl::kShaNi).impl(), Sha256::Impl::kShaNi);
  std::mt19937 rng(7);
  std::string data(5000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (size_t n = 0; n <= 300; ++n)
    ASSERT_EQ(hash(data.substr(0, n), Sha256::Impl::kShaNi),
              hash(data.substr(0, n), Sha256::Impl::kScalar))
        << n;
  // Split updates (partial-block buffering) agree with one update.
  for (size_t cut : {1, 63, 64, 65, 127, 1000, 4999}) {
    Sha256 a(Sha256::Impl::kShaNi);
    a.update(data.data(), cut);
    a.update(data.data() + cut, data.size() - cut);
    EXPECT_EQ(a.hex_digest(), hash(data, Sha256::Impl::kScalar)) << cut;
  }
}

// Prints the throughput of each implementation (no assertion: machines differ).
TEST(Sha256, Throughput) {
  std::string data(64 << 20, 'x');
  for (auto impl : {Sha256::Impl::kScalar, Sha256::Impl::kAuto}) {
    const auto t0 = std::chrono::steady_clock::now();
    Sha256 h(impl);
    h.update(data.data(), data.size());
    h.hex_digest();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("sha256 %s: %.0f MB/s (%.2f s/GB)\n",
                h.impl() == Sha256::Impl::kShaNi ? "sha-ni" : "scalar", data.size() / 1e6 / s,
                s / (data.size() / 1e9));
  }
}

}  // namespace
}  // namespace ktl
