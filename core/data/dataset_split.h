// DatasetSplit: assigns each document to train, val or test from a hash of its text and the seed,
// so the assignment is deterministic, independent of input order, and a document (after exact
// dedup, unique) can never land in two splits. Default 98/1/1.
// Thread-safety: immutable; assign() is safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ktl {

enum class Split { kTrain = 0, kVal = 1, kTest = 2 };
const char* split_name(Split s);

struct SplitConfig {
  double val_fraction = 0.01;
  double test_fraction = 0.01;
  uint64_t seed = 1234;
};

class DatasetSplit {
 public:
  explicit DatasetSplit(SplitConfig cfg = {});
  // Uniform value in [0, 1) for the document; splits are ranges of it.
  double position(std::string_view doc) const;
  Split assign(std::string_view doc) const;

 private:
  SplitConfig cfg_;
};

}  // namespace ktl
