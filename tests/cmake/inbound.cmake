# Tests of the inbound A2A server (plugins/inbound_a2a): the plugin
# in-process on the plugin test kit, spoken to over HTTP on 127.0.0.1.
set(INBOUND_TDIR ${CMAKE_CURRENT_SOURCE_DIR}/unit)
foreach(t a2a flow replicas)
  if(EXISTS ${INBOUND_TDIR}/test_inbound_${t}.c)
    routerd_unit_test(test_inbound_${t}
                      SOURCES ${INBOUND_TDIR}/test_inbound_${t}.c ${INBOUND_TDIR}/inbound_fixture.c
                      LIBS inbound_a2a_obj routerd_fake_host TIMEOUT 120)
    add_dependencies(test_inbound_${t} inbound_a2a)
  endif()
endforeach()

# Fuzz targets: the plugin's objects on the plugin test kit, no listener.
foreach(f rpc auth options)
  routerd_fuzz_target(fuzz_inbound_${f} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_inbound_${f}.c
                      LIBS inbound_a2a_obj routerd_plugintest)
endforeach()
