#include "core/tokenizer/tokenizer.h"

#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "core/base/file_util.h"
#include "core/tokenizer/spm_model_proto.h"
#include "core/tokenizer/spm_shim.h"

#ifndef KTL_SPM_BUILD_PATH
#define KTL_SPM_BUILD_PATH ""
#endif

namespace ktl {
namespace {

#ifdef __APPLE__
constexpr const char* kLibName = "libktl_spm.dylib";
#else
constexpr const char* kLibName = "libktl_spm.so";
#endif

// Function table resolved from libktl_spm; loaded once per process, never unloaded.
struct SpmApi {
  decltype(&ktl_spm_abi_version) abi_version;
  decltype(&ktl_spm_free) free_mem;
  decltype(&ktl_spm_set_log_level) set_log_level;
  decltype(&ktl_spm_load) load;
  decltype(&ktl_spm_destroy) destroy;
  decltype(&ktl_spm_encode_ids) encode_ids;
  decltype(&ktl_spm_encode_pieces) encode_pieces;
  decltype(&ktl_spm_decode) decode;
  decltype(&ktl_spm_vocab_size) vocab_size;
  decltype(&ktl_spm_id_to_piece) id_to_piece;
  decltype(&ktl_spm_piece_to_id) piece_to_id;
  decltype(&ktl_spm_score) score;
  decltype(&ktl_spm_type) type;
  decltype(&ktl_spm_train) train;
};

std::string exe_dir() {
  const std::string exe = executable_path();
  return exe.empty() ? "" : fs::path(exe).parent_path().string();
}

std::vector<std::string> candidate_paths() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("KTL_SPM_LIB"); env && *env) out.push_back(env);
  if (auto dir = exe_dir(); !dir.empty()) {
    out.push_back(dir + "/" + kLibName);
    out.push_back(dir + "/../lib/" + kLibName);
  }
  if (*KTL_SPM_BUILD_PATH) out.push_back(KTL_SPM_BUILD_PATH);
  return out;
}

#if defined(RTLD_DEEPBIND)
// ThreadSanitizer builds (make tsan): the sanitizer's dlopen interceptor stops the program on
// RTLD_DEEPBIND, yet deep binding is what keeps the two protobufs apart. So those builds call the
// C library's own dlopen, past the interceptor. Nothing allocated on one side of the shim is
// freed on the other (ktl_spm_free), so the allocator each side binds to does not matter.
void* dlopen_deepbind(const char* path) {
  constexpr int kFlags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
#if defined(__SANITIZE_THREAD__)
  using DlopenFn = void* (*)(const char*, int);
  static const DlopenFn libc_dlopen = [] {
    void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    return libc ? reinterpret_cast<DlopenFn>(dlsym(libc, "dlopen")) : nullptr;
  }();
  if (libc_dlopen) return libc_dlopen(path, kFlags);
#endif
  return dlopen(path, kFlags);
}
#endif

void* open_library(std::string* tried) {
  for (const auto& path : candidate_paths()) {
    if (!fs::exists(path)) {
      *tried += "\n  " + path + " (missing)";
      continue;
    }
#if defined(RTLD_DEEPBIND)
    void* h = dlopen_deepbind(path.c_str());
#else
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
#endif
    if (h) return h;
    const char* e = dlerror();
    *tried += "\n  " + path + " (" + (e ? e : "dlopen failed") + ")";
  }
  return nullptr;
}

template <typename F>
void resolve(void* lib, const char* name, F* out) {
  void* sym = dlsym(lib, name);
  if (!sym) throw std::runtime_error(std::string("libktl_spm lacks symbol ") + name);
  *out = reinterpret_cast<F>(sym);
}

SpmApi load_api() {
  std::string tried;
  void* lib = open_library(&tried);
  if (!lib)
    throw std::runtime_error("cannot load the SentencePiece shim " + std::string(kLibName) +
                             " (set KTL_SPM_LIB); tried:" + tried);
  SpmApi a{};
  resolve(lib, "ktl_spm_abi_version", &a.abi_version);
  if (a.abi_version() != KTL_SPM_ABI_VERSION)
    throw std::runtime_error("libktl_spm ABI version mismatch: rebuild it");
  resolve(lib, "ktl_spm_free", &a.free_mem);
  resolve(lib, "ktl_spm_set_log_level", &a.set_log_level);
  resolve(lib, "ktl_spm_load", &a.load);
  resolve(lib, "ktl_spm_destroy", &a.destroy);
  resolve(lib, "ktl_spm_encode_ids", &a.encode_ids);
  resolve(lib, "ktl_spm_encode_pieces", &a.encode_pieces);
  resolve(lib, "ktl_spm_decode", &a.decode);
  resolve(lib, "ktl_spm_vocab_size", &a.vocab_size);
  resolve(lib, "ktl_spm_id_to_piece", &a.id_to_piece);
  resolve(lib, "ktl_spm_piece_to_id", &a.piece_to_id);
  resolve(lib, "ktl_spm_score", &a.score);
  resolve(lib, "ktl_spm_type", &a.type);
  resolve(lib, "ktl_spm_train", &a.train);
  // Silence SentencePiece's own logging entirely. Under RTLD_DEEPBIND the shim's libraries bind
  // std::cerr to libstdc++'s own, never-constructed copy whenever the executable holds a copy
  // relocation of std::cerr (most do), so any log line would crash. Errors still arrive as
  // Status messages.
  a.set_log_level(3);
  return a;
}

const SpmApi& api() {
  // Thread-safe one-time init without a lock on the hot path; if load_api() throws, the next
  // call tries again (e.g. after KTL_SPM_LIB was fixed).
  static const SpmApi loaded = load_api();
  return loaded;
}

// Takes ownership of a shim error string.
[[noreturn]] void throw_shim_error(const SpmApi& a, char* err, const char* fallback) {
  std::string msg = err ? err : fallback;
  if (err) a.free_mem(err);
  throw std::runtime_error(msg);
}

std::string compute_token_bytes(const std::string& piece, PieceType type) {
  if (type == PieceType::kControl || type == PieceType::kUnused) return "";
  if (type == PieceType::kUnknown) return " \xE2\x81\x87 ";  // SentencePiece's unk surface " ⁇ "
  if (type == PieceType::kByte && piece.size() == 6 && piece.compare(0, 3, "<0x") == 0)
    return std::string(1, static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
  static const std::string kSpace = "\xE2\x96\x81";  // ▁
  std::string out;
  for (size_t i = 0; i < piece.size();) {
    if (piece.compare(i, kSpace.size(), kSpace) == 0) {
      out += ' ';
      i += kSpace.size();
    } else {
      out += piece[i++];
    }
  }
  return out;
}

}  // namespace

std::shared_ptr<Tokenizer> Tokenizer::load(const std::string& model_path) {
  fs::path p = model_path;
  if (fs::is_directory(p)) p /= "tokenizer.model";
  if (!fs::exists(p)) throw std::runtime_error("tokenizer model not found: " + p.string());
  auto t = from_bytes(read_file(p));
  const fs::path cfg = p.parent_path() / "tokenizer_config.json";
  if (fs::exists(cfg)) {
    try {
      const auto j = nlohmann::json::parse(read_file(cfg));
      if (!j.is_object()) throw std::runtime_error("not a JSON object");
      if (j.contains("chat_template")) {
        if (!j["chat_template"].is_string())
          throw std::runtime_error("chat_template is not a string (ktl renders one template)");
        t->chat_template_ = j["chat_template"].get<std::string>();
      }
    } catch (const std::exception& e) {
      t->chat_config_problem_ = cfg.string() + ": " + e.what();
    }
  }
  return t;
}

std::shared_ptr<Tokenizer> Tokenizer::from_bytes(const std::string& model_bytes) {
  const SpmApi& a = api();
  char* err = nullptr;
  void* h = a.load(model_bytes.data(), model_bytes.size(), &err);
  if (!h) throw_shim_error(a, err, "cannot load SentencePiece model");
  std::shared_ptr<Tokenizer> t(new Tokenizer());
  t->handle_ = h;
  t->model_bytes_ = model_bytes;
  const int n = a.vocab_size(h);
  if (n <= SpecialIds::kEos || a.type(h, SpecialIds::kUnk) != 2 ||
      a.type(h, SpecialIds::kBos) != 3 || a.type(h, SpecialIds::kEos) != 3)
    throw std::runtime_error(
        "tokenizer lacks the fixed special ids (pad=0 unk=1 <s>=2 </s>=3); retrain it with "
        "ktl train-tokenizer");
  const auto records = read_spm_pieces(model_bytes);
  for (int id = 0; id < n; ++id)
    t->types_.push_back(size_t(n) == records.size() ? static_cast<PieceType>(records[id].type)
                                                    : static_cast<PieceType>(a.type(h, id)));
  t->token_bytes_.reserve(n);
  for (int id = 0; id < n; ++id)
    t->token_bytes_.push_back(compute_token_bytes(t->id_to_piece(id), t->type(id)));
  return t;
}

Tokenizer::~Tokenizer() {
  if (handle_) api().destroy(handle_);
}

std::vector<int> Tokenizer::encode(std::string_view text) const {
  const SpmApi& a = api();
  int32_t* ids = nullptr;
  size_t n = 0;
  char* err = nullptr;
  if (a.encode_ids(handle_, text.data(), text.size(), &ids, &n, &err) != 0)
    throw_shim_error(a, err, "encode failed");
  std::vector<int> out(ids, ids + n);
  a.free_mem(ids);
  return out;
}

std::vector<std::string> Tokenizer::encode_pieces(std::string_view text) const {
  const SpmApi& a = api();
  char* packed = nullptr;
  size_t len = 0, n = 0;
  char* err = nullptr;
  if (a.encode_pieces(handle_, text.data(), text.size(), &packed, &len, &n, &err) != 0)
    throw_shim_error(a, err, "encode failed");
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t off = 0; off + sizeof(uint32_t) <= len;) {
    uint32_t l;
    std::memcpy(&l, packed + off, sizeof(l));
    off += sizeof(l);
    out.emplace_back(packed + off, l);
    off += l;
  }
  a.free_mem(packed);
  return out;
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  const SpmApi& a = api();
  std::vector<int32_t> v(ids.begin(), ids.end());
  char* out = nullptr;
  size_t len = 0;
  char* err = nullptr;
  if (a.decode(handle_, v.data(), v.size(), &out, &len, &err) != 0)
    throw_shim_error(a, err, "decode failed");
  std::string s(out, len);
  a.free_mem(out);
  return s;
}

int Tokenizer::vocab_size() const {
  return static_cast<int>(token_bytes_.size());
}

std::string Tokenizer::id_to_piece(int id) const {
  if (id < 0 || id >= api().vocab_size(handle_))
    throw std::out_of_range("token id " + std::to_string(id) + " out of range");
  size_t len = 0;
  const char* p = api().id_to_piece(handle_, id, &len);
  return std::string(p, len);
}

int Tokenizer::piece_to_id(std::string_view piece) const {
  return api().piece_to_id(handle_, piece.data(), piece.size());
}

float Tokenizer::score(int id) const {
  if (id < 0 || id >= vocab_size()) throw std::out_of_range("token id out of range");
  return api().score(handle_, id);
}

PieceType Tokenizer::type(int id) const {
  if (id < 0 || size_t(id) >= types_.size()) throw std::out_of_range("token id out of range");
  return types_[size_t(id)];
}

std::string Tokenizer::token_bytes(int id) const {
  if (id < 0 || id >= vocab_size()) throw std::out_of_range("token id out of range");
  return token_bytes_[id];
}

namespace {

std::string join(const std::vector<std::string>& v, char sep) {
  std::string out;
  for (const auto& s : v) {
    if (s.find(sep) != std::string::npos)
      throw std::runtime_error("tokenizer input path contains '" + std::string(1, sep) + "': " + s);
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

}  // namespace

void train_tokenizer(const TokenizerTrainOptions& o) {
  if (o.input_files.empty()) throw std::runtime_error("train_tokenizer: no input files");
  for (const auto& f : o.input_files)
    if (!fs::exists(f)) throw std::runtime_error("tokenizer input not found: " + f);
  if (o.model_type != "bpe" && o.model_type != "unigram")
    throw std::runtime_error("model type must be bpe or unigram, got '" + o.model_type + "'");
  if (o.vocab_size < 300)
    throw std::runtime_error("vocab size must be at least 300 (256 byte pieces + specials)");
  // identity normalisation: the cleaner already applied NFC, and SentencePiece's NFKC would turn
  // compatibility jamo (ㅋ U+314B) into conjoining jamo. Whitespace is kept as written so
  // newlines and spaces survive decode(encode(x)).
  const std::vector<std::pair<std::string, std::string>> kv = {
      {"input", join(o.input_files, ',')},
      {"model_prefix", o.model_prefix},
      {"vocab_size", std::to_string(o.vocab_size)},
      {"model_type", o.model_type},
      {"character_coverage", std::to_string(o.character_coverage)},
      {"byte_fallback", o.byte_fallback ? "true" : "false"},
      {"split_digits", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "true"},
      {"input_sentence_size", std::to_string(o.input_sentence_size)},
      {"shuffle_input_sentence", "true"},
      {"num_threads", std::to_string(o.num_threads)},
      {"max_sentence_length", std::to_string(o.max_sentence_length)},
      {"random_seed", std::to_string(o.seed)},
      {"pad_id", std::to_string(SpecialIds::kPad)},
      {"unk_id", std::to_string(SpecialIds::kUnk)},
      {"bos_id", std::to_string(SpecialIds::kBos)},
      {"eos_id", std::to_string(SpecialIds::kEos)},
      {"pad_piece", "<pad>"},
      {"unk_piece", "<unk>"},
      {"bos_piece", "<s>"},
      {"eos_piece", "</s>"},
      {"hard_vocab_limit", "false"},
      {"minloglevel", "3"},  // see load_api(): logging must stay off
  };
  auto kv_all = kv;
  if (!o.user_defined_symbols.empty())
    kv_all.emplace_back("user_defined_symbols", join(o.user_defined_symbols, ','));
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : kv_all) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  const SpmApi& a = api();
  char* err = nullptr;
  if (a.train(keys.data(), values.data(), keys.size(), &err) != 0)
    throw_shim_error(a, err, "SentencePiece training failed");
}

}  // namespace ktl
