// C ABI of libktl_spm, the only code that touches SentencePiece (see core/tokenizer/tokenizer.h for
// why). Buffers returned through out-parameters are malloc'ed by the shim and released with
// ktl_spm_free. Error strings (char** err) are malloc'ed too; pass nullptr to ignore them.
// Thread-safety: a processor handle may be used from many threads at once (SentencePiece's
// encode/decode are const); ktl_spm_train is reentrant but trainings share the global log level.
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Bumped when a signature below changes; the loader refuses a mismatching library.
#define KTL_SPM_ABI_VERSION 1

// The shim is built with hidden visibility; only these entry points are exported.
#define KTL_SPM_API __attribute__((visibility("default")))

KTL_SPM_API int ktl_spm_abi_version(void);
KTL_SPM_API void ktl_spm_free(void* p);
// SentencePiece's own logging: 0 = info, 1 = warning, 2 = error.
KTL_SPM_API void ktl_spm_set_log_level(int level);

// Returns a processor handle or nullptr (then *err says why).
KTL_SPM_API void* ktl_spm_load(const char* model_bytes, size_t len, char** err);
KTL_SPM_API void ktl_spm_destroy(void* handle);

// Return 0 on success, -1 on failure with *err set.
KTL_SPM_API int ktl_spm_encode_ids(void* handle, const char* text, size_t len, int32_t** ids,
                                   size_t* n, char** err);
// Pieces are packed as [uint32 length][bytes] one after another; *n is the piece count.
KTL_SPM_API int ktl_spm_encode_pieces(void* handle, const char* text, size_t len, char** packed,
                                      size_t* packed_len, size_t* n, char** err);
KTL_SPM_API int ktl_spm_decode(void* handle, const int32_t* ids, size_t n, char** out,
                               size_t* out_len, char** err);

KTL_SPM_API int ktl_spm_vocab_size(void* handle);
// Pointer into the processor (valid while the handle lives); *len gets its size.
KTL_SPM_API const char* ktl_spm_id_to_piece(void* handle, int id, size_t* len);
KTL_SPM_API int ktl_spm_piece_to_id(void* handle, const char* piece, size_t len);
KTL_SPM_API float ktl_spm_score(void* handle, int id);
// PieceType values of core/tokenizer/tokenizer.h: 1 normal, 2 unknown, 3 control, 4 user defined,
// 5 unused, 6 byte.
KTL_SPM_API int ktl_spm_type(void* handle, int id);

// Trains with SentencePiece's key=value options (keys as in spm_train --help).
KTL_SPM_API int ktl_spm_train(const char* const* keys, const char* const* values, size_t n,
                              char** err);

#ifdef __cplusplus
}
#endif
