// ktl export: a checkpoint directory to other formats.
//   --format gguf: a GGUF file for llama.cpp / Ollama / LM Studio (core/export/gguf_export.h).
//   --format ollama: a directory with the GGUF and a Modelfile (core/export/ollama_export.h).
//   --format ktl --quantize int8: an int8 checkpoint for `ktl generate` (the inference module
//   adds it in export_ktl below).
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli/command.h"
#include "core/engine/engine_checkpoint.h"
#include "core/export/gguf_export.h"
#include "core/export/ollama_export.h"

namespace {

using ktl::cli::Args;
using ktl::cli::UsageError;

int export_gguf_file(const Args& a) {
  if (a.has("quantize"))
    throw UsageError("--quantize applies to --format ktl; for GGUF use --dtype f32|f16|q8_0");
  if (a.has("system")) throw UsageError("--system applies to --format ollama");
  ktl::GgufExportOptions o;
  o.model_dir = a.get("model");
  o.out_path = a.get("out");
  if (o.out_path.empty()) throw UsageError("--format gguf needs --out FILE.gguf");
  try {
    o.dtype = ktl::parse_gguf_dtype(a.get("dtype", "f32"));
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
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
  o.gguf.model_dir = a.get("model");
  o.out_dir = a.get("out");
  if (o.out_dir.empty()) throw UsageError("--format ollama needs --out DIR");
  try {
    o.gguf.dtype = ktl::parse_gguf_dtype(a.get("dtype", "f32"));
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  o.gguf.name = a.get("name");
  o.system = a.get("system");
  ktl::OllamaExportSummary s;
  try {
    s = ktl::export_ollama(o);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  std::printf("wrote %s: %zu tensors, %s, vocab %d, %.1f MiB\n", s.gguf_path.c_str(), s.gguf.tensors,
              ktl::gguf_dtype_name(o.gguf.dtype), s.gguf.vocab_size,
              double(s.gguf.bytes) / 1048576.0);
  std::printf("wrote %s: chat format %s\n", s.modelfile_path.c_str(),
              ktl::chat_format_name(s.format));
  std::printf("run it: cd %s && ollama create NAME -f Modelfile && ollama run NAME\n",
              o.out_dir.c_str());
  return 0;
}

int export_ktl(const Args& a) {
  if (a.has("dtype")) throw UsageError("--dtype applies to --format gguf and ollama");
  if (a.has("system")) throw UsageError("--system applies to --format ollama");
  const std::string q = a.get("quantize");
  if (q.empty()) throw UsageError("--format ktl needs --quantize int8");
  if (q != "int8") throw UsageError("--quantize must be int8, got '" + q + "'");
  const std::string out = a.get("out");
  auto m = ktl::load_engine_model(a.get("model"), ktl::WeightDtype::kInt8);
  ktl::save_int8_checkpoint(*m.model, a.get("model"), out);
  const auto bytes = std::filesystem::file_size(std::filesystem::path(out) / "model.safetensors");
  std::printf("wrote %s: int8 weights (per-output-channel scales), %.1f MiB (was %.1f MiB)\n",
              out.c_str(), double(bytes) / 1048576.0, double(m.bytes_on_disk) / 1048576.0);
  std::printf("run it: ktl generate --model %s --prompt \"...\"\n", out.c_str());
  return 0;
}

int run_export(const Args& a) {
  const std::string format = a.get("format", "gguf");
  if (format == "gguf") return export_gguf_file(a);
  if (format == "ollama") return export_ollama_dir(a);
  if (format == "ktl") return export_ktl(a);
  throw UsageError("--format must be gguf, ollama or ktl, got '" + format + "'");
}

KTL_COMMAND(ktl::cli::Command{
    "export",
    "Export a checkpoint: GGUF for llama.cpp, GGUF + Modelfile for Ollama, or an int8 ktl "
    "checkpoint.",
    {{"model", "checkpoint directory (config.json, model.safetensors, tokenizer.model)", "", false,
      true},
     {"format", "gguf | ollama | ktl", "gguf"},
     {"out", "output file (gguf) or directory (ollama, ktl)", "", false, true},
     {"dtype", "GGUF weight type: f32 | f16 | q8_0 (norms stay f32)", "f32"},
     {"system", "with --format ollama: the Modelfile's default system prompt (SYSTEM)", ""},
     {"quantize", "with --format ktl: int8", ""},
     {"name", "GGUF general.name (default: the checkpoint directory's name)", ""}},
    run_export});

}  // namespace
