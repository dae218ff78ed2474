ktl_add_test(ktl_model_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/model_test.cpp ${CMAKE_CURRENT_LIST_DIR}/checkpoint_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/model_config_test.cpp
  LIBS ktl_model ktl_tokenizer)
target_precompile_headers(ktl_model_tests PRIVATE ${CMAKE_SOURCE_DIR}/core/torch_pch.h)
