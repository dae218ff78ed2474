#include "core/export/ollama_export.h"

#include <filesystem>
#include <stdexcept>

#include "core/base/file_util.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"

namespace ktl {

namespace fs = std::filesystem;

std::string ollama_template(ChatFormat f) {
  // Line breaks are literal in a Go template: each one below is part of the rendered text.
  if (f == ChatFormat::kChatML)
    return "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
           "{{ if eq .Role \"tool\" }}<tool_response>\n{{ .Content }}\n</tool_response>"
           "{{ else }}{{ .Content }}{{ end }}<|im_end|>\n"
           "{{ end }}<|im_start|>assistant\n";
  if (f == ChatFormat::kLegacy)
    return "{{- range .Messages }}"
           "{{ if eq .Role \"tool\" }}<|user|><tool_response>\n{{ .Content }}\n</tool_response>"
           "{{ else }}<|{{ .Role }}|>{{ .Content }}{{ end }}<|end|>"
           "{{ end }}<|assistant|>";
  throw std::invalid_argument(std::string("no Ollama template for chat format ") +
                              chat_format_name(f));
}

std::string ollama_modelfile(ChatFormat f, const std::string& gguf_file, const std::string& system,
                             int num_ctx, const std::string& adapter_file) {
  const std::string tmpl = ollama_template(f);
  if (system.find("\"\"\"") != std::string::npos)
    throw std::invalid_argument("the system prompt contains \"\"\", which a Modelfile cannot quote");
  if (!system.empty()) validate_chat_messages({{"system", system}});
  std::string m =
      "# Ollama Modelfile written by `ktl export --format ollama`.\n"
      "# TEMPLATE renders the checkpoint's chat format (" +
      std::string(chat_format_name(f)) +
      ") exactly as ktl does; Ollama adds the BOS <s>\n"
      "# itself. Tool definitions and calls are not rendered (docs/deployment.md, Ollama).\n"
      "# Import and run:  ollama create NAME -f Modelfile && ollama run NAME\n"
      "FROM ./" +
      gguf_file + "\n" + (adapter_file.empty() ? "" : "ADAPTER ./" + adapter_file + "\n") +
      "TEMPLATE \"\"\"" + tmpl + "\"\"\"\nPARAMETER stop \"" +
      ChatTemplate::end_of_turn_piece(f) + "\"\n";
  if (num_ctx > 0) m += "PARAMETER num_ctx " + std::to_string(num_ctx) + "\n";
  if (!system.empty()) m += "SYSTEM \"\"\"" + system + "\"\"\"\n";
  return m;
}

OllamaExportSummary export_ollama(const OllamaExportOptions& o) {
  const fs::path dir(o.gguf.model_dir);
  const fs::path tok_path = dir / "tokenizer.model";
  if (!fs::exists(tok_path)) throw std::runtime_error("missing " + tok_path.string());
  const ChatFormatDetection chat = detect_chat_format(*Tokenizer::load(tok_path.string()));
  if (chat.format == ChatFormat::kUnknown)
    throw std::runtime_error(o.gguf.model_dir + ": " + chat.problem);
  if (chat.format == ChatFormat::kNone)
    throw std::runtime_error(o.gguf.model_dir +
                             " has no chat format (a base model: no chat markers); Ollama needs "
                             "one for its TEMPLATE. Fine-tune it with `ktl sft`, or export "
                             "--format gguf for plain completion");
  if (o.out_dir.empty()) throw std::runtime_error("--format ollama needs --out DIR");
  const ModelConfig cfg = read_hf_llama_config((dir / "config.json").string());
  // Validate the Modelfile before the (long) GGUF write.
  const std::string adapter_file = o.adapter_dir.empty() ? "" : "adapter.gguf";
  std::string modelfile =
      ollama_modelfile(chat.format, "model.gguf", o.system, cfg.max_seq_length, adapter_file);
  fs::create_directories(o.out_dir);
  OllamaExportSummary s;
  s.format = chat.format;
  if (!adapter_file.empty()) {  // before the base: an adapter that does not fit fails fast
    GgufLoraExportOptions a;
    a.adapter_dir = o.adapter_dir;
    a.base_dir = o.gguf.model_dir;
    a.out_path = (fs::path(o.out_dir) / adapter_file).string();
    a.dtype = o.gguf.dtype == GgufDtype::kF32 ? GgufDtype::kF32 : GgufDtype::kF16;
    s.adapter = export_gguf_lora(a);
    s.adapter_path = a.out_path;
  }
  GgufExportOptions g = o.gguf;
  g.out_path = (fs::path(o.out_dir) / "model.gguf").string();
  s.gguf = export_gguf(g);
  s.gguf_path = g.out_path;
  s.modelfile_path = (fs::path(o.out_dir) / "Modelfile").string();
  write_file_atomic(s.modelfile_path, modelfile);
  return s;
}

}  // namespace ktl
