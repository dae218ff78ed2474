#include "core/data/dataset_split.h"

#include <stdexcept>

#include "core/base/utf8_util.h"

namespace ktl {

const char* split_name(Split s) {
  switch (s) {
    case Split::kTrain:
      return "train";
    case Split::kVal:
      return "val";
    case Split::kTest:
      return "test";
  }
  return "?";
}

DatasetSplit::DatasetSplit(SplitConfig cfg) : cfg_(cfg) {
  if (cfg_.val_fraction < 0 || cfg_.test_fraction < 0 ||
      cfg_.val_fraction + cfg_.test_fraction >= 1.0)
    throw std::invalid_argument("val and test fractions must be >= 0 and sum to less than 1");
}

double DatasetSplit::position(std::string_view doc) const {
  uint64_t h = utf8::mix64(utf8::fnv1a64(doc) ^ utf8::mix64(cfg_.seed));
  return static_cast<double>(h >> 11) / static_cast<double>(1ULL << 53);
}

Split DatasetSplit::assign(std::string_view doc) const {
  const double u = position(doc);
  if (u < cfg_.val_fraction) return Split::kVal;
  if (u < cfg_.val_fraction + cfg_.test_fraction) return Split::kTest;
  return Split::kTrain;
}

}  // namespace ktl
