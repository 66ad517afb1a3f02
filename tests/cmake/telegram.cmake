# Tests of the telegram transport (plugins/transport_telegram).
set(TG_DIR ${CMAKE_CURRENT_SOURCE_DIR})

# Pure parsers, splitter, pacing: no host, no network.
routerd_unit_test(test_telegram_parse SOURCES ${TG_DIR}/unit/test_telegram_parse.c
                  LIBS transport_telegram_obj)
routerd_unit_test(test_telegram_split SOURCES ${TG_DIR}/unit/test_telegram_split.c
                  LIBS transport_telegram_obj)
routerd_unit_test(test_telegram_format SOURCES ${TG_DIR}/unit/test_telegram_format.c
                  LIBS transport_telegram_obj TIMEOUT 120)
routerd_unit_test(test_telegram_throttle SOURCES ${TG_DIR}/unit/test_telegram_throttle.c
                  LIBS transport_telegram_obj)
routerd_unit_test(test_telegram_attach SOURCES ${TG_DIR}/unit/test_telegram_attach.c
                  LIBS transport_telegram_obj)
routerd_unit_test(test_telegram_nap SOURCES ${TG_DIR}/unit/test_telegram_nap.c
                  LIBS transport_telegram_obj)

# The plugin in-process against the fake Bot API server and a fake host.
foreach(t intake send send_format webhook limits media buttons record)
  if(EXISTS ${TG_DIR}/unit/test_telegram_${t}.c)
    routerd_unit_test(test_telegram_${t}
                      SOURCES ${TG_DIR}/unit/test_telegram_${t}.c
                      LIBS transport_telegram_obj routerd_fake_host TIMEOUT 120)
  endif()
endforeach()

# The real binary with the telegram plugin against the fake Bot API server.
foreach(t burst faults format webhook media buttons async)
  if(EXISTS ${TG_DIR}/integration/test_telegram_${t}.c)
    routerd_integration_test(test_telegram_e2e_${t}
                             SOURCES ${TG_DIR}/integration/test_telegram_${t}.c TIMEOUT 180)
    add_dependencies(test_telegram_e2e_${t} transport_telegram backend_mock)
  endif()
endforeach()

# Fuzz targets: parsers compiled into the target itself so a libFuzzer
# build (-DROUTERD_FUZZ=ON) instruments them too.
set(TG_PLUGIN_DIR ${CMAKE_SOURCE_DIR}/plugins/transport_telegram)
foreach(f update text)
  routerd_fuzz_target(fuzz_telegram_${f}
                      SOURCES ${TG_DIR}/fuzz/fuzz_telegram_${f}.c ${TG_PLUGIN_DIR}/telegram_parse.c
                              ${TG_PLUGIN_DIR}/telegram_attach.c ${TG_PLUGIN_DIR}/telegram_json.c
                              ${CMAKE_SOURCE_DIR}/plugins/common/sbuf.c
                      LIBS PkgConfig::CJSON PkgConfig::CRYPTO)
  target_include_directories(fuzz_telegram_${f} PRIVATE ${TG_PLUGIN_DIR}
                                                        ${CMAKE_SOURCE_DIR}/plugins/common)
  if(TARGET fuzz_telegram_${f}_fuzzer)
    target_include_directories(fuzz_telegram_${f}_fuzzer PRIVATE ${TG_PLUGIN_DIR}
                                                                 ${CMAKE_SOURCE_DIR}/plugins/common)
  endif()
endforeach()

# Chaos: bursts with hostile ids, a long 429 across a restart, a group
# migration mid-conversation (real binary, long poll and webhook).
routerd_integration_test(test_telegram_chaos SOURCES ${TG_DIR}/integration/test_telegram_chaos.c
                         TIMEOUT 300)
add_dependencies(test_telegram_chaos transport_telegram backend_mock)
# Markdown rendering and splitting, every part checked against Telegram's
# entity rules (tests/support/tg_entity_check.c).
routerd_fuzz_target(fuzz_telegram_format
                    SOURCES ${TG_DIR}/fuzz/fuzz_telegram_format.c ${TG_PLUGIN_DIR}/telegram_format.c
                            ${TG_PLUGIN_DIR}/telegram_parse.c ${TG_PLUGIN_DIR}/telegram_attach.c
                            ${TG_PLUGIN_DIR}/telegram_json.c
                            ${TG_DIR}/support/tg_entity_check.c
                            ${CMAKE_SOURCE_DIR}/plugins/common/sbuf.c
                    LIBS PkgConfig::CJSON PkgConfig::CRYPTO PkgConfig::MD4C)
foreach(t fuzz_telegram_format fuzz_telegram_format_fuzzer)
  if(TARGET ${t})
    target_include_directories(${t} PRIVATE ${TG_PLUGIN_DIR} ${TG_DIR}/support
                                            ${CMAKE_SOURCE_DIR}/plugins/common)
  endif()
endforeach()
