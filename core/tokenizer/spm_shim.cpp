// libktl_spm: C ABI over SentencePiece. Built as its own shared library so LibTorch's protobuf
// and SentencePiece's embedded protobuf never meet in one symbol namespace
// (core/tokenizer/tokenizer.h).
#include "core/tokenizer/spm_shim.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace sentencepiece::logging {
// Exported by libsentencepiece but not declared in its public headers.
void SetMinLogLevel(int v);
}  // namespace sentencepiece::logging

namespace {

using Processor = sentencepiece::SentencePieceProcessor;

char* dup_bytes(const void* data, size_t len) {
  char* p = static_cast<char*>(std::malloc(len + 1));
  if (!p) return nullptr;
  if (len) std::memcpy(p, data, len);
  p[len] = '\0';
  return p;
}

void set_err(char** err, const std::string& msg) {
  if (err) *err = dup_bytes(msg.data(), msg.size());
}

Processor* proc(void* h) {
  return static_cast<Processor*>(h);
}

}  // namespace

extern "C" {

int ktl_spm_abi_version(void) {
  return KTL_SPM_ABI_VERSION;
}

void ktl_spm_free(void* p) {
  std::free(p);
}

void ktl_spm_set_log_level(int level) {
  sentencepiece::logging::SetMinLogLevel(level);
}

void* ktl_spm_load(const char* model_bytes, size_t len, char** err) {
  try {
    auto p = std::make_unique<Processor>();
    auto st = p->LoadFromSerializedProto(std::string_view(model_bytes, len));
    if (!st.ok()) {
      set_err(err, "cannot load SentencePiece model: " + st.ToString());
      return nullptr;
    }
    return p.release();
  } catch (const std::exception& e) {
    set_err(err, e.what());
    return nullptr;
  }
}

void ktl_spm_destroy(void* handle) {
  delete proc(handle);
}

int ktl_spm_encode_ids(void* handle, const char* text, size_t len, int32_t** ids, size_t* n,
                       char** err) {
  try {
    std::vector<int> out;
    auto st = proc(handle)->Encode(std::string_view(text, len), &out);
    if (!st.ok()) {
      set_err(err, "encode failed: " + st.ToString());
      return -1;
    }
    *n = out.size();
    *ids = static_cast<int32_t*>(std::malloc(sizeof(int32_t) * (out.size() + 1)));
    if (!*ids) return set_err(err, "out of memory"), -1;
    for (size_t i = 0; i < out.size(); ++i) (*ids)[i] = out[i];
    return 0;
  } catch (const std::exception& e) {
    set_err(err, e.what());
    return -1;
  }
}

int ktl_spm_encode_pieces(void* handle, const char* text, size_t len, char** packed,
                          size_t* packed_len, size_t* n, char** err) {
  try {
    std::vector<std::string> out;
    auto st = proc(handle)->Encode(std::string_view(text, len), &out);
    if (!st.ok()) {
      set_err(err, "encode failed: " + st.ToString());
      return -1;
    }
    std::string buf;
    for (const auto& p : out) {
      uint32_t l = static_cast<uint32_t>(p.size());
      buf.append(reinterpret_cast<const char*>(&l), sizeof(l));
      buf += p;
    }
    *packed = dup_bytes(buf.data(), buf.size());
    if (!*packed) return set_err(err, "out of memory"), -1;
    *packed_len = buf.size();
    *n = out.size();
    return 0;
  } catch (const std::exception& e) {
    set_err(err, e.what());
    return -1;
  }
}

int ktl_spm_decode(void* handle, const int32_t* ids, size_t n, char** out, size_t* out_len,
                   char** err) {
  try {
    const int size = proc(handle)->GetPieceSize();
    std::vector<int> v(ids, ids + n);
    for (int id : v)
      if (id < 0 || id >= size) {
        set_err(err, "decode: id " + std::to_string(id) + " out of range [0, " +
                         std::to_string(size) + ")");
        return -1;
      }
    std::string text;
    auto st = proc(handle)->Decode(v, &text);
    if (!st.ok()) {
      set_err(err, "decode failed: " + st.ToString());
      return -1;
    }
    *out = dup_bytes(text.data(), text.size());
    if (!*out) return set_err(err, "out of memory"), -1;
    *out_len = text.size();
    return 0;
  } catch (const std::exception& e) {
    set_err(err, e.what());
    return -1;
  }
}

int ktl_spm_vocab_size(void* handle) {
  return proc(handle)->GetPieceSize();
}

const char* ktl_spm_id_to_piece(void* handle, int id, size_t* len) {
  const std::string& s = proc(handle)->IdToPiece(id);
  *len = s.size();
  return s.data();
}

int ktl_spm_piece_to_id(void* handle, const char* piece, size_t len) {
  return proc(handle)->PieceToId(std::string_view(piece, len));
}

float ktl_spm_score(void* handle, int id) {
  return proc(handle)->GetScore(id);
}

int ktl_spm_type(void* handle, int id) {
  Processor* p = proc(handle);
  if (p->IsUnknown(id)) return 2;
  if (p->IsControl(id)) return 3;
  if (p->IsUnused(id)) return 5;
  if (p->IsByte(id)) return 6;
  return 1;
}

int ktl_spm_train(const char* const* keys, const char* const* values, size_t n, char** err) {
  try {
    std::unordered_map<std::string, std::string> kwargs;
    for (size_t i = 0; i < n; ++i) {
      // The sampling/shuffle seed is a process-wide setting, not a TrainerSpec field.
      if (std::strcmp(keys[i], "random_seed") == 0)
        sentencepiece::SetRandomGeneratorSeed(static_cast<unsigned>(std::atoll(values[i])));
      else if (std::strcmp(keys[i], "minloglevel") == 0)
        sentencepiece::logging::SetMinLogLevel(std::atoi(values[i]));
      else
        kwargs[keys[i]] = values[i];
    }
    auto st = sentencepiece::SentencePieceTrainer::Train(kwargs);
    if (!st.ok()) {
      set_err(err, "SentencePiece training failed: " + st.ToString());
      return -1;
    }
    return 0;
  } catch (const std::exception& e) {
    set_err(err, e.what());
    return -1;
  }
}

}  // extern "C"
