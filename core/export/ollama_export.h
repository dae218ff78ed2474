// `ktl export --format ollama`: a directory Ollama imports with `ollama create NAME -f
// Modelfile`: model.gguf (core/export/gguf_export.h) and a Modelfile whose TEMPLATE, in
// Ollama's Go template syntax, renders the checkpoint's chat format exactly as ktl does
// (core/tokenizer/chat_template.h), with PARAMETER stop at its end-of-turn piece, num_ctx at
// the trained context and SYSTEM when a default system prompt is given. With a LoRA adapter
// (PEFT directory) it also writes adapter.gguf (gguf_lora_export.h) and an ADAPTER line.
//
// What the TEMPLATE covers: system, user, assistant and tool turns (Ollama's .Messages; the
// tool result wrapped in <tool_response> as ktl does) and the generation prompt. It leaves out
// the BOS <s>: Ollama tokenizes the prompt with the GGUF's add_bos_token and adds it itself.
// It does not render Ollama's .Tools or .ToolCalls: Ollama serialises those with Go's
// encoding/json (no spaces after ':' and ',', its own key order), which is not the
// json.dumps text ktl and transformers put in the prompt, so a model exported here takes no
// tools in Ollama (ktl serve and llama.cpp --jinja do).
// Thread-safety: free functions without shared state.
#pragma once

#include <string>

#include "core/export/gguf_export.h"
#include "core/export/gguf_lora_export.h"
#include "core/tokenizer/chat_format.h"

namespace ktl {

struct OllamaExportOptions {
  GgufExportOptions gguf;  // model_dir, dtype, name; out_path is set to <out_dir>/model.gguf
  std::string out_dir;     // created when missing
  std::string system;      // default system prompt (SYSTEM); "" = none
  // A PEFT LoRA adapter trained on model_dir: written as <out_dir>/adapter.gguf (f32 when dtype
  // is f32, else f16) and named by the Modelfile's ADAPTER line. "" = none.
  std::string adapter_dir;
};

struct OllamaExportSummary {
  GgufExportSummary gguf;
  ChatFormat format = ChatFormat::kNone;
  std::string gguf_path, modelfile_path;
  GgufLoraExportSummary adapter;  // when adapter_dir was given
  std::string adapter_path;       // "" without an adapter
};

// Throws std::runtime_error when the checkpoint has no chat format ktl renders (a base model,
// or a tokenizer_config.json template it does not know), or on any GGUF export error.
OllamaExportSummary export_ollama(const OllamaExportOptions& opts);

// The TEMPLATE of a format (kChatML or kLegacy; std::invalid_argument otherwise).
std::string ollama_template(ChatFormat f);
// The whole Modelfile. `num_ctx` <= 0 leaves the PARAMETER out; a non-empty `adapter_file` adds
// ADAPTER ./<adapter_file>. Throws std::invalid_argument for a system prompt Ollama's Modelfile
// cannot quote (it contains """) or that holds a chat marker.
std::string ollama_modelfile(ChatFormat f, const std::string& gguf_file, const std::string& system,
                             int num_ctx, const std::string& adapter_file = "");

}  // namespace ktl
