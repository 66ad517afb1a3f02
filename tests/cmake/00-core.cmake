# routerd_fuzz_target(name SOURCES ... [LIBS ...]): a libFuzzer entry point
# (LLVMFuzzerTestOneInput). Always built as a corpus-replay program run by
# ctest over tests/fuzz/corpus/<name>/; with -DROUTERD_FUZZ=ON (clang) also
# as a real fuzzer named <name>_fuzzer.
function(routerd_fuzz_target name)
  cmake_parse_arguments(F "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${F_SOURCES} ${CMAKE_SOURCE_DIR}/tests/fuzz/replay_main.c)
  target_link_libraries(${name} PRIVATE ${F_LIBS})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/include)
  add_test(NAME ${name} COMMAND ${name} ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${name})
  set_tests_properties(${name} PROPERTIES LABELS fuzz TIMEOUT 120)
  if(ROUTERD_FUZZ)
    add_executable(${name}_fuzzer ${F_SOURCES})
    target_link_libraries(${name}_fuzzer PRIVATE ${F_LIBS})
    target_include_directories(${name}_fuzzer PRIVATE ${CMAKE_SOURCE_DIR}/include)
    # UBSan findings (overflow, shifts...) stop the run like a crash.
    target_compile_options(${name}_fuzzer PRIVATE -fsanitize=fuzzer,address,undefined
                           -fno-sanitize-recover=undefined)
    target_link_options(${name}_fuzzer PRIVATE -fsanitize=fuzzer,address,undefined
                        -fno-sanitize-recover=undefined)
  endif()
endfunction()
