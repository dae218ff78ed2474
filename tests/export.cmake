# GGUF writer/reader/vocab and the checkpoint -> GGUF exporter (no LibTorch).
ktl_add_test(ktl_export_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/gguf_test.cpp ${CMAKE_CURRENT_LIST_DIR}/gguf_export_test.cpp
  LIBS ktl_export)
# Links LibTorch on purpose: the exported GGUF, run with llama.cpp's math, must give the same
# logits as the LibTorch model the checkpoint came from.
ktl_add_test(ktl_export_torch_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/gguf_llama_reference_test.cpp
  LIBS ktl_export ktl_model)
target_precompile_headers(ktl_export_torch_tests PRIVATE ${CMAKE_SOURCE_DIR}/core/torch_pch.h)
