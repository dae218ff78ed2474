// ktl export: a checkpoint directory to other formats.
//   --format gguf: a GGUF file for llama.cpp / Ollama / LM Studio (core/export/gguf_export.h).
//   --format ollama: a directory with the GGUF and a Modelfile (core/export/ollama_export.h).
//   --format gguf-lora: a PEFT LoRA adapter directory as llama.cpp's LoRA adapter GGUF
//   (core/export/gguf_lora_export.h).
//   --format ktl --quantize int8, or --dtype int8: an int8 checkpoint for `ktl generate` and
//   `ktl serve`, which load it as it is (export_ktl below).
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli/command.h"
#include "core/engine/engine_checkpoint.h"
#include "core/export/gguf_export.h"
#include "core/export/gguf_lora_export.h"
#include "core/export/ollama_export.h"

namespace {

using ktl::cli::Args;
using ktl::cli::UsageError;

// --model names the checkpoint of every format but gguf-lora (which takes --adapter and --base).
std::string model_dir(const Args& a, const std::string& format) {
  if (a.has("base")) throw UsageError("--base applies to --format gguf-lora");
  if (a.has("adapter") && format != "ollama")
    throw UsageError("--adapter applies to --format gguf-lora and ollama");
  const std::string m = a.get("model");
  if (m.empty()) throw UsageError("--format " + format + " needs --model DIR");
  return m;
}

ktl::GgufDtype dtype_flag(const Args& a) {
  try {
    return ktl::parse_gguf_dtype(a.get("dtype", "f32"));
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
}

int export_gguf_file(const Args& a) {
  if (a.has("quantize"))
    throw UsageError("--quantize applies to --format ktl; for GGUF use --dtype f32|f16|q8_0");
  if (a.has("system")) throw UsageError("--system applies to --format ollama");
  ktl::GgufExportOptions o;
  o.model_dir = model_dir(a, "gguf");
  o.out_path = a.get("out");
  if (o.out_path.empty()) throw UsageError("--format gguf needs --out FILE.gguf");
  o.dtype = dtype_flag(a);
  o.name = a.get("name");
  const auto s = ktl::export_gguf(o);
  std::printf("wrote %s: %zu tensors, %s, vocab %d, %.1f MiB\n", o.out_path.c_str(), s.tensors,
              ktl::gguf_dtype_name(o.dtype), s.vocab_size, double(s.bytes) / 1048576.0);
  if (s.f16_fallbacks)
    std::printf(
        "note: %d tensors have rows that are not a multiple of 32 and were written as f16\n",
        s.f16_fallbacks);
  std::printf("run it: llama-cli -m %s -p \"...\" --temp 0\n", o.out_path.c_str());
  return 0;
}

int export_ollama_dir(const Args& a) {
  if (a.has("quantize"))
    throw UsageError("--quantize applies to --format ktl; for Ollama use --dtype f32|f16|q8_0");
  ktl::OllamaExportOptions o;
  o.gguf.model_dir = model_dir(a, "ollama");
  o.out_dir = a.get("out");
  if (o.out_dir.empty()) throw UsageError("--format ollama needs --out DIR");
  o.gguf.dtype = dtype_flag(a);
  o.gguf.name = a.get("name");
  o.system = a.get("system");
  o.adapter_dir = a.get("adapter");
  ktl::OllamaExportSummary s;
  try {
    s = ktl::export_ollama(o);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  std::printf("wrote %s: %zu tensors, %s, vocab %d, %.1f MiB\n", s.gguf_path.c_str(), s.gguf.tensors,
              ktl::gguf_dtype_name(o.gguf.dtype), s.gguf.vocab_size,
              double(s.gguf.bytes) / 1048576.0);
  if (!s.adapter_path.empty())
    std::printf("wrote %s: LoRA r = %d, alpha = %g, %zu tensors (Modelfile: ADAPTER)\n",
                s.adapter_path.c_str(), s.adapter.config.rank, s.adapter.config.alpha,
                s.adapter.tensors);
  std::printf("wrote %s: chat format %s\n", s.modelfile_path.c_str(),
              ktl::chat_format_name(s.format));
  std::printf("run it: cd %s && ollama create NAME -f Modelfile && ollama run NAME\n",
              o.out_dir.c_str());
  return 0;
}

int export_ktl(const Args& a) {
  if (a.has("system")) throw UsageError("--system applies to --format ollama");
  // --dtype int8 is the spelling of --quantize int8; both may be given if they agree.
  const std::string q = a.get("quantize", a.get("dtype"));
  if (a.has("dtype") && a.get("dtype") != "int8")
    throw UsageError("--format ktl writes --dtype int8, got '" + a.get("dtype") + "'");
  if (q.empty()) throw UsageError("--format ktl needs --quantize int8 (or --dtype int8)");
  if (q != "int8") throw UsageError("--quantize must be int8, got '" + q + "'");
  const std::string model = model_dir(a, "ktl");
  const std::string out = a.get("out");
  auto m = ktl::load_engine_model(model, ktl::WeightDtype::kInt8);
  ktl::save_int8_checkpoint(*m.model, model, out);
  const auto bytes = std::filesystem::file_size(std::filesystem::path(out) / "model.safetensors");
  std::printf("wrote %s: int8 weights (per-output-channel scales), %.1f MiB (was %.1f MiB)\n",
              out.c_str(), double(bytes) / 1048576.0, double(m.bytes_on_disk) / 1048576.0);
  std::printf("run it: ktl generate --model %s --prompt \"...\"\n", out.c_str());
  return 0;
}

int export_gguf_lora_file(const Args& a) {
  if (a.has("model"))
    throw UsageError("--format gguf-lora takes --adapter DIR and --base DIR, not --model");
  if (a.has("quantize") || a.has("system"))
    throw UsageError("--quantize and --system do not apply to --format gguf-lora");
  ktl::GgufLoraExportOptions o;
  o.adapter_dir = a.get("adapter");
  if (o.adapter_dir.empty()) throw UsageError("--format gguf-lora needs --adapter DIR");
  o.base_dir = a.get("base");
  o.out_path = a.get("out");
  if (o.out_path.empty()) throw UsageError("--format gguf-lora needs --out FILE.gguf");
  o.dtype = dtype_flag(a);
  if (o.dtype == ktl::GgufDtype::kQ8_0)
    throw UsageError("--format gguf-lora writes --dtype f32 or f16 (q8_0 is for the base)");
  o.name = a.get("name");
  const auto s = ktl::export_gguf_lora(o);
  std::printf("wrote %s: LoRA r = %d, alpha = %g, %zu tensors over %d layers, %s, %.2f MiB "
              "(base config: %s)\n",
              o.out_path.c_str(), s.config.rank, s.config.alpha, s.tensors, s.layers,
              ktl::gguf_dtype_name(o.dtype), double(s.bytes) / 1048576.0, s.base_dir.c_str());
  std::printf("run it: llama-cli -m BASE.gguf --lora %s -p \"...\" --temp 0\n",
              o.out_path.c_str());
  return 0;
}

int run_export(const Args& a) {
  // `--dtype int8` without a format means the int8 ktl checkpoint (GGUF's 8-bit type is q8_0).
  const bool int8_ktl = !a.has("format") && a.get("dtype") == "int8";
  const std::string format = int8_ktl ? "ktl" : a.get("format", "gguf");
  if (a.get("dtype") == "int8" && format != "ktl")
    throw UsageError("--dtype int8 writes a ktl checkpoint; for GGUF use --dtype q8_0");
  if (format == "gguf") return export_gguf_file(a);
  if (format == "ollama") return export_ollama_dir(a);
  if (format == "ktl") return export_ktl(a);
  if (format == "gguf-lora") return export_gguf_lora_file(a);
  throw UsageError("--format must be gguf, ollama, ktl or gguf-lora, got '" + format + "'");
}

KTL_COMMAND(ktl::cli::Command{
    "export",
    "Export a checkpoint: GGUF for llama.cpp, GGUF + Modelfile for Ollama, or an int8 ktl "
    "checkpoint; or a LoRA adapter as llama.cpp's LoRA GGUF.",
    {{"model", "checkpoint directory (config.json, model.safetensors, tokenizer.model)", ""},
     {"format", "gguf | ollama | ktl | gguf-lora (--dtype int8 alone: ktl)", "gguf"},
     {"out", "output file (gguf, gguf-lora) or directory (ollama, ktl)", "", false, true},
     {"dtype", "GGUF weight type: f32 | f16 | q8_0 (norms stay f32; gguf-lora: f32 | f16); "
               "int8: an int8 ktl checkpoint (= --format ktl --quantize int8)", "f32"},
     {"adapter", "with --format gguf-lora or ollama: a PEFT LoRA adapter directory "
                 "(adapter_config.json, adapter_model.safetensors)", ""},
     {"base", "with --format gguf-lora: the base checkpoint the adapter was trained on (default: "
              "the one lora_base.json or base_model_name_or_path names)", ""},
     {"system", "with --format ollama: the Modelfile's default system prompt (SYSTEM)", ""},
     {"quantize", "with --format ktl: int8 (the same as --dtype int8)", ""},
     {"name", "GGUF general.name (default: the checkpoint directory's name)", ""}},
    run_export});

}  // namespace
