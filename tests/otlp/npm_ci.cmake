# cmake -DSRC=<tests/otlp> -DDST=<dir> -P npm_ci.cmake
# Installs the validator's npm packages into DST (not the source tree),
# again only when package-lock.json changed.
find_program(NPM npm REQUIRED)
file(MAKE_DIRECTORY ${DST})
file(COPY ${SRC}/package.json ${SRC}/package-lock.json DESTINATION ${DST})
file(SHA256 ${SRC}/package-lock.json want)
set(stamp ${DST}/node_modules/.routerd-lock-sha256)
set(have "")
if(EXISTS ${stamp})
  file(READ ${stamp} have)
endif()
if(NOT have STREQUAL want)
  execute_process(COMMAND ${NPM} ci --no-audit --no-fund --loglevel=error
                  WORKING_DIRECTORY ${DST} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "npm ci in ${DST} failed (${rc})")
  endif()
  file(WRITE ${stamp} "${want}")
endif()
