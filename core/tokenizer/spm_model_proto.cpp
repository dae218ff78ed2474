#include "core/tokenizer/spm_model_proto.h"

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <unordered_set>

namespace ktl {
namespace {

struct Reader {
  const std::string& s;
  size_t pos;
  size_t end;

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= end) throw std::runtime_error("SentencePiece model: truncated varint");
      const auto b = static_cast<unsigned char>(s[pos++]);
      v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error("SentencePiece model: varint too long");
  }
  size_t take(size_t n) {
    if (n > end - pos) throw std::runtime_error("SentencePiece model: truncated field");
    const size_t at = pos;
    pos += n;
    return at;
  }
  // Skips a field of the given wire type; returns false for unknown wire types.
  void skip(int wire) {
    if (wire == 0)
      varint();
    else if (wire == 1)
      take(8);
    else if (wire == 2)
      take(size_t(varint()));
    else if (wire == 5)
      take(4);
    else
      throw std::runtime_error("SentencePiece model: unsupported wire type " +
                               std::to_string(wire));
  }
};

SpmPieceRecord parse_piece(const std::string& s, size_t begin, size_t len) {
  Reader r{s, begin, begin + len};
  SpmPieceRecord p;
  while (r.pos < r.end) {
    const uint64_t key = r.varint();
    const int field = int(key >> 3), wire = int(key & 7);
    if (field == 1 && wire == 2) {
      const size_t n = size_t(r.varint());
      p.piece = s.substr(r.take(n), n);
    } else if (field == 2 && wire == 5) {
      std::memcpy(&p.score, s.data() + r.take(4), 4);
    } else if (field == 3 && wire == 0) {
      p.type = int(r.varint());
    } else {
      r.skip(wire);
    }
  }
  return p;
}

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += char((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += char(v);
}

}  // namespace

std::vector<SpmPieceRecord> read_spm_pieces(const std::string& model_bytes) {
  Reader r{model_bytes, 0, model_bytes.size()};
  std::vector<SpmPieceRecord> out;
  while (r.pos < r.end) {
    const uint64_t key = r.varint();
    const int field = int(key >> 3), wire = int(key & 7);
    if (field == 1 && wire == 2) {
      const size_t n = size_t(r.varint());
      out.push_back(parse_piece(model_bytes, r.take(n), n));
    } else {
      r.skip(wire);
    }
  }
  return out;
}

std::string append_spm_user_pieces(const std::string& model_bytes,
                                   const std::vector<std::string>& pieces) {
  std::unordered_set<std::string> have;
  for (const auto& p : read_spm_pieces(model_bytes)) have.insert(p.piece);
  std::string out = model_bytes;
  for (const auto& piece : pieces) {
    if (piece.empty()) throw std::invalid_argument("cannot add an empty piece");
    if (!have.insert(piece).second) continue;
    std::string rec;
    rec += char(0x0A);  // field 1, length-delimited: the piece text
    put_varint(rec, piece.size());
    rec += piece;
    rec += char(0x15);  // field 2, fixed32: score
    const float score = 0;
    rec.append(reinterpret_cast<const char*>(&score), 4);
    rec += char(0x18);  // field 3, varint: type USER_DEFINED
    put_varint(rec, 4);
    out += char(0x0A);  // ModelProto field 1: one more SentencePiece record
    put_varint(out, rec.size());
    out += rec;
  }
  return out;
}

}  // namespace ktl
