# Tests of the a2a backend (plugins/backend_a2a).
set(A2A_TDIR ${CMAKE_CURRENT_SOURCE_DIR})
set(A2A_PLUGIN_DIR ${CMAKE_SOURCE_DIR}/plugins/backend_a2a)

# Pure parsers: no host, no network.
routerd_unit_test(test_a2a_sse SOURCES ${A2A_TDIR}/unit/test_a2a_sse.c LIBS backend_a2a_obj)
routerd_unit_test(test_a2a_parse SOURCES ${A2A_TDIR}/unit/test_a2a_parse.c LIBS backend_a2a_obj)

# The plugin in-process with a fake host against the fake agent.
if(EXISTS ${A2A_TDIR}/unit/test_a2a_plugin.c)
  routerd_unit_test(test_a2a_plugin
                    SOURCES ${A2A_TDIR}/unit/test_a2a_plugin.c ${A2A_TDIR}/unit/test_a2a_host.c
                    LIBS backend_a2a_obj TIMEOUT 120)
endif()

# The real binary (console transport) against the fake agent.
if(EXISTS ${A2A_TDIR}/integration/test_a2a_e2e.c)
  routerd_integration_test(test_a2a_e2e SOURCES ${A2A_TDIR}/integration/test_a2a_e2e.c TIMEOUT 120)
  add_dependencies(test_a2a_e2e backend_a2a)
endif()

# Interoperability with agents built on the official A2A JS SDK. Skips
# (exit 77) when node/npm or the packages are not available.
add_test(NAME test_a2a_interop
         COMMAND ${A2A_TDIR}/interop/run.sh $<TARGET_FILE:routerd> ${ROUTERD_PLUGIN_OUTPUT_DIR}
                 ${CMAKE_BINARY_DIR}/a2a-interop)
set_tests_properties(test_a2a_interop PROPERTIES LABELS integration TIMEOUT 240
                     SKIP_RETURN_CODE 77)

# Fuzz targets: the parsers compiled into each target, so a libFuzzer build
# instruments them too.
foreach(f sse rpc)
  routerd_fuzz_target(fuzz_a2a_${f}
                      SOURCES ${A2A_TDIR}/fuzz/fuzz_a2a_${f}.c ${A2A_PLUGIN_DIR}/a2a_parse.c
                              ${A2A_PLUGIN_DIR}/a2a_sse.c
                      LIBS PkgConfig::CJSON)
  target_include_directories(fuzz_a2a_${f} PRIVATE ${A2A_PLUGIN_DIR})
  if(TARGET fuzz_a2a_${f}_fuzzer)
    target_include_directories(fuzz_a2a_${f}_fuzzer PRIVATE ${A2A_PLUGIN_DIR})
  endif()
endforeach()
