# Tests of the a2a backend (plugins/backend_a2a).
set(A2A_T ${CMAKE_CURRENT_SOURCE_DIR})
set(A2A_PLUGIN_DIR ${CMAKE_SOURCE_DIR}/plugins/backend_a2a)

# Pure parsers and builders: no host, no network.
foreach(t sse proto plugin)
  if(EXISTS ${A2A_T}/unit/test_a2a_${t}.c)
    routerd_unit_test(test_a2a_${t} SOURCES ${A2A_T}/unit/test_a2a_${t}.c LIBS backend_a2a_obj
                      PkgConfig::CJSON PkgConfig::CURL)
    target_include_directories(test_a2a_${t} PRIVATE ${A2A_PLUGIN_DIR})
  endif()
endforeach()

# The real binary: console transport + a2a backend against the fake agent.
foreach(t e2e failures stream state)
  if(EXISTS ${A2A_T}/integration/test_a2a_${t}.c)
    routerd_integration_test(test_a2a_${t} SOURCES ${A2A_T}/integration/test_a2a_${t}.c
                             TIMEOUT 120)
    add_dependencies(test_a2a_${t} backend_a2a transport_console)
  endif()
endforeach()

# Fuzz targets: the parsers compiled into the target so a libFuzzer build
# instruments them.
foreach(f sse response)
  if(EXISTS ${A2A_T}/fuzz/fuzz_a2a_${f}.c)
    routerd_fuzz_target(fuzz_a2a_${f}
                        SOURCES ${A2A_T}/fuzz/fuzz_a2a_${f}.c ${A2A_PLUGIN_DIR}/a2a_sse.c
                                ${A2A_PLUGIN_DIR}/a2a_proto.c
                        LIBS PkgConfig::CJSON)
    target_include_directories(fuzz_a2a_${f} PRIVATE ${A2A_PLUGIN_DIR})
    if(TARGET fuzz_a2a_${f}_fuzzer)
      target_include_directories(fuzz_a2a_${f}_fuzzer PRIVATE ${A2A_PLUGIN_DIR})
    endif()
  endif()
endforeach()

# Interop with the official JS SDK (@a2a-js/sdk) in 1.0 and 0.3 mode. It
# installs the pinned packages into the build dir with npm ci; without node,
# npm or the registry it reports SKIP (exit 77) and says why.
add_test(NAME test_a2a_interop
         COMMAND sh ${A2A_T}/interop/run.sh ${A2A_T}/interop ${CMAKE_BINARY_DIR}/a2a-interop
                 $<TARGET_FILE:routerd> ${ROUTERD_PLUGIN_OUTPUT_DIR})
set_tests_properties(test_a2a_interop PROPERTIES LABELS interop SKIP_RETURN_CODE 77 TIMEOUT 300)
