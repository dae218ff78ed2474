ktl_add_test(ktl_tokenizer_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/tokenizer_test.cpp
  LIBS ktl_tokenizer)
# Links LibTorch on purpose: proves SentencePiece (behind the dlopen'ed shim) and torch coexist.
ktl_add_test(ktl_tokenizer_torch_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/tokenizer_torch_test.cpp
  LIBS ktl_tokenizer ${TORCH_LIBRARIES})
