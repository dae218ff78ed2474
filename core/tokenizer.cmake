# SentencePiece lives only in libktl_spm (shared, C ABI); everything else reaches it through
# ktl_tokenizer, which dlopens it so LibTorch's protobuf never meets SentencePiece's (see
# core/tokenizer.h). The shim sits next to build/ktl, where the loader looks first.
add_library(ktl_spm SHARED ${CMAKE_CURRENT_LIST_DIR}/spm_shim.cpp)
find_library(KTL_SPM_TRAIN_LIB sentencepiece_train HINTS ${SPM_LIBRARY_DIRS} REQUIRED)
target_link_libraries(ktl_spm PRIVATE PkgConfig::SPM ${KTL_SPM_TRAIN_LIB})
set_target_properties(ktl_spm PROPERTIES
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}
  CXX_VISIBILITY_PRESET hidden)

add_library(ktl_tokenizer STATIC ${CMAKE_CURRENT_LIST_DIR}/tokenizer.cpp)
target_link_libraries(ktl_tokenizer PUBLIC ktl_base ${CMAKE_DL_LIBS})
target_compile_definitions(ktl_tokenizer PRIVATE KTL_SPM_BUILD_PATH="$<TARGET_FILE:ktl_spm>")
add_dependencies(ktl_tokenizer ktl_spm)
