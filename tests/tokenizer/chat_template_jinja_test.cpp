// Golden parity of the ChatML template with transformers' Jinja: the chat_template of the
// tokenizer_config.json ktl exports, rendered by Python's jinja2 as transformers'
// apply_chat_template renders it (tests/tokenizer/render_chat_template.py: sandboxed
// environment, trim_blocks/lstrip_blocks, raise_exception, tojson, {% generation %}), gives
// for every conversation of tests/tokenizer/chat_conversations.json (system, multi-turn, Hangul,
// empty contents, tool calls and results, two refused ones):
//   - the same text as ktl's C++ renderer (ChatTemplate::render_text over render_tool_messages),
//   - through our tokenizer (the text split at <s> and the markers, each stretch encoded on its
//     own, as llama.cpp and transformers' slow tokenizer do) the same ids as
//     ChatTemplate::render, which the trainer and the server use,
//   - the same assistant mask: the tokens {% generation %} covers are the SFT targets,
//   - and an error from both for a conversation ktl refuses.
// Skipped where python3-jinja2 is not installed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/base/file_util.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/chat_tools.h"
#include "core/tokenizer/spm_model_proto.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/korean_fixture.h"

namespace ktl {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

bool have_jinja2() {
  return fs::exists("/usr/bin/python3") &&
         std::system("/usr/bin/python3 -c 'import jinja2' 2>/dev/null") == 0;
}

struct Conversation {
  std::string name;
  std::vector<ChatApiMessage> messages;
  std::vector<ChatToolSpec> tools;
  bool add_generation_prompt = false;
  bool expect_error = false;
};

// The OpenAI / transformers message JSON as the server's ChatApiMessage.
Conversation parse_conversation(const ojson& c) {
  Conversation out;
  out.name = c.at("name").get<std::string>();
  out.add_generation_prompt = c.value("add_generation_prompt", false);
  out.expect_error = c.value("expect_error", false);
  for (const auto& m : c.at("messages")) {
    ChatApiMessage a;
    a.role = m.at("role").get<std::string>();
    if (m.contains("content") && !m["content"].is_null()) a.content = m["content"];
    if (m.contains("tool_calls"))
      for (const auto& call : m["tool_calls"]) {
        const ojson& args = call["function"]["arguments"];
        a.tool_calls.push_back({call["function"]["name"].get<std::string>(),
                                args.is_string() ? args.get<std::string>() : python_json(args.dump())});
      }
    out.messages.push_back(std::move(a));
  }
  if (c.contains("tools"))
    for (const auto& t : c["tools"]) {
      const ojson& fn = t["function"];
      out.tools.push_back({fn["name"].get<std::string>(), fn.value("description", ""),
                           fn["parameters"].dump()});
    }
  return out;
}

struct TokenSpan {
  int id;
  size_t begin, end;  // bytes of the rendered text the token stands for
};

// The rendered text's tokens with their byte spans, written out independently of
// ChatTemplate::tokenize_text: special pieces are their ids; each stretch of text between them
// is encoded on its own, SentencePiece's leading "▁" standing for no byte of the text.
std::vector<TokenSpan> token_spans(const Tokenizer& tok, const std::string& text) {
  const std::vector<std::pair<std::string, int>> specials = {
      {"<s>", tok.bos_id()},
      {"</s>", tok.eos_id()},
      {"<|im_start|>", tok.piece_to_id("<|im_start|>")},
      {"<|im_end|>", tok.piece_to_id("<|im_end|>")}};
  std::vector<TokenSpan> out;
  size_t run = 0;
  auto flush = [&](size_t end) {
    if (end <= run) return;
    const std::string piece = text.substr(run, end - run);
    long pos = long(run) - 1;  // the "▁" SentencePiece puts first
    for (int id : tok.encode(piece)) {
      const long len = long(tok.token_bytes(id).size());
      out.push_back({id, size_t(std::max(pos, long(run))), size_t(pos + len)});
      pos += len;
    }
    EXPECT_EQ(pos, long(end)) << "the tokens of \"" << piece << "\" do not add up to its bytes";
  };
  for (size_t pos = 0; pos < text.size();) {
    bool matched = false;
    for (const auto& [s, id] : specials)
      if (text.compare(pos, s.size(), s) == 0) {
        flush(pos);
        out.push_back({id, pos, pos + s.size()});
        pos += s.size();
        run = pos;
        matched = true;
        break;
      }
    if (!matched) ++pos;
  }
  flush(text.size());
  return out;
}

class ChatTemplateJinja : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("ktl_chat_jinja_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    testing::write_lines((dir_ / "c.txt").string(), testing::korean_sentences(2000));
    TokenizerTrainOptions o;  // the default: a new tokenizer, ChatML pieces reserved
    o.input_files = {(dir_ / "c.txt").string()};
    o.vocab_size = 600;
    o.input_sentence_size = 0;
    o.character_coverage = 0.99;
    o.model_prefix = (dir_ / "tokenizer").string();
    train_tokenizer(o);
    // The checkpoint's tokenizer_config.json, as save_checkpoint writes it.
    const std::string bytes = read_file(dir_ / "tokenizer.model");
    write_file_atomic(dir_ / "tokenizer_config.json",
                      ChatTemplate::tokenizer_config_json(ChatFormat::kChatML, read_spm_pieces(bytes)));
    tok_ = Tokenizer::load((dir_ / "tokenizer.model").string());
  }
  static void TearDownTestSuite() {
    tok_.reset();
    fs::remove_all(dir_);
  }

  // Python's results for the conversations file, one per conversation.
  static ojson render_in_python(const fs::path& config, const fs::path& conversations) {
    const fs::path out = dir_ / "rendered.json";
    const std::string cmd = std::string("/usr/bin/python3 ") + KTL_SOURCE_DIR +
                            "/tests/tokenizer/render_chat_template.py " + config.string() + " " +
                            conversations.string() + " > " + out.string();
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return ojson::parse(read_file(out));
  }

  static inline fs::path dir_;
  static inline std::shared_ptr<Tokenizer> tok_;
};

TEST_F(ChatTemplateJinja, ExportedConfigIsReadBackAsChatML) {
  const ChatFormatDetection d = detect_chat_format(*tok_);
  EXPECT_EQ(d.format, ChatFormat::kChatML);
  EXPECT_EQ(d.source, "tokenizer_config.json");
  const ojson cfg = ojson::parse(read_file(dir_ / "tokenizer_config.json"));
  EXPECT_EQ(cfg["chat_template"], ChatTemplate::jinja(ChatFormat::kChatML));
  EXPECT_EQ(cfg["bos_token"], "<s>");
  EXPECT_EQ(cfg["eos_token"], "</s>");
  EXPECT_EQ(cfg["pad_token"], "<pad>");
  EXPECT_EQ(cfg["added_tokens_decoder"]["4"]["content"], "<|im_start|>");
  EXPECT_EQ(cfg["added_tokens_decoder"]["5"]["content"], "<|im_end|>");
  EXPECT_EQ(cfg["added_tokens_decoder"]["2"]["content"], "<s>");
  EXPECT_TRUE(cfg["added_tokens_decoder"]["5"]["special"].get<bool>());
}

TEST_F(ChatTemplateJinja, TwentyConversationsRenderToTheSameTextIdsAndMask) {
  if (!have_jinja2()) GTEST_SKIP() << "python3-jinja2 not installed";
  const fs::path conversations = fs::path(KTL_SOURCE_DIR) / "tests/tokenizer/chat_conversations.json";
  const ojson convs = ojson::parse(read_file(conversations));
  const ojson rendered = render_in_python(dir_ / "tokenizer_config.json", conversations);
  ASSERT_EQ(rendered.size(), convs.size());
  const ChatTemplate tmpl = ChatTemplate::require(tok_);
  ASSERT_EQ(tmpl.format(), ChatFormat::kChatML);
  int compared = 0, refused = 0;
  for (size_t i = 0; i < convs.size(); ++i) {
    const Conversation c = parse_conversation(convs[i]);
    const ojson& py = rendered[i];
    SCOPED_TRACE(c.name);
    if (c.expect_error) {
      EXPECT_TRUE(py.contains("error")) << py.dump();
      EXPECT_THROW(tmpl.render(render_tool_messages(c.messages, c.tools, ChatFormat::kChatML),
                               c.add_generation_prompt),
                   std::invalid_argument);
      ++refused;
      continue;
    }
    ASSERT_TRUE(py.contains("text")) << py.dump();
    const std::string jinja_text = py["text"];
    const auto msgs = render_tool_messages(c.messages, c.tools, ChatFormat::kChatML);
    // The text.
    EXPECT_EQ(ChatTemplate::render_text(ChatFormat::kChatML, msgs, c.add_generation_prompt),
              jinja_text);
    // The ids: the trainer's and the server's render() against the Jinja text tokenized.
    const RenderedChat r = tmpl.render(msgs, c.add_generation_prompt);
    const std::vector<TokenSpan> spans = token_spans(*tok_, jinja_text);
    std::vector<int> ids;
    for (const auto& t : spans) ids.push_back(t.id);
    EXPECT_EQ(r.ids, ids);
    EXPECT_EQ(tmpl.tokenize_text(jinja_text), ids);
    // The mask: a token is a target when it overlaps a {% generation %} span.
    std::vector<uint8_t> mask;
    for (const auto& t : spans) {
      bool in = false;
      for (const auto& g : py["generation"])
        in = in || (t.begin < g[1].get<size_t>() && t.end > g[0].get<size_t>());
      mask.push_back(in ? 1 : 0);
    }
    EXPECT_EQ(r.assistant_mask, mask);
    // Each assistant turn has one span, ending in <|im_end|>.
    size_t assistants = 0;
    for (const auto& m : msgs) assistants += m.role == "assistant";
    EXPECT_EQ(py["generation"].size(), assistants);
    ++compared;
  }
  EXPECT_GE(compared, 20);
  EXPECT_EQ(refused, 2);
}

TEST_F(ChatTemplateJinja, TheTemplateTextHasNoStrayWhitespaceUnderEitherSetting) {
  if (!have_jinja2()) GTEST_SKIP() << "python3-jinja2 not installed";
  // Every tag trims around itself, so the layout of the template source never leaks into the
  // text: the same output without trim_blocks/lstrip_blocks (llama.cpp's and node-llama-cpp's
  // engines do not set them).
  const fs::path script = dir_ / "plain.py";
  std::ofstream(script)
      << "import json, sys\nfrom jinja2 import Environment\n"
         "env = Environment(extensions=['jinja2.ext.do'])\n"
         "src = json.load(open(sys.argv[1]))['chat_template']\n"
         "src = src.replace('{%- generation -%}', '').replace('{%- endgeneration -%}', '')\n"
         "t = env.from_string(src)\n"
         "m = [{'role': 'system', 'content': 'S'}, {'role': 'user', 'content': 'U'},\n"
         "     {'role': 'assistant', 'content': 'A'}]\n"
         "sys.stdout.write(t.render(messages=m, bos_token='<s>', add_generation_prompt=True))\n";
  const fs::path out = dir_ / "plain.txt";
  ASSERT_EQ(std::system(("/usr/bin/python3 " + script.string() + " " +
                         (dir_ / "tokenizer_config.json").string() + " > " + out.string())
                            .c_str()),
            0);
  EXPECT_EQ(read_file(out),
            "<s><|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
            "<|im_start|>assistant\nA<|im_end|>\n<|im_start|>assistant\n");
}

}  // namespace
}  // namespace ktl
