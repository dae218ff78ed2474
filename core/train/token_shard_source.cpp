// open_token_shard(): the TokenSource over core/data/token_shard.h's memory-mapped shards.
#include <stdexcept>

#include "core/train/data_loader.h"

#if defined(KTL_HAVE_TOKEN_SHARD)
#include "core/data/token_shard.h"
#endif

namespace ktl {

#if defined(KTL_HAVE_TOKEN_SHARD)
namespace {

class ShardTokenSource : public TokenSource {
 public:
  explicit ShardTokenSource(const std::string& path) : shard_(TokenShard::open(path)) {}
  int64_t size() const override { return static_cast<int64_t>(shard_->size()); }
  void read(int64_t offset, int64_t n, int64_t* dst) const override {
    if (offset < 0 || n < 0 || offset + n > size())
      throw std::out_of_range("token read out of range");
    shard_->copy_to(uint64_t(offset), uint64_t(n), dst);
  }

 private:
  std::shared_ptr<TokenShard> shard_;
};

}  // namespace

std::shared_ptr<TokenSource> open_token_shard(const std::string& path) {
  return std::make_shared<ShardTokenSource>(path);
}
#else
std::shared_ptr<TokenSource> open_token_shard(const std::string& path) {
  throw std::runtime_error("token shards are not available in this build (ktl_data missing): " +
                           path);
}
#endif

}  // namespace ktl
