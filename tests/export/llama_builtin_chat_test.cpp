// llama.cpp's built-in (non-Jinja) chat formats: llama-cli, llama-server --no-jinja and every
// caller of llama_chat_apply_template() pick one with llm_chat_detect_template(the GGUF's
// tokenizer.chat_template) (src/llama-chat.cpp) and never run the Jinja. The test dlopens the
// prebuilt libllama of node-llama-cpp (tests/export/llama/node_modules, `make test-deps`;
// skipped without it) and asks it to format ktl's rendered messages under our templates:
//   - ChatML is detected as "chatml" (the template contains "<|im_start|>") and rendered exactly
//     as ktl renders it, less the <s> llama.cpp adds as a token, for every conversation of
//     tests/tokenizer/chat_conversations.json (tools and tool turns included: their text is in
//     the messages by then);
//   - the legacy template is taken for Phi-3 ("<|assistant|>" and "<|end|>") and rendered as
//     "<|user|>\n...<|end|>\n", which those models never saw: why new chat models use ChatML.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/base/file_util.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/chat_tools.h"

namespace ktl {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

struct LlamaChatMessage {  // struct llama_chat_message (include/llama.h)
  const char* role;
  const char* content;
};
using ApplyFn = int32_t (*)(const char* tmpl, const LlamaChatMessage* chat, size_t n_msg,
                            bool add_ass, char* buf, int32_t length);

// llama_chat_apply_template from node-llama-cpp's prebuilt libllama, or null (and why).
ApplyFn load_apply(std::string* why) {
  const fs::path bins = fs::path(KTL_SOURCE_DIR) /
                        "tests/export/llama/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64";
  if (!fs::is_directory(bins)) {
    *why = bins.string() + " missing (make test-deps)";
    return nullptr;
  }
  for (const auto& e : fs::directory_iterator(bins)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("libllama.", 0) != 0 || e.path().extension() != ".so") continue;
    void* h = dlopen(e.path().c_str(), RTLD_NOW | RTLD_LOCAL);  // RUNPATH $ORIGIN finds ggml
    if (!h) {
      *why = dlerror();
      return nullptr;
    }
    if (auto* f = reinterpret_cast<ApplyFn>(dlsym(h, "llama_chat_apply_template"))) return f;
    *why = "no llama_chat_apply_template in " + e.path().string();
    return nullptr;
  }
  *why = "no libllama.*.so in " + bins.string();
  return nullptr;
}

std::string apply(ApplyFn f, const std::string& tmpl, const std::vector<ChatMessage>& msgs,
                  bool add_ass) {
  std::vector<LlamaChatMessage> chat;
  for (const auto& m : msgs) chat.push_back({m.role.c_str(), m.content.c_str()});
  std::string buf(1 << 16, '\0');
  const int32_t n = f(tmpl.c_str(), chat.data(), chat.size(), add_ass, buf.data(), int32_t(buf.size()));
  if (n < 0) throw std::runtime_error("llama_chat_apply_template: template not supported");
  buf.resize(size_t(n));
  return buf;
}

std::vector<ChatApiMessage> api_messages(const ojson& c) {
  std::vector<ChatApiMessage> out;
  for (const auto& m : c["messages"]) {
    ChatApiMessage a{m["role"], m["content"].is_null() ? "" : m["content"].get<std::string>(), {}};
    if (m.contains("tool_calls"))
      for (const auto& call : m["tool_calls"]) {
        const ojson& args = call["function"]["arguments"];
        a.tool_calls.push_back({call["function"]["name"],
                                args.is_string() ? args.get<std::string>() : python_json(args.dump())});
      }
    out.push_back(std::move(a));
  }
  return out;
}

std::vector<ChatToolSpec> tools_of(const ojson& c) {
  std::vector<ChatToolSpec> out;
  if (c.contains("tools"))
    for (const auto& t : c["tools"])
      out.push_back({t["function"]["name"], t["function"].value("description", ""),
                     t["function"]["parameters"].dump()});
  return out;
}

TEST(LlamaCppBuiltinChat, RendersOurChatMLTemplateAsKtlDoes) {
  std::string why;
  const ApplyFn f = load_apply(&why);
  if (!f) GTEST_SKIP() << why;
  const ojson convs = ojson::parse(
      read_file(fs::path(KTL_SOURCE_DIR) / "tests/tokenizer/chat_conversations.json"));
  int compared = 0;
  for (const auto& c : convs) {
    if (c.value("expect_error", false)) continue;
    SCOPED_TRACE(c["name"].get<std::string>());
    const auto msgs = render_tool_messages(api_messages(c), tools_of(c), ChatFormat::kChatML);
    const bool agp = c.value("add_generation_prompt", false);
    EXPECT_EQ("<s>" + apply(f, ChatTemplate::jinja(ChatFormat::kChatML), msgs, agp),
              ChatTemplate::render_text(ChatFormat::kChatML, msgs, agp));
    ++compared;
  }
  EXPECT_GE(compared, 20);
}

TEST(LlamaCppBuiltinChat, TakesTheLegacyTemplateForPhi3) {
  std::string why;
  const ApplyFn f = load_apply(&why);
  if (!f) GTEST_SKIP() << why;
  const std::vector<ChatMessage> msgs = {{"user", "안녕"}, {"assistant", "반가워요"}};
  // Phi-3's built-in format: a newline after each marker and each <|end|>.
  EXPECT_EQ(apply(f, ChatTemplate::jinja(ChatFormat::kLegacy), msgs, true),
            "<|user|>\n안녕<|end|>\n<|assistant|>\n반가워요<|end|>\n<|assistant|>\n");
  EXPECT_NE(apply(f, ChatTemplate::jinja(ChatFormat::kLegacy), msgs, true),
            ChatTemplate::render_text(ChatFormat::kLegacy, msgs, true));
}

}  // namespace
}  // namespace ktl
