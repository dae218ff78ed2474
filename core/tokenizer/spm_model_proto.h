// Reads and extends a serialized SentencePiece ModelProto at the protobuf wire level, without
// libprotobuf: the program may not link SentencePiece's embedded protobuf next to LibTorch's
// (see core/tokenizer/tokenizer.h), and Debian ships no sentencepiece_model.pb.h.
// ModelProto field 1 is `repeated SentencePiece pieces` with {1: piece, 2: score, 3: type};
// repeated fields may appear anywhere in the message, so appending records adds pieces at the
// end of the vocabulary and leaves every existing id unchanged.
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <vector>

namespace ktl {

struct SpmPieceRecord {
  std::string piece;
  float score = 0;
  int type = 1;  // PieceType values (1 normal ... 4 user defined ... 6 byte)
};

// The pieces in id order. Throws std::runtime_error on malformed bytes.
std::vector<SpmPieceRecord> read_spm_pieces(const std::string& model_bytes);

// Returns the model with `pieces` appended as user-defined symbols (score 0), skipping those
// already present. New ids are old vocab_size, old vocab_size + 1, ... in the given order.
std::string append_spm_user_pieces(const std::string& model_bytes,
                                   const std::vector<std::string>& pieces);

}  // namespace ktl
