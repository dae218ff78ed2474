// libFuzzer target: request bodies of /v1/completions, /v1/chat/completions, /v1/tokenize and
// /v1/detokenize (server/openai_protocol). Each input is tried as all four; a bad body must
// throw ApiError (the route's 400/413), never anything else.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string_view>

#include "server/api_error.h"
#include "server/openai_protocol.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using ktl::server::ApiError;

template <typename F>
void expect_ok_or_api_error(F&& parse) {
  try {
    parse();
  } catch (const ApiError&) {
  } catch (const std::exception& e) {
    ktl::fuzz::undocumented_exception(e.what());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const ktl::server::ProtocolLimits limits;
  for (bool chat : {false, true}) {
    expect_ok_or_api_error([&] {
      auto r = ktl::server::parse_completion_request(body, chat, limits);
      if (r.chat) (void)ktl::server::apply_chat_template(r.messages);
    });
  }
  expect_ok_or_api_error([&] { (void)ktl::server::parse_tokenize_request(body); });
  expect_ok_or_api_error([&] { (void)ktl::server::parse_detokenize_request(body, 32000); });
  return 0;
}
