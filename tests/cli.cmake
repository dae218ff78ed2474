ktl_add_test(ktl_cli_tests SOURCES ${CMAKE_CURRENT_LIST_DIR}/cli_test.cpp LIBS ktl_model ktl_tokenizer)
target_precompile_headers(ktl_cli_tests PRIVATE ${CMAKE_SOURCE_DIR}/core/torch_pch.h)
add_dependencies(ktl_cli_tests ktl)
