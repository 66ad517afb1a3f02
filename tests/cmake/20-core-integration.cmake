# Broken plugins the loader must refuse, each with its own message.
set(ROUTERD_BAD_PLUGIN_DIR ${CMAKE_BINARY_DIR}/bad_plugins)
foreach(bad wrong_major no_symbol no_handle newer_minor reserved_set bind_len bind_outside option_size
            inbound_no_intercept inbound_old_ops)
  add_library(bad_${bad} MODULE ${CMAKE_CURRENT_SOURCE_DIR}/integration/bad_plugins/${bad}.c)
  target_include_directories(bad_${bad} PRIVATE ${CMAKE_SOURCE_DIR}/include)
  set_target_properties(bad_${bad} PROPERTIES PREFIX "" OUTPUT_NAME ${bad}
                        LIBRARY_OUTPUT_DIRECTORY ${ROUTERD_BAD_PLUGIN_DIR}
                        C_VISIBILITY_PRESET hidden)
  list(APPEND ROUTERD_BAD_PLUGINS bad_${bad})
endforeach()

routerd_integration_test(test_core_console SOURCES integration/test_core_console.c TIMEOUT 240)
target_compile_definitions(test_core_console PRIVATE ROUTERD_BAD_PLUGIN_DIR="${ROUTERD_BAD_PLUGIN_DIR}")
add_dependencies(test_core_console ${ROUTERD_BAD_PLUGINS})

routerd_integration_test(test_core_manifest_errors SOURCES integration/test_core_manifest_errors.c TIMEOUT 120)
target_compile_definitions(test_core_manifest_errors PRIVATE ROUTERD_BAD_PLUGIN_DIR="${ROUTERD_BAD_PLUGIN_DIR}")
add_dependencies(test_core_manifest_errors ${ROUTERD_BAD_PLUGINS})

# A plugin built out of tree against the installed header and pkg-config file.
add_test(NAME test_core_out_of_tree
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_core_out_of_tree.sh ${CMAKE_BINARY_DIR} ${CMAKE_SOURCE_DIR})
set_tests_properties(test_core_out_of_tree PROPERTIES LABELS integration TIMEOUT 120)

# conf.d/*.ini validate with the plugins built here; docs/plugins.md is current.
add_test(NAME test_core_shipped_manifests
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_core_shipped_manifests.sh
                 $<TARGET_FILE:routerd> ${CMAKE_SOURCE_DIR} ${ROUTERD_PLUGIN_OUTPUT_DIR})
set_tests_properties(test_core_shipped_manifests PROPERTIES LABELS integration TIMEOUT 60)

# Mock failure injection against the router's counters, through /metrics.
if(TARGET sink_prometheus)
  routerd_integration_test(test_core_mock_metrics SOURCES integration/test_core_mock_metrics.c TIMEOUT 60)
  add_dependencies(test_core_mock_metrics backend_mock transport_console sink_prometheus)
endif()

# The admin server under slow, oversized and unauthenticated clients.
if(TARGET transport_telegram)
  routerd_integration_test(test_core_admin SOURCES integration/test_core_admin.c TIMEOUT 240)
  add_dependencies(test_core_admin transport_telegram backend_mock)
endif()

# scripts/deps.sh waits for a busy apt lock (apt-get stubbed, nothing installed).
add_test(NAME test_core_deps_lock
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_core_deps_lock.sh ${CMAKE_SOURCE_DIR})
set_tests_properties(test_core_deps_lock PROPERTIES LABELS integration TIMEOUT 30)

# Command order per chat, --check-config against start, hostile input files.
routerd_integration_test(test_core_hardening SOURCES integration/test_core_hardening.c TIMEOUT 180)
add_dependencies(test_core_hardening transport_console backend_mock sink_jsonlog)

# Per-chat core state shrinks when chats go idle; /persona choices expire and are capped.
if(TARGET sink_prometheus)
  routerd_integration_test(test_core_growth SOURCES integration/test_core_growth.c TIMEOUT 300)
  add_dependencies(test_core_growth backend_mock transport_console sink_prometheus)
endif()

# Chaos: a Telegram burst while hundreds of admin connections trickle and
# unauthenticated uploads push; every message answered once, router ready.
if(TARGET transport_telegram)
  routerd_integration_test(test_core_chaos SOURCES integration/test_core_chaos.c TIMEOUT 240)
  add_dependencies(test_core_chaos transport_telegram backend_mock)
endif()

# Plugins that check the ABI's promises from the plugin side: a 1.1-layout
# plugin, a plugin reading an undeclared key, and probes (serial or not)
# that check text, update ids, attachments and overlapping calls.
set(ROUTERD_ABI_PLUGIN_DIR ${CMAKE_BINARY_DIR}/abi_plugins)
function(routerd_abi_plugin target file source)
  add_library(${target} MODULE ${CMAKE_CURRENT_SOURCE_DIR}/integration/abi_plugins/${source})
  target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR}/include
                             ${CMAKE_CURRENT_SOURCE_DIR}/support)
  target_compile_definitions(${target} PRIVATE ${ARGN})
  set_target_properties(${target} PROPERTIES PREFIX "" OUTPUT_NAME ${file}
                        LIBRARY_OUTPUT_DIRECTORY ${ROUTERD_ABI_PLUGIN_DIR}
                        C_VISIBILITY_PRESET hidden)
  set(ROUTERD_ABI_PLUGINS ${ROUTERD_ABI_PLUGINS} ${target} PARENT_SCOPE)
endfunction()
routerd_abi_plugin(abi_old_layout backend_old_layout old_layout.c)
routerd_abi_plugin(abi_undeclared backend_undeclared undeclared.c)
routerd_abi_plugin(abi_probe_be backend_probe probe_backend.c PROBE_NAME="probe" PROBE_FLAGS=0)
routerd_abi_plugin(abi_probe_be_serial backend_probe_serial probe_backend.c
                   PROBE_NAME="probe_serial" PROBE_FLAGS=RD_PF_SERIAL)
routerd_abi_plugin(abi_probe_tr transport_probe probe_transport.c PROBE_NAME="probe" PROBE_FLAGS=0)
routerd_abi_plugin(abi_probe_tr_serial transport_probe_serial probe_transport.c
                   PROBE_NAME="probe_serial" PROBE_FLAGS=RD_PF_SERIAL)

routerd_integration_test(test_core_abi SOURCES integration/test_core_abi.c TIMEOUT 180)
target_compile_definitions(test_core_abi PRIVATE ROUTERD_ABI_PLUGIN_DIR="${ROUTERD_ABI_PLUGIN_DIR}")
add_dependencies(test_core_abi ${ROUTERD_ABI_PLUGINS} transport_console backend_mock)

# ABI 1.3: an inbound instance delivering into chats and taking answers,
# through the real binary against the fake Bot API and the console.
routerd_abi_plugin(abi_inbound_probe inbound_probe inbound_probe.c)
if(TARGET transport_telegram AND TARGET sink_jsonlog)
  routerd_integration_test(test_core_deliver SOURCES integration/test_core_deliver.c TIMEOUT 180)
  target_compile_definitions(test_core_deliver PRIVATE ROUTERD_ABI_PLUGIN_DIR="${ROUTERD_ABI_PLUGIN_DIR}")
  add_dependencies(test_core_deliver abi_inbound_probe transport_telegram transport_console
                   backend_mock sink_jsonlog)
endif()
