# The source reads one way: no circle of calls among the files of the core
# or of a plugin folder listed here (tests/support/file_circles.py).
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  set(ROUTERD_ONE_WAY_DIRS core plugins/common plugins/backend_a2a plugins/backend_mock
      plugins/inbound_a2a plugins/sink_jsonlog plugins/sink_otlp plugins/sink_prometheus
      plugins/transport_console plugins/transport_telegram)
  add_test(NAME test_source_no_circles
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/support/file_circles.py
                   ${ROUTERD_ONE_WAY_DIRS}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(test_source_no_circles PROPERTIES LABELS unit TIMEOUT 60)
endif()
