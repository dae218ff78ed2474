// The Ollama Modelfile of `ktl export --format ollama`.
//
// There is no Go template engine here (Ollama renders TEMPLATE with Go's text/template), so:
//   1. Golden files: the Modelfile text is compared byte for byte with
//      tests/export/golden/{chatml,legacy}.Modelfile, reviewed by hand against Ollama's
//      template documentation (.Messages, .Role, .Content, `eq`, whitespace trimming).
//      Regenerate with KTL_UPDATE_GOLDEN=1 after a deliberate change, and review the diff.
//   2. A small hand-written renderer for the subset of Go's text/template the TEMPLATE uses
//      ({{ range .Messages }}, {{ .Role }}, {{ .Content }}, {{ if eq .Role "x" }} / else / end,
//      and "{{-" / "-}}" trimming), rendering the TEMPLATE by substitution for the
//      conversations of tests/tokenizer/chat_conversations.json: with the BOS Ollama adds
//      itself in front, the text equals ktl's (ChatTemplate::render_text). Conversations with
//      tool definitions or calls are left out: the Modelfile does not render Ollama's .Tools
//      and .ToolCalls (core/export/ollama_export.h says why).
#include "core/export/ollama_export.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/base/file_util.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/chat_tools.h"

namespace ktl {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

struct Message {
  std::string role, content;
};

// Go's text/template, only as far as the TEMPLATE needs it. Throws on anything else, so a
// TEMPLATE that grows beyond the subset fails here instead of being checked wrongly.
class MiniGoTemplate {
 public:
  explicit MiniGoTemplate(const std::string& src) { parse(src); }

  std::string render(const std::vector<Message>& messages) const {
    std::string out;
    size_t i = 0;
    run(i, nodes_.size(), nullptr, messages, out);
    return out;
  }

 private:
  struct Node {
    bool action = false;
    std::string text;  // literal text, or the action's words
  };

  void parse(const std::string& s) {
    size_t pos = 0;
    while (pos < s.size()) {
      const size_t open = s.find("{{", pos);
      std::string lit = s.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
      if (open == std::string::npos) {
        nodes_.push_back({false, lit});
        break;
      }
      const size_t close = s.find("}}", open);
      if (close == std::string::npos) throw std::invalid_argument("unclosed {{");
      std::string body = s.substr(open + 2, close - open - 2);
      // "{{- " trims the whitespace before, " -}}" the whitespace after (Go's rule: the dash
      // must be followed/preceded by a space).
      if (body.rfind("- ", 0) == 0) {
        while (!lit.empty() && std::isspace(static_cast<unsigned char>(lit.back()))) lit.pop_back();
        body = body.substr(1);
      }
      bool trim_after = false;
      if (body.size() >= 2 && body.compare(body.size() - 2, 2, " -") == 0) {
        trim_after = true;
        body.resize(body.size() - 1);
      }
      nodes_.push_back({false, lit});
      const size_t b = body.find_first_not_of(' '), e = body.find_last_not_of(' ');
      nodes_.push_back({true, body.substr(b, e - b + 1)});
      pos = close + 2;
      if (trim_after)
        while (pos < s.size() && std::isspace(static_cast<unsigned char>(s[pos]))) ++pos;
    }
  }

  // Index of the "else" (or npos) and of the matching "end" of the block opening at `i`.
  std::pair<size_t, size_t> block_end(size_t i) const {
    int depth = 0;
    size_t els = std::string::npos;
    for (size_t j = i + 1; j < nodes_.size(); ++j) {
      if (!nodes_[j].action) continue;
      const std::string& a = nodes_[j].text;
      if (a.rfind("if ", 0) == 0 || a.rfind("range ", 0) == 0) ++depth;
      if (a == "else" && depth == 0) els = j;
      if (a == "end") {
        if (depth == 0) return {els, j};
        --depth;
      }
    }
    throw std::invalid_argument("no {{ end }} for {{ " + nodes_[i].text + " }}");
  }

  void run(size_t i, size_t end, const Message* dot, const std::vector<Message>& messages,
           std::string& out) const {
    while (i < end) {
      const Node& n = nodes_[i];
      if (!n.action) {
        out += n.text;
        ++i;
        continue;
      }
      const std::string& a = n.text;
      if (a == ".Role" || a == ".Content") {
        if (!dot) throw std::invalid_argument(a + " outside range");
        out += a == ".Role" ? dot->role : dot->content;
        ++i;
      } else if (a == "range .Messages") {
        const auto [els, stop] = block_end(i);
        if (els != std::string::npos) throw std::invalid_argument("range/else is not supported");
        for (const auto& m : messages) run(i + 1, stop, &m, messages, out);
        i = stop + 1;
      } else if (a.rfind("if eq .Role \"", 0) == 0 && a.back() == '"') {
        if (!dot) throw std::invalid_argument("if outside range");
        const std::string want = a.substr(13, a.size() - 14);
        const auto [els, stop] = block_end(i);
        if (dot->role == want)
          run(i + 1, els == std::string::npos ? stop : els, dot, messages, out);
        else if (els != std::string::npos)
          run(els + 1, stop, dot, messages, out);
        i = stop + 1;
      } else {
        throw std::invalid_argument("unsupported action {{ " + a + " }}");
      }
    }
  }

  std::vector<Node> nodes_;
};

std::string template_of(const std::string& modelfile) {
  const std::string open = "TEMPLATE \"\"\"";
  const size_t b = modelfile.find(open);
  const size_t e = modelfile.find("\"\"\"", b + open.size());
  if (b == std::string::npos || e == std::string::npos) throw std::invalid_argument("no TEMPLATE");
  return modelfile.substr(b + open.size(), e - b - open.size());
}

void check_golden(const std::string& name, const std::string& text) {
  const fs::path golden = fs::path(KTL_SOURCE_DIR) / "tests/export/golden" / name;
  if (std::getenv("KTL_UPDATE_GOLDEN")) {
    fs::create_directories(golden.parent_path());
    write_file_atomic(golden, text);
  }
  ASSERT_TRUE(fs::exists(golden)) << golden << " missing (KTL_UPDATE_GOLDEN=1 writes it)";
  EXPECT_EQ(text, read_file(golden)) << "the Modelfile changed; if on purpose, regenerate "
                                     << golden << " with KTL_UPDATE_GOLDEN=1 and review it";
}

TEST(OllamaModelfile, MatchesTheGoldenFiles) {
  check_golden("chatml.Modelfile",
               ollama_modelfile(ChatFormat::kChatML, "model.gguf", "너는 친절한 도우미야.", 1024));
  check_golden("legacy.Modelfile", ollama_modelfile(ChatFormat::kLegacy, "model.gguf", "", 512));
}

TEST(OllamaModelfile, TemplateRendersKtlsTextForTheSharedConversations) {
  ojson convs = ojson::parse(
      read_file(fs::path(KTL_SOURCE_DIR) / "tests/tokenizer/chat_conversations.json"));
  // And a tool result (the shared file has them only after tool calls).
  convs.push_back({{"name", "a tool result"},
                   {"messages", ojson::parse(R"([{"role": "user", "content": "날씨"},
                      {"role": "tool", "content": "{\"temp\": 3}"}])")}});
  for (ChatFormat f : {ChatFormat::kChatML, ChatFormat::kLegacy}) {
    const MiniGoTemplate tmpl(template_of(ollama_modelfile(f, "model.gguf", "", 0)));
    int compared = 0;
    for (const auto& c : convs) {
      if (c.value("expect_error", false) || c.contains("tools")) continue;
      bool calls = false;
      std::vector<ChatApiMessage> api;
      for (const auto& m : c["messages"]) {
        calls = calls || m.contains("tool_calls");
        api.push_back({m["role"], m["content"].is_null() ? "" : m["content"].get<std::string>(), {}});
      }
      if (calls) continue;
      SCOPED_TRACE(std::string(chat_format_name(f)) + ": " + c["name"].get<std::string>());
      // Ollama hands the template the messages as the client sent them (a tool result is a
      // "tool" message with the raw result) and always asks for the assistant's turn.
      std::vector<Message> ollama;
      for (const auto& m : api) ollama.push_back({m.role, m.content});
      const std::string ktl =
          ChatTemplate::render_text(f, render_tool_messages(api, {}, f), /*add_generation_prompt=*/true);
      // ChatML's text starts with the BOS that Ollama adds as a token; the legacy text has none.
      EXPECT_EQ((f == ChatFormat::kChatML ? "<s>" : "") + tmpl.render(ollama), ktl);
      ++compared;
    }
    EXPECT_GE(compared, 14);
  }
}

TEST(OllamaModelfile, TheMiniRendererIsNotFooledByItsOwnSubset) {
  // The renderer itself, on cases whose Go output is known.
  EXPECT_EQ(MiniGoTemplate("a {{- range .Messages }} [{{ .Role }}]{{ end }} -}}").render({}), "a -}}");
  EXPECT_EQ(MiniGoTemplate("{{ range .Messages }}{{ if eq .Role \"u\" }}U{{ else }}{{ .Content }}"
                           "{{ end }}{{ end }}")
                .render({{"u", "x"}, {"a", "y"}}),
            "Uy");
  EXPECT_EQ(MiniGoTemplate("x  {{- range .Messages -}}  \n {{ .Content }}{{ end }}").render({{"r", "c"}}),
            "xc");
  EXPECT_THROW(MiniGoTemplate("{{ .System }}").render({}), std::invalid_argument);
}

}  // namespace
}  // namespace ktl
