# Tests of the a2a backend (plugins/backend_a2a).
set(A2A_TDIR ${CMAKE_CURRENT_SOURCE_DIR})
set(A2A_PLUGIN_DIR ${CMAKE_SOURCE_DIR}/plugins/backend_a2a)

# Pure parsers: no host, no network.
routerd_unit_test(test_a2a_sse SOURCES ${A2A_TDIR}/unit/test_a2a_sse.c LIBS backend_a2a_obj)
routerd_unit_test(test_a2a_parse SOURCES ${A2A_TDIR}/unit/test_a2a_parse.c LIBS backend_a2a_obj)

# The plugin in-process with a fake host against the fake agent.
routerd_unit_test(test_a2a_plugin
                  SOURCES ${A2A_TDIR}/unit/test_a2a_plugin.c
                  LIBS backend_a2a_obj routerd_fake_host TIMEOUT 120)

# The real binary (console transport) against the fake agent.
foreach(t e2e loop)
  if(EXISTS ${A2A_TDIR}/integration/test_a2a_${t}.c)
    routerd_integration_test(test_a2a_${t} SOURCES ${A2A_TDIR}/integration/test_a2a_${t}.c
                             TIMEOUT 120)
    add_dependencies(test_a2a_${t} backend_a2a transport_console)
  endif()
endforeach()

# Exactly-once across SIGTERM and kill -9: telegram transport, fake Bot API,
# fake agent, restarts with re-delivered updates.
routerd_integration_test(test_a2a_chaos SOURCES ${A2A_TDIR}/integration/test_a2a_chaos.c
                         TIMEOUT 300)
add_dependencies(test_a2a_chaos backend_a2a transport_telegram)

# Interoperability with agents on the official A2A JS SDK (1.0 and 0.3
# compat, plain and streaming). npm ci goes into the build dir once; without
# node, npm or the registry the test reports SKIP (exit 77) and says why.
# a2a_interop_files: the plugin in-process (fake host) against the same
# agents, for what the console transport cannot carry: files and choices.
add_executable(a2a_interop_files ${A2A_TDIR}/interop/files.c)
target_link_libraries(a2a_interop_files PRIVATE backend_a2a_obj routerd_fake_host)
add_test(NAME test_a2a_interop
         COMMAND sh ${A2A_TDIR}/interop/run.sh ${A2A_TDIR}/interop ${CMAKE_BINARY_DIR}/a2a-interop
                 $<TARGET_FILE:routerd> ${ROUTERD_PLUGIN_OUTPUT_DIR}
                 $<TARGET_FILE:a2a_interop_files>)
set_tests_properties(test_a2a_interop PROPERTIES LABELS interop SKIP_RETURN_CODE 77 TIMEOUT 300)

# Interop with two A2A servers independent of @a2a-js/sdk (VoltAgent and
# reactive-agents, pinned in tests/interop/others/package-lock.json):
# send, stream, a task past http_timeout_s, failures, one execution per
# messageId. SKIP (exit 77) only without node or npm.
add_test(NAME test_a2a_interop_others
         COMMAND sh ${A2A_TDIR}/interop/others/run.sh ${A2A_TDIR}/interop/others
                 ${CMAKE_BINARY_DIR}/a2a-interop-others $<TARGET_FILE:routerd>
                 ${ROUTERD_PLUGIN_OUTPUT_DIR})
set_tests_properties(test_a2a_interop_others PROPERTIES LABELS interop SKIP_RETURN_CODE 77
                     TIMEOUT 900)

# Fuzz targets: the parsers compiled into each target, so a libFuzzer build
# instruments them too. Corpora in tests/fuzz/corpus/<target>/.
foreach(f sse response)
  routerd_fuzz_target(fuzz_a2a_${f}
                      SOURCES ${A2A_TDIR}/fuzz/fuzz_a2a_${f}.c ${A2A_PLUGIN_DIR}/a2a_parse.c
                              ${A2A_PLUGIN_DIR}/a2a_sse.c ${CMAKE_SOURCE_DIR}/plugins/common/sbuf.c
                      LIBS PkgConfig::CJSON PkgConfig::CRYPTO)
  target_include_directories(fuzz_a2a_${f} PRIVATE ${A2A_PLUGIN_DIR}
                                                   ${CMAKE_SOURCE_DIR}/plugins/common)
  if(TARGET fuzz_a2a_${f}_fuzzer)
    target_include_directories(fuzz_a2a_${f}_fuzzer PRIVATE ${A2A_PLUGIN_DIR}
                                                            ${CMAKE_SOURCE_DIR}/plugins/common)
  endif()
endforeach()
