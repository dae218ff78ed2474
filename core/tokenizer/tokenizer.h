// SentencePiece tokenizer, isolated from LibTorch.
//
// Debian's libsentencepiece embeds its own protobuf, which clashes with the libprotobuf LibTorch
// loads (a process linking both segfaults at start-up). So the SentencePiece calls live in a tiny
// shared library with a C ABI (libktl_spm, core/tokenizer/spm_shim.cpp), opened with
// dlopen(RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND) on Linux; macOS links it normally.
// The library is looked up in: $KTL_SPM_LIB, next to the executable, then the build directory.
//
// Thread-safety: a loaded Tokenizer is immutable; encode/decode/piece lookups are safe from any
// thread. train() is a free function and may run concurrently with other tokenizers.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ktl {

// Fixed special ids (documented in docs/training-guide.md): every ktl tokenizer has these.
struct SpecialIds {
  static constexpr int kPad = 0;
  static constexpr int kUnk = 1;
  static constexpr int kBos = 2;  // <s>
  static constexpr int kEos = 3;  // </s>
};

enum class PieceType {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6
};

struct TokenizerTrainOptions {
  std::vector<std::string> input_files;  // one sentence per line, UTF-8
  std::string model_prefix;              // writes <prefix>.model and <prefix>.vocab
  int vocab_size = 32000;                // total pieces, specials included
  std::string model_type = "bpe";        // "bpe" or "unigram"
  double character_coverage = 0.9995;  // Hangul has ~2.3k common syllables; rest via byte fallback
  bool byte_fallback = true;           // no Korean character is ever <unk>
  long long input_sentence_size =
      2000000;  // sample this many sentences from large corpora (0 = all)
  int num_threads = 2;
  int max_sentence_length = 8192;  // bytes
  int seed = 1234;
  // Pieces never split and never merged into others (SentencePiece user_defined_symbols);
  // the ChatML markers of core/tokenizer/chat_template.h by default, so ids 4 and 5.
  std::vector<std::string> user_defined_symbols = {"<|im_start|>", "<|im_end|>"};
};

class Tokenizer {
 public:
  // Loads a SentencePiece model file (e.g. checkpoint/tokenizer.model). Throws on failure.
  // Like Hugging Face's tokenizers it also reads the tokenizer_config.json beside the file,
  // when there is one, for its chat_template (stored_chat_template()); a file that cannot be
  // read is not an error here, but chat_config_problem() says why and chat refuses the model.
  static std::shared_ptr<Tokenizer> load(const std::string& model_path);
  // Loads from the serialized model bytes (no stored chat template).
  static std::shared_ptr<Tokenizer> from_bytes(const std::string& model_bytes);
  ~Tokenizer();

  std::vector<int> encode(std::string_view text) const;
  std::vector<std::string> encode_pieces(std::string_view text) const;
  std::string decode(const std::vector<int>& ids) const;

  int vocab_size() const;
  std::string id_to_piece(int id) const;
  int piece_to_id(std::string_view piece) const;  // unk id when absent
  float score(int id) const;
  PieceType type(int id) const;
  // The raw bytes a token stands for in decoded text: "▁" becomes a space, <0xEB> becomes
  // the byte 0xEB, control tokens become "". Concatenating these for a sequence and then
  // stripping one leading space gives decode(). Used for UTF-8-safe streaming.
  std::string token_bytes(int id) const;

  int bos_id() const { return SpecialIds::kBos; }
  int eos_id() const { return SpecialIds::kEos; }
  int pad_id() const { return SpecialIds::kPad; }
  int unk_id() const { return SpecialIds::kUnk; }

  const std::string& model_bytes() const { return model_bytes_; }

  // tokenizer_config.json's "chat_template" (nullopt: no file, or no such key).
  const std::optional<std::string>& stored_chat_template() const { return chat_template_; }
  // Why tokenizer_config.json could not be used ("" when it could or is absent).
  const std::string& chat_config_problem() const { return chat_config_problem_; }

 private:
  Tokenizer() = default;
  void* handle_ = nullptr;  // opaque processor from the shim
  std::string model_bytes_;
  std::vector<std::string> token_bytes_;  // precomputed per id
  std::vector<PieceType> types_;  // from the model proto (the shim cannot tell user-defined)
  std::optional<std::string> chat_template_;
  std::string chat_config_problem_;
};

// Trains a SentencePiece model with the fixed special ids. Throws on failure.
void train_tokenizer(const TokenizerTrainOptions& opts);

}  // namespace ktl
