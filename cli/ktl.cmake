# The ktl executable: every cli/*.cpp is compiled in directly so KTL_COMMAND registrations survive linking.
file(GLOB KTL_CLI_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
add_executable(ktl ${KTL_CLI_SOURCES})
set_target_properties(ktl PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
# Every library the commands use; targets that are not defined yet are skipped.
foreach(lib ktl_base ktl_config ktl_data ktl_tokenizer ktl_infer ktl_model ktl_train ktl_engine ktl_jobs ktl_server ktl_export)
  if(TARGET ${lib})
    target_link_libraries(ktl PRIVATE ${lib})
  endif()
endforeach()
if(TARGET ktl_spm)
  add_dependencies(ktl ktl_spm)
endif()
